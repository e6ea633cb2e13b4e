"""The built docs as a reader gets them: offline assets, typeset formulas, no raw reStructuredText.

Builds the site once (`mkdocs build --strict` into a temporary folder; or reads the folder named by
`GIPO_DOCS_SITE`) and checks every page's HTML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KATEX = ROOT / "tools" / "docs_assets" / "node_modules" / "katex"
VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
HIDDEN_TAGS = frozenset({"code", "pre", "script", "style", "kbd", "samp", "textarea"})
REMOTE_RE = re.compile(r"^\s*(https?:)?//", re.I)
RAW_REST = (":math:", ":func:", ":class:", ":meth:", ":mod:", ":attr:", ".. math::", ".. note::", ".. code-block::")
TABLE_RULE_RE = re.compile(r"^\s*={3,}( +={3,})+\s*$", re.M)
MARKDOWN_TABLE_RE = re.compile(r"^[ \t]*\|[^\n]*\|[ \t]*\n[ \t]*\|?[ \t]*:?-{3,}:?[ \t]*\|", re.M)
DELIMITER_RE = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|(?<![\w\\$])\$(?![\s$])[^$\n]+?(?<![\s\\])\$(?![\w$])")


@dataclass
class Page:
    """What one HTML page shows (outside code) and what it loads."""

    path: Path
    text: list[str] = field(default_factory=list)  # visible text outside code and formulas
    formulas: list[tuple[str, bool]] = field(default_factory=list)  # (TeX with delimiters, display?)
    scripts: list[str] = field(default_factory=list)
    stylesheets: list[str] = field(default_factory=list)


class PageParser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[tuple[str, str]] = []  # (tag, role: "hidden" | "math" | "")
        self.math: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.page.scripts.append(attributes["src"] or "")
        rel = (attributes.get("rel") or "").lower().split()
        if tag == "link" and ({"stylesheet", "preload", "preconnect", "modulepreload"} & set(rel)):
            self.page.stylesheets.append(attributes.get("href") or "")
        if tag in VOID_TAGS:
            return
        classes = (attributes.get("class") or "").split()
        role = "math" if "arithmatex" in classes else "hidden" if tag in HIDDEN_TAGS else ""
        if role == "math" and not self.inside("math"):
            self.math = []
        self.stack.append((tag, role))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        while self.stack:
            open_tag, role = self.stack.pop()
            if role == "math" and not self.inside("math"):
                self.page.formulas.append(("".join(self.math).strip(), open_tag == "div"))
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.inside("math"):
            self.math.append(data)
        elif not self.inside("hidden"):
            self.page.text.append(data)

    def inside(self, role: str) -> bool:
        return any(r == role for _, r in self.stack)


def parse(path: Path) -> Page:
    page = Page(path)
    parser = PageParser(page)
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("GIPO_DOCS_SITE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site")
    command = [
        sys.executable,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "--quiet",
        "-f",
        str(ROOT / "mkdocs.yml"),
        "-d",
        str(out),
    ]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}")
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> list[Page]:
    found = [parse(path) for path in sorted(site.rglob("*.html"))]
    assert len(found) > 10, f"only {len(found)} pages in {site}"
    return found


def where(page: Page, site: Path) -> str:
    return str(page.path.relative_to(site))


def test_nothing_loads_from_outside_the_site(site: Path, pages: list[Page]) -> None:
    remote = [f"{where(p, site)}: {url}" for p in pages for url in p.scripts + p.stylesheets if REMOTE_RE.match(url)]
    for css in site.rglob("*.css"):
        for url in re.findall(r"""(?:url\(|@import\s+)\s*['"]?([^'")\s;]+)""", css.read_text(encoding="utf-8")):
            if REMOTE_RE.match(url):
                remote.append(f"{css.relative_to(site)}: {url}")
    assert not remote, "loaded from outside the site:\n" + "\n".join(remote)


def test_math_renderer_is_vendored(site: Path, pages: list[Page]) -> None:
    katex = site / "assets" / "katex"
    assert (katex / "katex.min.js").is_file() and (katex / "katex.min.css").is_file()
    assert (katex / "katex-render.js").is_file()
    assert any(katex.glob("fonts/KaTeX_Main-Regular.woff2")), "KaTeX's fonts are missing"
    for page in pages:
        if page.path.name == "404.html":
            continue
        scripts = " ".join(page.scripts)
        assert "assets/katex/katex.min.js" in scripts and "assets/katex/katex-render.js" in scripts, where(page, site)
        assert any("assets/katex/katex.min.css" in href for href in page.stylesheets), where(page, site)


def test_every_math_delimiter_is_inside_a_formula(site: Path, pages: list[Page]) -> None:
    stray = []
    for page in pages:
        text = "".join(page.text)
        stray += [f"{where(page, site)}: {m.group(0)[:60]!r}" for m in DELIMITER_RE.finditer(text)]
    assert not stray, "math delimiters outside an arithmatex span:\n" + "\n".join(stray)


def test_formulas_typeset_with_katex(site: Path, pages: list[Page], tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (KATEX / "dist" / "katex.js").is_file():
        pytest.skip("needs node and tools/docs_assets/node_modules (make docs-assets)")
    formulas = sorted({(strip_delimiters(tex), display) for page in pages for tex, display in page.formulas})
    assert formulas, "no formula found on the site"
    batch = tmp_path / "formulas.json"
    batch.write_text(json.dumps(formulas))
    result = subprocess.run(
        [node, "-e", KATEX_CHECK, str(KATEX), str(batch)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout)
    assert not errors, "KaTeX cannot typeset:\n" + "\n".join(errors)


KATEX_CHECK = """
const katex = require(process.argv[1]);
const errors = [];
for (const [tex, display] of JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"))) {
  try { katex.renderToString(tex, {displayMode: display, throwOnError: true, strict: "ignore"}); }
  catch (e) { errors.push(tex + "\\n    " + e.message); }
}
console.log(JSON.stringify(errors));
"""


def strip_delimiters(text: str) -> str:
    """The TeX inside arithmatex's `\\(...\\)` / `\\[...\\]` (what katex-render.js typesets)."""
    match = re.fullmatch(r"\\\((.*)\\\)|\\\[(.*)\\\]", text, re.S)
    return next(group for group in match.groups() if group is not None) if match else text


def test_no_raw_restructuredtext(site: Path, pages: list[Page]) -> None:
    raw = []
    for page in pages:
        text = "".join(page.text)
        raw += [f"{where(page, site)}: {token}" for token in RAW_REST if token in text]
        raw += [f"{where(page, site)}: table rule {m.group(0).strip()[:30]}" for m in TABLE_RULE_RE.finditer(text)]
    assert not raw, "raw reStructuredText on the site:\n" + "\n".join(sorted(set(raw)))


def test_every_markdown_table_renders(site: Path, pages: list[Page]) -> None:
    """A pipe table that Markdown could not parse (a stray `|`, no blank line before it) shows as text."""
    broken = [where(page, site) for page in pages if MARKDOWN_TABLE_RE.search("".join(page.text))]
    assert not broken, "Markdown tables left as text on:\n" + "\n".join(broken)
