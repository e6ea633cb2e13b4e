"""Fixtures of the VLA tests: the tiny OpenVLA from the recipe and a tiny checkpoint in OpenVLA's published layout."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("trl")
pytest.importorskip("metaworld")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="session")
def tiny_vla(tmp_path_factory):
    """A tiny OpenVLA checkpoint built by the repo's recipe in seconds (3 expert episodes, 2 epochs)."""
    from gipo_plugins.vla.recipe import sft_checkpoint

    return str(sft_checkpoint(tmp_path_factory.mktemp("tiny_vla"), episodes=3, epochs=2, horizon=30, log_every=0))


@pytest.fixture(scope="session")
def published_vla(tmp_path_factory):
    """A tiny checkpoint written in OpenVLA's published on-disk layout (see vla_helpers.write_published_checkpoint)."""
    from vla_helpers import write_published_checkpoint

    return write_published_checkpoint(tmp_path_factory.mktemp("published_openvla"))
