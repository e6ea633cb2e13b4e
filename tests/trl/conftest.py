"""The tiny local model fixture; helpers live in trl_helpers.py."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    from gipo_plugins.trl.tiny import build_tiny_causal_lm

    return str(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm")))


@pytest.fixture(scope="session")
def tiny_vla(tmp_path_factory):
    """A tiny OpenVLA checkpoint built by the repo's recipe in seconds (3 expert episodes, 2 epochs)."""
    from gipo_plugins.trl.vla import sft_checkpoint

    return str(sft_checkpoint(tmp_path_factory.mktemp("tiny_vla"), episodes=3, epochs=2, horizon=30, log_every=0))
