"""The distribution: adapter folders mapped into the package, in an editable install and in a wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ("metaworld", "rllib", "torchrl", "trl", "vla")
FRAMEWORKS = ("ray", "torchrl", "tensordict", "trl", "transformers", "metaworld", "gymnasium", "mujoco")


def _run(code: str, cwd: Path, extra_path: str | None = None) -> str:
    env = None
    if extra_path is not None:
        env = {"PYTHONPATH": extra_path, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-I" if env is None else "-s", "-c", code], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_importing_core_imports_no_framework(tmp_path):
    code = f"import sys, gipo_plugins; print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    assert _run(code, tmp_path).strip() == "[]"


def test_editable_install_maps_adapter_folders(tmp_path):
    code = "import importlib; " + "; ".join(
        f"print(importlib.util.find_spec('gipo_plugins.{name}').origin)" for name in ADAPTERS
    )
    origins = _run(code, tmp_path).split()
    for name, origin in zip(ADAPTERS, origins, strict=True):
        assert Path(origin).resolve() == (ROOT / "adapters" / name / "__init__.py").resolve()


def test_built_wheel_contains_and_imports_the_adapters(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("gipo_plugins-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(unpacked)
    for name in ADAPTERS:
        assert f"gipo_plugins/{name}/__init__.py" in names
    assert not any(n.startswith("adapters/") for n in names)
    torch_site = str(Path(__import__("torch").__file__).parents[1])
    origins = _run(
        "import gipo_plugins.rllib, gipo_plugins.torchrl, gipo_plugins.trl, gipo_plugins as g; print(g.__file__)",
        tmp_path,
        extra_path=f"{unpacked}:{torch_site}",
    )
    assert origins.strip().startswith(str(unpacked))


@pytest.mark.parametrize("extra", ["rllib", "torchrl", "trl", "metaworld"])
def test_each_extra_pulls_only_its_own_framework(extra):
    requires = metadata.requires("gipo-plugins") or []
    own = [r for r in requires if re.search(rf"extra\s*==\s*['\"]{extra}['\"]", r)]
    assert own, f"extra {extra!r} is empty"
    others = {"rllib": "ray", "torchrl": "torchrl", "trl": "trl", "metaworld": "metaworld"}
    foreign = [pkg for name, pkg in others.items() if name != extra]
    for requirement in own:
        name = re.split(r"[\s\[<>=;!~]", requirement, maxsplit=1)[0].lower()
        assert name not in foreign, f"extra {extra!r} pulls {name}"


def _extra_closure(extra: str, requires: list[str]) -> set[str]:
    """Distribution names an extra installs: its own requirements and those of the extras it names."""
    names: set[str] = set()
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        if f'extra == "{extra}"' not in marker:
            continue
        name = re.split(r"[\s\[<>=!~]", spec.strip(), maxsplit=1)[0].lower()
        if name == "gipo-plugins":
            for inner in re.search(r"\[(.*)\]", spec).group(1).split(","):
                names |= _extra_closure(inner.strip(), requires)
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("adapter", [*ADAPTERS, "verl"])  # verl's environment is its own, its extra is declared here
def test_an_adapters_module_level_imports_come_with_its_extra(adapter):
    """`pip install "gipo-plugins[<adapter>]"` installs everything the adapter's modules import when loaded."""
    import ast

    requires = metadata.requires("gipo-plugins")
    core = {re.split(r"[\s\[<>=!~]", r, maxsplit=1)[0].lower() for r in requires if ";" not in r}
    allowed = core | _extra_closure(adapter, requires)
    providers = metadata.packages_distributions()
    missing = set()
    for path in (ROOT / "adapters" / adapter).glob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports serve optional paths
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for top in {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) - {"gipo_plugins"}:
                if not {d.lower() for d in providers.get(top, [top])} & allowed:
                    missing.add(f"{path.name}: {top}")
    assert not missing, f"imported at module level but not in the [{adapter}] extra: {sorted(missing)}"
