"""Every committed study page regenerates identically from its committed results store (`--report-only`)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from benchmarks import vla_posttrain
from benchmarks.metaworld_stale import rllib_appo, sweep

ROOT = Path(__file__).resolve().parents[2]
DOCS, IMG = ROOT / "docs" / "benchmarks", ROOT / "docs" / "img"

STUDIES = {  # study: (its main, the preset of the committed pages, the pages and figures it writes)
    "metaworld_stale.sweep": (sweep.main, "small", ["metaworld_stale.csv", "metaworld_stale.md",
                              "metaworld_stale_runs.csv"], ["metaworld_stale_curves.png",
                              "metaworld_stale_diagnostics.png", "metaworld_stale_tasks.png"]),
    "metaworld_stale.rllib_appo": (rllib_appo.main, "small", ["metaworld_stale_rllib_appo.csv",
                                   "metaworld_stale_rllib_appo.md"], ["metaworld_stale_rllib_appo.png"]),
    "vla_posttrain": (vla_posttrain.main, "full", ["vla_metaworld.csv", "vla_metaworld.md"],
                      ["vla_metaworld_stale.png"]),
}  # fmt: skip


@pytest.mark.parametrize("study", list(STUDIES))
def test_report_only_regenerates_the_committed_pages_identically(study, tmp_path):
    main, preset, pages, figures = STUDIES[study]
    with contextlib.redirect_stdout(io.StringIO()):
        main(["--preset", preset, "--report-only", "--pages", str(tmp_path), "--workdir", str(tmp_path / "work")])
    assert sorted(p.name for p in (tmp_path / "benchmarks").iterdir()) == pages
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == figures
    for folder, committed, names in (("benchmarks", DOCS, pages), ("img", IMG, figures)):
        for name in names:
            written = (tmp_path / folder / name).read_bytes()
            assert written == (committed / name).read_bytes(), f"{name} differs from the committed one"


def test_the_when_gipo_helps_page_regenerates_identically(tmp_path):
    """The summary page reads every study's store: committing runs means regenerating it."""
    from benchmarks import when_gipo_helps

    when_gipo_helps.main(docs=tmp_path)
    for name in ("when_gipo_helps.md", "when_gipo_helps.csv"):
        assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes(), (
            f"{name}: run python -m benchmarks.when_gipo_helps"
        )
