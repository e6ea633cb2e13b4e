"""Rewrite the reStructuredText in Python docstrings into the project's Markdown docstring convention.

    python tools/rst_to_md_docstrings.py FILE...                 # rewrite in place
    python tools/rst_to_md_docstrings.py --check FILE...         # only report (exit 1 if a file would change)
    python tools/rst_to_md_docstrings.py --inventory site/objects.inv FILE...   # cross-references as links

Mechanical and idempotent (a second run changes nothing). Only docstrings are touched: string literals
that stand alone as a statement (module, class, function and attribute docstrings). What changes:

| reStructuredText | Markdown (rendered by mkdocstrings, readable in `help()`) |
|---|---|
| math role `x` | `$x$` |
| `.. math::` block | `$$` block (one per blank-line-separated equation) |
| simple table (`===  ===` rules) | Markdown table (pipes inside math become `\\vert`) |
| func/class/meth/mod/attr/... roles | `` `name` ``, or ``[`name`][full.path]`` with `--inventory` |
| double-backtick literals | single-backtick code |
| `.. note::` (and other admonitions) | Google-style `Note:` section |
| `.. code-block:: lang`, `text::` literal blocks | fenced code blocks |
| `>>>` blocks outside an `Examples:` section | fenced `pycon` blocks |
| `` `text <url>`_ `` links | `[text](url)` |

With `--inventory PATH` (the `objects.inv` that mkdocstrings writes into a built site), a role becomes an
autorefs link only when its target, resolved through the module's scope and imports, is documented on
the site, so the strict docs build never meets a dangling link; every other role becomes a backticked
name. Anything the tool does not know (another role or directive) is left as it is and reported.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
import textwrap
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport
    import tomli as tomllib

ROLE_RE = re.compile(r":(?:py:)?([a-z]+):`([^`]+)`")
XREF_ROLES = frozenset({"func", "class", "meth", "mod", "attr", "obj", "data", "exc", "const", "type"})
ADMONITIONS = {
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "caution": "Caution",
    "danger": "Danger",
    "attention": "Attention",
    "error": "Error",
    "seealso": "See Also",
}
CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode"})
DIRECTIVE_RE = re.compile(r"^(\s*)\.\. ([a-zA-Z-]+)::(.*)$")
TABLE_RULE_RE = re.compile(r"^(\s*)=+( +=+)+\s*$")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
EXAMPLES_RE = re.compile(r"^(\s*)Examples?:\s*$")
EXAMPLE_RE = re.compile(r"^(\s*)Example:\s*$")
# Inline tokens, tried left to right: a role, a ``literal``, a link, an existing `code span` or $math$.
INLINE_RE = re.compile(
    r"(?P<role>:(?:py:)?[a-z]+:`[^`]+`)"
    r"|(?P<literal>``(?!`)(?P<lit>.+?)(?<!`)``(?!`))"
    r"|(?P<link>`(?P<text>[^`<]+?)\s*<(?P<url>[^>`]+)>`__?)"
    r"|(?P<hflink>\[`(?P<hf>~?[\w.]+)`\](?![\[(]))"
    r"|(?P<code>(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`))"
    r"|(?P<math>\$\$.+?\$\$|(?<![\\$])\$(?![\s$]).+?(?<![\s\\])\$)",
    re.S,
)


# ----------------------------------------------------------------------------------------- cross-references


def read_inventory(path: Path) -> set[str]:
    """Names of the Python objects listed in a Sphinx-format (v2) `objects.inv`."""
    data = path.read_bytes()
    lines = data.split(b"\n", 4)
    if len(lines) < 5 or not lines[0].startswith(b"# Sphinx inventory version 2"):
        raise ValueError(f"{path}: not a Sphinx inventory (version 2)")
    names = set()
    for line in zlib.decompress(lines[4]).decode().splitlines():
        match = re.match(r"(.+?)\s+(py:\w+)\s+-?\d+\s", line)
        if match:
            names.add(match.group(1))
    return names


def package_dirs(root: Path) -> dict[str, Path]:
    """Package name -> source folder from `pyproject.toml` (setuptools `package-dir`), if declared."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    setuptools = tomllib.loads(pyproject.read_text()).get("tool", {}).get("setuptools", {})
    mapping = setuptools.get("package-dir", {})
    packages = setuptools.get("packages", [])
    return {name: (root / mapping.get(name, name.replace(".", "/"))).resolve() for name in packages}


def module_name(path: Path, root: Path, packages: dict[str, Path]) -> str:
    """Dotted import name of a source file, through the package-dir mapping when it applies."""
    path = path.resolve()
    stem = [] if path.stem == "__init__" else [path.stem]
    for name, folder in sorted(packages.items(), key=lambda item: -len(str(item[1]))):
        if path.parent == folder:
            return ".".join([name, *stem])
    try:
        parts = list(path.parent.relative_to(root.resolve()).parts)
    except ValueError:
        parts = []
    return ".".join([*parts, *stem])


@dataclass
class Resolver:
    """Resolves a role's target to a documented object's full path (`None` if it is not documented)."""

    inventory: set[str]
    root: Path
    packages: dict[str, Path] = field(default_factory=dict)
    _imports: dict[str, dict[str, str]] = field(default_factory=dict)

    def module_file(self, module: str) -> Path | None:
        for name, folder in self.packages.items():
            if module == name:
                return folder / "__init__.py"
            if module.startswith(name + ".") and "." not in module[len(name) + 1 :]:
                candidate = folder / f"{module[len(name) + 1 :]}.py"
                if candidate.is_file():
                    return candidate
        return None

    def imports(self, module: str, tree: ast.Module | None = None) -> dict[str, str]:
        """Local name -> full dotted name for everything a module imports."""
        if module in self._imports:
            return self._imports[module]
        if tree is None:
            file = self.module_file(module)
            tree = ast.parse(file.read_text()) if file is not None and file.is_file() else ast.Module([], [])
        table: dict[str, str] = {}
        is_package = (self.module_file(module) or Path()).name == "__init__.py"
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    table[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        table[alias.asname] = alias.name
                    else:
                        table[alias.name.split(".")[0]] = alias.name.split(".")[0]
        self._imports[module] = table
        return table

    def canonical(self, name: str, depth: int = 0) -> str | None:
        """`name` if documented, else where a re-export of it points to (followed a few levels)."""
        if name in self.inventory:
            return name
        if depth > 5 or "." not in name:
            return None
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module, rest = ".".join(parts[:cut]), parts[cut:]
            if self.module_file(module) is None:
                continue
            target = self.imports(module).get(rest[0])
            if target is not None and target != name:
                return self.canonical(".".join([target, *rest[1:]]), depth + 1)
        return None

    def resolve(self, target: str, module: str, scopes: list[str], tree: ast.Module | None) -> str | None:
        target = target.lstrip(".")
        head, _, rest = target.partition(".")
        candidates = [f"{scope}.{target}" for scope in reversed(scopes)]
        imported = self.imports(module, tree).get(head)
        if imported is not None:  # where an imported name is defined, not its re-export
            candidates.append(f"{imported}.{rest}" if rest else imported)
        candidates += [f"{module}.{target}", target]
        for candidate in candidates:
            found = self.canonical(candidate)
            if found is not None:
                return found
        return None


@dataclass
class Context:
    """Where a docstring sits: for resolving cross-references."""

    module: str = ""
    scopes: list[str] = field(default_factory=list)
    tree: ast.Module | None = None
    resolver: Resolver | None = None
    unknown: list[str] = field(default_factory=list)
    line_length: int = 120


# ----------------------------------------------------------------------------------------- inline markup


def convert_role(role: str, content: str, ctx: Context, backslash: str, in_table: bool) -> str:
    if role == "math":
        tex = content.strip()
        return f"${table_math(tex, backslash) if in_table else tex}$"
    if role not in XREF_ROLES:
        ctx.unknown.append(f":{role}:")
        return f":{role}:`{content}`"
    titled = re.fullmatch(r"(.+?)\s*<([^<>]+)>", content.strip(), re.S)
    if titled:
        title, target = titled.group(1), titled.group(2).strip()
    else:
        target = content.strip()
        title = target.lstrip("~.").rsplit(".", 1)[-1] if target.startswith("~") else target.lstrip("!")
    target = target.lstrip("~!")
    title = " ".join(title.split())
    resolved = None
    if ctx.resolver is not None:
        resolved = ctx.resolver.resolve(target, ctx.module, ctx.scopes, ctx.tree)
    if resolved is None:
        return f"`{title}`"
    if title == target and (resolved == target or "." not in target):
        return f"[`{title}`][]"  # the name is its own identifier (a bare name resolves from the docstring's scope)
    return f"[`{title}`][{resolved}]"


def table_math(tex: str, backslash: str) -> str:
    """Pipes would split a Markdown table cell: write them as TeX's `\\vert` / `\\Vert`."""

    def command(name: str, following: str) -> str:
        return f"{backslash}{name}" + (" " if following[:1].isalpha() else "")

    out = re.sub(re.escape(f"{backslash}|") + r"(?=(.?))", lambda m: command("Vert", m.group(1)), tex)
    return re.sub(r"(?<![\\])\|(?=(.?))", lambda m: command("vert", m.group(1)), out)


def convert_inline(text: str, ctx: Context, backslash: str, in_table: bool = False) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("role"):
            role_match = ROLE_RE.fullmatch(match.group("role"))
            if role_match is None:  # e.g. a `:py:` prefix on an unknown domain
                return match.group(0)
            return convert_role(role_match.group(1), role_match.group(2), ctx, backslash, in_table)
        if match.group("literal"):
            inner = match.group("lit")
            return f"`{inner}`" if "`" not in inner else match.group(0)
        if match.group("hflink"):  # Hugging Face doc-builder style, [`~module.Name`]: a cross-reference too
            return convert_role("obj", match.group("hf"), ctx, backslash, in_table)
        if match.group("link"):
            return f"[{match.group('text').strip()}]({match.group('url').strip()})"
        if match.group("math") and in_table:
            body = match.group("math")
            fence = "$$" if body.startswith("$$") else "$"
            return f"{fence}{table_math(body[len(fence) : -len(fence)], backslash)}{fence}"
        return match.group(0)  # an existing code span or formula: left alone

    return INLINE_RE.sub(replace, text)


# ----------------------------------------------------------------------------------------- blocks


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def block_end(lines: list[str], start: int, parent_indent: int) -> int:
    """End (exclusive) of the block indented deeper than `parent_indent` from `start`, less trailing blanks."""
    end = start
    while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) > parent_indent):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def reindent(block: list[str], indent: int) -> list[str]:
    body = textwrap.dedent("\n".join(block)).split("\n")
    return [" " * indent + line if line.strip() else "" for line in body]


def split_cells(line: str, columns: list[tuple[int, int]]) -> list[str]:
    """Cells of a simple-table row: by runs of 2+ spaces outside inline markup, else by column position."""
    chunks: list[tuple[int, str]] = []
    masked = INLINE_RE.sub(lambda m: "x" * len(m.group(0)), line)
    for match in re.finditer(r"\S+(?: \S+)*", masked):
        chunks.append((match.start(), line[match.start() : match.end()]))
    cells = [""] * len(columns)
    if len(chunks) == len(columns):
        return [text for _, text in chunks]
    for start, text in chunks:
        index = max(i for i, (col_start, _) in enumerate(columns) if col_start <= start or i == 0)
        cells[index] = f"{cells[index]} {text}".strip()
    return cells


def convert_table(lines: list[str], start: int) -> tuple[list[list[str]] | None, list[list[str]], int]:
    """Parse a simple table from its top rule; returns (header or None, rows, index after the table)."""
    rule = lines[start]
    indent = indent_of(rule)
    columns = [(m.start(), m.end()) for m in re.finditer(r"=+", rule)]
    sections: list[list[list[str]]] = [[]]
    i = start + 1
    while i < len(lines):
        line = lines[i]
        if TABLE_RULE_RE.match(line):
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if len(sections) == 1 and following.strip() and indent_of(following) >= indent:
                sections.append([])  # the header's rule: a body follows
                i += 1
                continue
            i += 1
            break
        if not line.strip():
            i += 1
            continue
        first = line[columns[0][0] : columns[0][1]] if len(line) > columns[0][0] else ""
        rows = sections[-1]
        if not first.strip() and rows:  # continuation of the previous row
            for index, text in enumerate(split_cells(line, columns)):
                if text:
                    rows[-1][index] = f"{rows[-1][index]} {text}".strip()
        else:
            rows.append(split_cells(line, columns))
        i += 1
    else:
        return None, [], start + 1  # no closing rule: not a table
    if len(sections) == 2:
        header = [" ".join(column).strip() for column in zip(*sections[0], strict=True)] if sections[0] else None
        return header, sections[1], i
    return None, sections[0], i


def escape_pipes(text: str, backslash: str) -> str:
    """Escape the pipes outside code spans and formulas (those would split a table cell)."""
    pieces, position = [], 0
    for match in INLINE_RE.finditer(text):
        pieces += [text[position : match.start()].replace("|", f"{backslash}|"), match.group(0)]
        position = match.end()
    pieces.append(text[position:].replace("|", f"{backslash}|"))
    return "".join(pieces)


def markdown_table(header: list[str] | None, rows: list[list[str]], indent: int, ctx: Context, bs: str) -> list[str]:
    def cell(text: str) -> str:
        return escape_pipes(convert_inline(text, ctx, bs, in_table=True), bs)

    width = len(rows[0]) if rows else len(header or [])
    head = header if header is not None else [""] * width
    out = ["| " + " | ".join(cell(text) for text in head) + " |", "|" + "---|" * width]
    out += ["| " + " | ".join(cell(text) for text in row) + " |" for row in rows]
    return [" " * indent + line for line in out]


def in_examples(lines: list[str], index: int) -> bool:
    """Whether line `index` lies inside a Google `Examples:` section (griffe renders `>>>` there)."""
    line_indent = indent_of(lines[index])
    for j in range(index - 1, -1, -1):
        line = lines[j]
        if not line.strip():
            continue
        if indent_of(line) < line_indent:
            return EXAMPLES_RE.match(line) is not None
    return False


def ensure_blank_around(out: list[str], block: list[str], lines: list[str], next_index: int) -> None:
    if out and out[-1].strip():
        out.append("")
    out.extend(block)
    if next_index < len(lines) and lines[next_index].strip():
        out.append("")


def convert_blocks(text: str, ctx: Context, backslash: str) -> str:
    """Convert block-level reST in a docstring's text; inline markup is converted paragraph by paragraph."""
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.extend(convert_inline("\n".join(prose), ctx, backslash).split("\n"))
            prose.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = indent_of(line)

        if FENCE_RE.match(line):  # an existing fenced block: copied verbatim
            flush()
            marker = stripped[:3]
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith(marker):
                end += 1
            out.extend(lines[i : end + 1])
            i = end + 1
            continue
        if stripped == "$$":  # an existing display formula: copied verbatim
            flush()
            end = i + 1
            while end < len(lines) and lines[end].strip() != "$$":
                end += 1
            out.extend(lines[i : end + 1])
            i = end + 1
            continue

        directive = DIRECTIVE_RE.match(line)
        if directive:
            name, argument = directive.group(2).lower(), directive.group(3).strip()
            end = block_end(lines, i + 1, indent)
            body = lines[i + 1 : end]
            if name == "math":
                flush()
                content = ([" " * (indent + 4) + argument] if argument else []) + body
                equations = re.split(r"\n\s*\n", textwrap.dedent("\n".join(content)).strip("\n"))
                block: list[str] = []
                for equation in equations:
                    block += ["", "$$"] if block else ["$$"]
                    block += [line.rstrip() for line in equation.split("\n")]
                    block.append("$$")
                ensure_blank_around(out, [" " * indent + b if b else "" for b in block], lines, end)
                i = end
                continue
            if name in CODE_DIRECTIVES:
                flush()
                options_end = 0
                while options_end < len(body) and body[options_end].strip().startswith(":"):
                    options_end += 1
                code = body[options_end:]
                while code and not code[0].strip():
                    code.pop(0)
                block = [" " * indent + f"```{argument}", *reindent(code, indent), " " * indent + "```"]
                ensure_blank_around(out, block, lines, end)
                i = end
                continue
            if name in ADMONITIONS:
                flush()
                content = ([argument] if argument else []) + ([""] if argument and body else [])
                content += textwrap.dedent("\n".join(body)).split("\n") if body else []
                inner = convert_blocks("\n".join(content), ctx, backslash).split("\n")
                block = [" " * indent + f"{ADMONITIONS[name]}:"]
                block += [" " * (indent + 4) + b if b.strip() else "" for b in inner]
                ensure_blank_around(out, block, lines, end)
                i = end
                continue
            ctx.unknown.append(f".. {name}::")

        if TABLE_RULE_RE.match(line):
            header, rows, end = convert_table(lines, i)
            if rows:
                flush()
                ensure_blank_around(out, markdown_table(header, rows, indent, ctx, backslash), lines, end)
                i = end
                continue

        if stripped.startswith(">>>") and not in_examples(lines, i):
            flush()
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            block = [" " * indent + "```pycon", *reindent(lines[i:end], indent), " " * indent + "```"]
            ensure_blank_around(out, block, lines, end)
            i = end
            continue

        if stripped.endswith("::") and not stripped.startswith(".."):
            # a literal block follows: the paragraph keeps one colon (none if `::` stood apart)
            next_text = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
            paragraph_indent = indent
            k = i
            while k > 0 and lines[k - 1].strip():
                k -= 1
                paragraph_indent = min(paragraph_indent, indent_of(lines[k]))
            if next_text is not None and indent_of(lines[next_text]) > paragraph_indent:
                head = line.rstrip()[:-2]
                head = head.rstrip() if head.endswith(" ") or not head.strip() else head + ":"
                if head.strip():
                    prose.append(head)
                flush()
                end = block_end(lines, next_text, paragraph_indent)
                code = lines[next_text:end]
                fence = " " * paragraph_indent + "```"
                block = [fence, *reindent(code, paragraph_indent), fence]
                ensure_blank_around(out, block, lines, end)
                i = end
                continue

        if EXAMPLE_RE.match(line):  # griffe only reads `>>>` under "Examples:"; "Example:" is an admonition
            next_text = next((lines[j] for j in range(i + 1, len(lines)) if lines[j].strip()), "")
            if indent_of(next_text) > indent and next_text.strip().startswith(">>>"):
                line = line.replace("Example:", "Examples:")

        if not stripped:
            flush()
            out.append(line)
        else:
            prose.append(line)
        i += 1
    flush()
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- source files


STRING_PREFIX_RE = re.compile(r"^([rRuU]?)('''|\"\"\"|'|\")")


@dataclass
class Docstring:
    start: int  # offsets into the source
    end: int
    column: int  # of the literal's first character on its line
    context: Context


def line_offsets(source: str) -> list[int]:
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def docstrings(tree: ast.Module, source: str, context: Context) -> Iterator[Docstring]:
    """Every string literal that is a statement of its own, with the class scopes around it."""
    offsets = line_offsets(source)

    def visit(body: Iterable[ast.stmt], scopes: list[str]) -> Iterator[Docstring]:
        for node in body:
            value = node.value if isinstance(node, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                assert value.end_lineno is not None and value.end_col_offset is not None
                start = char_offset(source, offsets, value.lineno, value.col_offset)
                end = char_offset(source, offsets, value.end_lineno, value.end_col_offset)
                column = start - offsets[value.lineno - 1]
                yield Docstring(start, end, column, replace(context, scopes=list(scopes), unknown=[]))
            elif isinstance(node, ast.ClassDef):
                qualname = f"{scopes[-1] if scopes else context.module}.{node.name}"
                yield from visit(node.body, [*scopes, qualname])
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from visit(node.body, scopes)
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
                for child in ("body", "orelse", "finalbody"):
                    yield from visit(getattr(node, child, []), scopes)

    yield from visit(tree.body, [])


def char_offset(source: str, offsets: list[int], lineno: int, col_offset: int) -> int:
    """Offset into `source` of an ast position (whose column counts UTF-8 bytes)."""
    line = source[offsets[lineno - 1] : offsets[lineno]]
    return offsets[lineno - 1] + len(line.encode()[:col_offset].decode())


def convert_literal(literal: str, context: Context, column: int = 0) -> str:
    """Convert one string literal's source text (prefix and quotes included); unchanged if not plain.

    `column` is where the literal starts on its line: lines the conversion lengthens are wrapped to fit.
    """
    match = STRING_PREFIX_RE.match(literal)
    if match is None:
        return literal
    prefix, quote = match.groups()
    body = literal[len(prefix) + len(quote) : len(literal) - len(quote)]
    if not literal.endswith(quote) or quote in body:  # implicit concatenation or odd quoting: leave alone
        return literal
    backslash = "\\" if prefix.lower() == "r" else "\\\\"
    if len(quote) == 1:  # a one-line string cannot take blocks
        new_body = convert_inline(body, context, backslash)
    else:
        new_body = convert_docstring_body(body, context, backslash, column, column + len(prefix) + len(quote))
    if new_body.endswith(("\\", quote[0])) or quote in new_body:
        return literal
    return f"{prefix}{quote}{new_body}{quote}"


def convert_docstring_body(body: str, context: Context, backslash: str, column: int, opening: int) -> str:
    """Convert a triple-quoted body; its first line is treated as indented like the rest (`inspect.cleandoc`).

    `column` is the literal's own indentation and `opening` the width before its first character.
    """
    lines = body.split("\n")
    margins = [indent_of(line) for line in lines[1:] if line.strip()]
    margin = min(margins) if margins and lines[0].strip() else 0
    converted = convert_blocks(" " * margin + body, context, backslash).split("\n")
    first_indent = margin if margins else column
    widths = Widths(context.line_length, opening - margin, 3, first_indent)
    converted = wrap_long_lines(converted, {" " * margin + lines[0], *lines[1:]}, widths)
    first = converted[0]
    converted[0] = first[margin:] if first.startswith(" " * margin) else first.lstrip(" ")
    return "\n".join(converted)


@dataclass(frozen=True)
class Widths:
    """Line-length limit, and what the source adds around a docstring's first and last lines."""

    limit: int = 120
    first_extra: int = 0  # the first line's indentation and quotes, beyond its (virtual) margin
    closing: int = 3  # the closing quotes on the last line
    first_indent: int = 0  # where text cut from the first line continues


SECTION_RE = re.compile(r"^\s*[A-Z][\w ]*:\s*$")
ITEM_RE = re.compile(r"^\s*\**[A-Za-z_][\w, .*]*(\s*\([^)]*\))?:(\s|$)")
LIST_RE = re.compile(r"^\s*([*+-]|\d+[.)])\s+")
UNSAFE_LINE_START_RE = re.compile(r"^([*+#>|=-]|\d+[.)]\s|```|\$\$|[A-Z][\w ]*:\s*$)")


def continuation_indent(lines: list[str], index: int) -> int:
    """Indentation for text that continues line `index` (a Google item's or list item's body, or the same)."""
    line = lines[index]
    indent = indent_of(line)
    following = lines[index + 1] if index + 1 < len(lines) else ""
    if following.strip() and indent_of(following) > indent and not LIST_RE.match(following):
        return indent_of(following)
    list_item = LIST_RE.match(line)
    if list_item:
        return list_item.end()
    parent = next((lines[j] for j in range(index - 1, -1, -1) if lines[j].strip() and indent_of(lines[j]) < indent), "")
    if SECTION_RE.match(parent) and ITEM_RE.match(line):
        return indent + 4
    return indent


def wrap_long_lines(lines: list[str], original: set[str], widths: Widths) -> list[str]:
    """Break the prose lines the conversion made longer than the limit, between inline tokens."""
    out = list(lines)
    protected = False  # inside a fence or a display formula
    index = 0
    while index < len(out):
        line = out[index]
        stripped = line.strip()
        extra = (widths.first_extra if index == 0 else 0) + (widths.closing if index == len(out) - 1 else 0)
        limit = widths.limit - extra
        if FENCE_RE.match(line) or stripped == "$$":
            protected = not protected
        elif not protected and len(line) > limit and line not in original and stripped[:1] != "|":
            spans = [m.span() for m in INLINE_RE.finditer(line)]
            breaks = [
                m.start()
                for m in re.finditer(r" +", line)
                if m.start() > indent_of(line)
                and not any(start < m.start() < end for start, end in spans)
                and not UNSAFE_LINE_START_RE.match(line[m.end() :])
            ]
            fitting = [b for b in breaks if b <= limit]
            cut = fitting[-1] if fitting else (breaks[0] if breaks else None)
            if cut is not None:
                indent = widths.first_indent if index == 0 else continuation_indent(out, index)
                out[index : index + 1] = [line[:cut].rstrip(), " " * indent + line[cut:].lstrip()]
        index += 1
    return out


def convert_source(
    source: str, path: Path, root: Path, resolver: Resolver | None = None, line_length: int = 120
) -> tuple[str, int, list[str]]:
    """Converted source, the number of docstrings changed and what was left unconverted."""
    tree = ast.parse(source)
    module = module_name(path, root, resolver.packages if resolver else package_dirs(root))
    context = Context(module, [], tree, resolver, [], line_length)
    changed = 0
    unknown: list[str] = []
    pieces: list[str] = []
    position = 0
    for doc in docstrings(tree, source, context):
        literal = source[doc.start : doc.end]
        new = convert_literal(literal, doc.context, doc.column)
        unknown += doc.context.unknown
        pieces += [source[position : doc.start], new]
        position = doc.end
        changed += new != literal
    pieces.append(source[position:])
    return "".join(pieces), changed, sorted(set(unknown))


def ruff_line_length(root: Path) -> int:
    """`[tool.ruff] line-length` from `pyproject.toml` (ruff's default, 88, without one)."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        return int(tomllib.loads(pyproject.read_text()).get("tool", {}).get("ruff", {}).get("line-length", 88))
    return 88


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="Python files to convert in place")
    parser.add_argument("--check", action="store_true", help="only report the files that would change")
    parser.add_argument("--inventory", type=Path, help="the built site's objects.inv: link documented targets")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (pyproject.toml); default: cwd")
    parser.add_argument("--diff", action="store_true", help="with --check: print what would change")
    parser.add_argument("--line-length", type=int, help="wrap lines the conversion lengthens (default: ruff's)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    line_length = args.line_length or ruff_line_length(root)
    resolver = None
    if args.inventory is not None:
        resolver = Resolver(read_inventory(args.inventory), root, package_dirs(root))
    pending = failed = 0
    for path in args.files:
        if path.suffix != ".py":
            continue
        source = path.read_text(encoding="utf-8")
        try:
            new, changed, unknown = convert_source(source, path, root, resolver, line_length)
        except SyntaxError as error:
            print(f"{path}: skipped, does not parse: {error}", file=sys.stderr)
            failed += 1
            continue
        for construct in unknown:
            print(f"{path}: left as is: {construct}", file=sys.stderr)
        if new == source:
            continue
        pending += 1
        if args.check:
            print(f"{path}: {changed} docstring(s) would be converted")
            if args.diff:
                diff = difflib.unified_diff(source.splitlines(True), new.splitlines(True), str(path), str(path))
                sys.stdout.writelines(diff)
        else:
            ast.parse(new)  # never write a file that no longer parses
            path.write_text(new, encoding="utf-8")
            print(f"{path}: {changed} docstring(s) converted")
    return 1 if failed or (args.check and pending) else 0


if __name__ == "__main__":
    raise SystemExit(main())
