"""The verl adapter's tests: they run in `.venv-verl` only (`make test` runs `pytest tests/verl` there).

verl pins `transformers<5.11` and `tensordict<=0.10`, which the main environment's `[trl]` and `[torchrl]`
extras cannot share, so the main suite runs `pytest tests --ignore tests/verl`. Collected anyway in an
environment without verl (a bare `pytest tests`), these files are ignored rather than skipped.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _verl_installed() -> bool:
    """Asked of the installed distributions: under pytest, `import verl` may find this folder (`tests/verl`)."""
    try:
        version("verl")
    except PackageNotFoundError:
        return False
    return True


collect_ignore_glob = [] if _verl_installed() else ["test_*.py"]
