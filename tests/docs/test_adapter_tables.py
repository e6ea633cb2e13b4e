"""`docs/adapters.md` is generated from the code (names, diagnostics, the errors bad input raises) and current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_adapters_page_is_current():
    spec = importlib.util.spec_from_file_location("adapter_tables", ROOT / "tools" / "adapter_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    page = tables.render()
    assert "**no error**" not in page  # every bad input in the table raises
    assert page == (ROOT / "docs" / "adapters.md").read_text(), "regenerate: python tools/adapter_tables.py"
