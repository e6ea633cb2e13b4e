"""mkdocs hook: lay out the installed package's module tree for the API reference.

The adapters live in ``adapters/<framework>/`` and install as ``gipo_plugins.<framework>``
(setuptools ``package-dir``). mkdocstrings reads sources statically, so before the build this
hook mirrors the installed layout with copies under ``build/api_src/gipo_plugins/`` (copies, not
symlinks: the source reader resolves links back to the original folders).
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TREE = ROOT / "build" / "api_src" / "gipo_plugins"
ADAPTERS = ("rllib", "torchrl", "trl")


def mirror_package() -> None:
    shutil.rmtree(TREE.parent, ignore_errors=True)
    shutil.copytree(ROOT / "gipo_plugins", TREE, ignore=shutil.ignore_patterns("__pycache__"))
    for adapter in ADAPTERS:
        shutil.copytree(ROOT / "adapters" / adapter, TREE / adapter, ignore=shutil.ignore_patterns("__pycache__"))


def on_startup(command, dirty):
    """Before any plugin reads its config: mkdocstrings only searches paths that exist then."""
    mirror_package()


def on_pre_build(config):
    """Refresh the copies on every build (``mkdocs serve`` rebuilds after edits)."""
    mirror_package()
