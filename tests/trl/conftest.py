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
