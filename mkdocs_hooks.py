"""mkdocs hook: lay out the package tree for the API reference and vendor the math renderer.

1. The adapters live in `adapters/<framework>/` and install as `gipo_plugins.<framework>` (setuptools
   `package-dir` in `pyproject.toml`). mkdocstrings reads sources statically, so before the build this
   hook mirrors the installed layout with copies under `build/api_src/` (copies, not symlinks: the
   source reader resolves links back to the original folders).
2. Formulas are typeset in the browser by KaTeX, installed from the npm registry into
   `tools/docs_assets/node_modules/` (`make docs-assets`, or by this hook on first use) and served from
   the site itself under `assets/katex/`, so the docs render offline; `tools/docs_assets/katex-render.js`
   typesets what `pymdownx.arithmatex` (generic mode) marked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
API_SRC = ROOT / "build" / "api_src"
DOCS_ASSETS = ROOT / "tools" / "docs_assets"
KATEX_DIST = DOCS_ASSETS / "node_modules" / "katex" / "dist"
KATEX_FILES = ("katex.min.js", "katex.min.css")
SITE_ASSETS = "assets/katex"


def package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, as `pyproject.toml` declares them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config.get("package-dir", {})
    return {name: ROOT / mapping.get(name, name.replace(".", "/")) for name in config["packages"]}


def mirror_packages() -> None:
    """Copy every package's own `.py` files to where it is installed, under `build/api_src/`."""
    shutil.rmtree(API_SRC, ignore_errors=True)
    for name, folder in package_dirs().items():
        target = API_SRC.joinpath(*name.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in folder.glob("*.py"):
            shutil.copy2(source, target / source.name)


def ensure_katex() -> None:
    """Install the pinned KaTeX (`tools/docs_assets/package-lock.json`) if it is not there yet."""
    if all((KATEX_DIST / name).is_file() for name in KATEX_FILES):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise PluginError("the docs vendor KaTeX from the npm registry: install Node.js/npm, then `make docs-assets`")
    command = [npm, "ci", "--prefix", str(DOCS_ASSETS), "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (KATEX_DIST / KATEX_FILES[0]).is_file():
        raise PluginError(f"`{' '.join(command)}` failed:\n{result.stdout}{result.stderr}")


def on_startup(command, dirty):
    """Before any plugin reads its config: mkdocstrings only searches paths that exist then."""
    mirror_packages()
    ensure_katex()


def on_pre_build(config):
    """Refresh the copies on every build (`mkdocs serve` rebuilds after edits)."""
    mirror_packages()


def on_files(files: Files, config) -> Files:
    """Serve KaTeX (script, stylesheet, fonts) and its page glue from the site itself."""
    ensure_katex()
    sources = [(KATEX_DIST / name, f"{SITE_ASSETS}/{name}") for name in KATEX_FILES]
    sources += [(font, f"{SITE_ASSETS}/fonts/{font.name}") for font in sorted((KATEX_DIST / "fonts").iterdir())]
    sources.append((DOCS_ASSETS / "katex-render.js", f"{SITE_ASSETS}/katex-render.js"))
    for source, uri in sources:
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
