"""tools/rst_to_md_docstrings.py on small synthetic modules: each construct, idempotence, the CLI."""

from __future__ import annotations

import ast
import importlib.util
import sys
import textwrap
import zlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rst_to_md_docstrings", ROOT / "tools" / "rst_to_md_docstrings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def convert(source: str, resolver: object | None = None, path: Path | None = None) -> str:
    """Convert a dedented module source; check the result parses and converting again changes nothing."""
    source = textwrap.dedent(source).lstrip("\n")
    path = path or ROOT / "tmp_module.py"
    new, _, _ = tool.convert_source(source, path, ROOT, resolver, 120)
    ast.parse(new)
    again, changed, _ = tool.convert_source(new, path, ROOT, resolver, 120)
    assert again == new and changed == 0, "not idempotent"
    return new


def docstring(source: str) -> str:
    """The module docstring of converted source, as Python sees it."""
    return ast.get_docstring(ast.parse(source), clean=False) or ""


def test_inline_math_and_literals() -> None:
    out = convert(
        r'''
        r"""Ratio :math:`r = e^{\ell}` of ``log_prob`` and :math:` A `."""
        '''
    )
    assert docstring(out) == r"Ratio $r = e^{\ell}$ of `log_prob` and $A$."


def test_escapes_of_a_plain_string_are_kept() -> None:
    out = convert('''X = 1\n"""Cap on :math:`\\\\log u`."""\n''')
    assert '"""Cap on $\\\\log u$."""' in out
    assert ast.literal_eval(out.splitlines()[1]) == "Cap on $\\log u$."


def test_math_directive_inline_argument_and_block() -> None:
    out = convert(
        r'''
        def f():
            r"""Summary.

            .. math:: a = b,
                \qquad c = d

            .. math::
                x = 1

                y = 2

            Tail.
            """
        '''
    )
    assert "    $$\n    a = b,\n    \\qquad c = d\n    $$\n\n" in out
    # blank-line-separated equations are separate display blocks (as Sphinx renders them)
    assert "    $$\n    x = 1\n    $$\n\n    $$\n    y = 2\n    $$\n\n    Tail." in out


def test_simple_table_to_markdown() -> None:
    out = convert(
        r'''
        r"""Kernels:

        =========  ==========================  =======
        kernel     :math:`k(x)`                 note
        =========  ==========================  =======
        ``lap``    :math:`e^{-|x|}`             heavy
        ``kl``     :math:`\mathrm{KL}(p\,\|\,q)`  overflowing cell
        ``ess``    effective sample size
                   (0 when all are zero)
        =========  ==========================  =======

        After.
        """
        '''
    )
    text = docstring(out)
    assert "| kernel | $k(x)$ | note |\n|---|---|---|\n" in text
    assert r"| `lap` | $e^{-\vert x\vert}$ | heavy |" in text  # a pipe would end the cell
    assert r"| `kl` | $\mathrm{KL}(p\,\Vert\,q)$ | overflowing cell |" in text
    assert "| `ess` | effective sample size (0 when all are zero) |  |" in text
    assert "\n\nAfter." in text and "===" not in text


def test_cross_reference_roles_become_backticked_names() -> None:
    out = convert(
        '''
        """See :func:`gipo_objective`, :class:`~torch.nn.Module`, :meth:`run <Trainer.run>`,
        :py:mod:`gipo_plugins.kernels` and :attr:`x.y`."""
        '''
    )
    assert docstring(out) == ("See `gipo_objective`, `Module`, `run`,\n`gipo_plugins.kernels` and `x.y`.")


def write_inventory(path: Path, names: list[str]) -> None:
    lines = [f"{name} py:function 1 api/#$ -" for name in names]
    header = b"# Sphinx inventory version 2\n# Project: x\n# Version: 0\n# The remainder is compressed using zlib.\n"
    path.write_bytes(header + zlib.compress("\n".join(lines).encode()))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A package `pkg` (core) with an adapter installed from `adapters/ext` as `pkg.ext`."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "adapters" / "ext").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackages = ["pkg", "pkg.ext"]\n'
        '[tool.setuptools.package-dir]\n"pkg" = "pkg"\n"pkg.ext" = "adapters/ext"\n'
    )
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg.core import solve\n")
    (tmp_path / "pkg" / "core.py").write_text("def solve():\n    pass\n")
    write_inventory(
        tmp_path / "objects.inv", ["pkg.core", "pkg.core.solve", "pkg.ext.mod.Loss", "pkg.ext.mod.Loss.run"]
    )
    return tmp_path


def test_documented_targets_become_links(project: Path) -> None:
    resolver = tool.Resolver(tool.read_inventory(project / "objects.inv"), project, tool.package_dirs(project))
    source = textwrap.dedent(
        '''
        """Adapter."""

        from pkg import solve


        class Loss:
            """Uses :func:`solve` (:func:`pkg.solve`, :mod:`pkg.core`), :meth:`run`, :meth:`~Loss.run`
            and :class:`torch.Tensor`."""

            def run(self):
                """Like :class:`Loss`, not :func:`missing`."""
        '''
    ).lstrip()
    path = project / "adapters" / "ext" / "mod.py"
    new, changed, _ = tool.convert_source(source, path, project, resolver, 120)
    assert changed == 2
    assert "Uses [`solve`][] ([`pkg.solve`][pkg.core.solve], [`pkg.core`][]), [`run`][]," in new
    assert "[`run`][pkg.ext.mod.Loss.run]\n    and `torch.Tensor`." in new
    assert '"""Like [`Loss`][], not `missing`."""' in new
    assert tool.convert_source(new, path, project, resolver, 120)[0] == new


def test_module_names_follow_the_package_dirs(project: Path) -> None:
    packages = tool.package_dirs(project)
    assert tool.module_name(project / "adapters" / "ext" / "mod.py", project, packages) == "pkg.ext.mod"
    assert tool.module_name(project / "pkg" / "__init__.py", project, packages) == "pkg"
    assert tool.module_name(project / "scripts" / "run.py", project, packages) == "scripts.run"


def test_admonition_code_and_literal_blocks() -> None:
    out = convert(
        '''
        class A:
            """Summary.

            The grid::

                S0 | S1

            Run it ::

                python run.py

            ::

                raw

            .. code-block:: python
                :linenos:

                x = 1

            .. note::
                Mind the ``gap``.
            """
        '''
    )
    assert "    The grid:\n\n    ```\n    S0 | S1\n    ```\n" in out
    assert "    Run it\n\n    ```\n    python run.py\n    ```\n" in out
    assert "\n\n    ```\n    raw\n    ```\n" in out
    assert "    ```python\n    x = 1\n    ```\n" in out and ":linenos:" not in out
    assert "    Note:\n        Mind the `gap`.\n    " in out
    assert out.rstrip().endswith('.\n    """')  # the closing quotes keep their line


def test_doctest_blocks() -> None:
    out = convert(
        '''
        def f():
            """Summary.

            >>> f()
            1

            Example:
                >>> f()
                1
            """
        '''
    )
    assert "    ```pycon\n    >>> f()\n    1\n    ```\n" in out
    assert "    Examples:\n        >>> f()\n        1\n" in out  # griffe reads `>>>` only under "Examples:"


def test_links_and_hugging_face_references() -> None:
    out = convert('''"""See `the paper <https://arxiv.org/abs/1>`_ and [`~trl.GRPOConfig`]."""\n''')
    assert docstring(out) == "See [the paper](https://arxiv.org/abs/1) and `GRPOConfig`."


def test_only_docstrings_are_touched() -> None:
    source = """X = ":math:`a`"\nY = f"``{X}``"\n\n\ndef f():\n    return ":func:`g`"\n"""
    assert convert(source) == source


def test_markdown_already_in_the_convention_is_left_alone() -> None:
    source = textwrap.dedent(
        r'''
        r"""Has $x$, `:math:` in code, [`a`][b.c], and

        $$
        y = |x|
        $$

        | a | b |
        |---|---|
        | `x` | $\vert x \vert$ |
        """
        '''
    ).lstrip()
    assert convert(source) == source


def test_lines_the_conversion_lengthens_are_wrapped() -> None:
    long_name = "a_rather_long_function_name_for_wrapping"
    source = f'''
        def f():
            """Summary.

            Args:
                x: goes to :func:`{long_name}` then :func:`{long_name}` and on and on.
                y: plain.
            """
        '''
    out = convert(source)
    assert max(len(line) for line in out.splitlines()) <= 120
    # the cut text continues the argument's description, indented under it
    lines = out.splitlines()
    x_line = next(i for i, line in enumerate(lines) if line.startswith("        x: "))
    assert lines[x_line + 1].startswith(" " * 12) and lines[x_line + 1].strip()
    assert lines[x_line + 2] == "        y: plain."


def test_unknown_constructs_are_reported_and_kept() -> None:
    source = '"""See :ref:`intro`.\n\n.. deprecated:: 1.0\n"""\n'
    new, _, unknown = tool.convert_source(source, ROOT / "m.py", ROOT)
    assert new == source
    assert unknown == [".. deprecated::", ":ref:"]


def test_cli_check_and_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Uses ``x``."""\n')
    assert tool.main(["--check", "--root", str(tmp_path), str(module)]) == 1
    assert module.read_text() == '"""Uses ``x``."""\n'
    assert "would be converted" in capsys.readouterr().out
    assert tool.main(["--root", str(tmp_path), str(module)]) == 0
    assert module.read_text() == '"""Uses `x`."""\n'
    assert tool.main(["--check", "--root", str(tmp_path), str(module)]) == 0
