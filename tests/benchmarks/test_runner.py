"""The study runner: results come back through Ray (the driver alone writes the store), resume, failed runs with their
log tail, smoke results kept out of the committed store, and the check study on a two-node Ray cluster."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from benchmarks import runner  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this module's run functions travel by value
ROOT = Path(__file__).resolve().parents[2]


class Job(NamedTuple):
    index: int

    @property
    def name(self) -> str:
        return f"job{self.index}"


def in_own_folder(context: runner.RunContext) -> dict:
    """Works in a folder of its own that it deletes before returning (and in the runner's worker-only folder)."""
    own = Path(tempfile.mkdtemp(prefix="own-"))
    (own / "result.json").write_text(json.dumps({"index": context.run.index, "square": context.run.index**2}))
    (context.workdir / "scratch.txt").write_text("scratch")
    summary = json.loads((own / "result.json").read_text())
    shutil.rmtree(own)
    return summary | {"pid": os.getpid(), "own": str(own), "workdir": str(context.workdir)}


def second_fails(context: runner.RunContext) -> dict:
    """Job 1 is a process that prints and fails; the others succeed."""
    if context.run.index == 1:
        context.call([sys.executable, "-c", "print('loading the task'); print('step 1 diverged'); raise SystemExit(3)"])
    return {"index": context.run.index}


REPORTS: list = []


def record(preset_name, preset, summaries, pages) -> None:
    REPORTS.append((preset_name, dict(summaries), pages))


def study(tmp_path: Path, run) -> runner.Study:
    return runner.Study(
        name="test",
        presets={"smoke": {"jobs": 3}, "real": {"jobs": 3}},
        runs=lambda preset: [Job(i) for i in range(preset["jobs"])],
        run=run,
        report=record,
        store=lambda preset_name: tmp_path / "committed" / preset_name,
        workdir=lambda preset_name: tmp_path / "work" / preset_name,
        describe=lambda summary: f"index {summary['index']}",
    )


def args(preset: str, **overrides) -> argparse.Namespace:
    values = {"preset": preset, "workers": None, "address": None, "workdir": None, "results": None}
    return argparse.Namespace(**(values | {"report_only": False, "no_report": False} | overrides))


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="rtest", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_run_whose_folder_exists_only_in_its_worker_lands_in_the_store(tmp_path, local_ray):
    s = study(tmp_path, in_own_folder)
    runs, results = s.runs({"jobs": 3}), tmp_path / "committed" / "real"
    summaries, failed = runner.execute(s, "real", runs, results, tmp_path / "work")
    assert not failed and list(summaries) == runs
    for run, summary in summaries.items():
        assert summary["square"] == run.index**2 and summary["pid"] != os.getpid()  # made in a worker process
        assert not Path(summary["own"]).exists() and not Path(summary["workdir"]).exists()  # both gone with the run
        assert runner.load(results, run) == summary  # the driver stored what came back through Ray


def test_resume_skips_the_stored_runs(tmp_path, local_ray, capsys):
    s = study(tmp_path, in_own_folder)
    runs, results = s.runs({"jobs": 3}), tmp_path / "committed" / "real"
    runner.store(results, runs[1], {"index": 1, "square": 1, "stored": "earlier"})
    stamp = runner.stored_path(results, runs[1]).stat().st_mtime_ns
    summaries, _ = runner.execute(s, "real", runs, results, tmp_path / "work")
    out = capsys.readouterr().out
    assert "3 runs, 1 stored" in out and "2 to go" in out
    assert summaries[runs[1]]["stored"] == "earlier" and "pid" in summaries[runs[0]]
    assert runner.stored_path(results, runs[1]).stat().st_mtime_ns == stamp  # not rerun, not rewritten
    # the earlier runners' layout: a summary left in the work folder is adopted, not rerun
    (tmp_path / "work" / "job3.json").write_text(json.dumps({"index": 3, "stored": "left by a run"}))
    summaries, _ = runner.execute(s, "real", s.runs({"jobs": 4}), results, tmp_path / "work")
    assert summaries[Job(3)]["stored"] == "left by a run"


def test_a_failed_run_is_reported_with_its_log_tail_and_the_others_land(tmp_path, local_ray, capsys):
    s = study(tmp_path, second_fails)
    with pytest.raises(SystemExit, match=r"1 of 3 runs failed .*job1"):
        runner.main(s, args("real"))
    out = capsys.readouterr().out
    assert "job1" in out and "FAILED: RunFailed" in out and "exited with status 3" in out
    assert "loading the task\nstep 1 diverged" in out  # the log's tail, printed by the driver
    assert "step 1 diverged" in (tmp_path / "work" / "real" / "job1.log").read_text()
    stored = sorted(p.name for p in (tmp_path / "committed" / "real").iterdir())
    assert stored == ["job0.json.gz", "job2.json.gz"]
    assert REPORTS[-1][0] == "real" and sorted(r.index for r in REPORTS[-1][1]) == [0, 2]  # reported what finished


def test_smoke_results_never_reach_the_committed_store(tmp_path, local_ray):
    s = study(tmp_path, in_own_folder)
    summaries = runner.main(s, args("smoke"))
    assert len(summaries) == 3 and not (tmp_path / "committed").exists()
    assert sorted(p.name for p in (tmp_path / "work" / "smoke" / "kept").iterdir()) == [
        "job0.json.gz", "job1.json.gz", "job2.json.gz",
    ]  # fmt: skip
    pages = REPORTS[-1][2]
    assert pages.docs.is_relative_to(tmp_path / "work") and pages.img.is_relative_to(tmp_path / "work")
    runner.main(s, args("smoke", report_only=True))
    assert not (tmp_path / "committed").exists()


def test_the_studies_keep_smoke_results_and_pages_in_their_ignored_work_folders():
    from benchmarks import vla_posttrain
    from benchmarks.metaworld_stale import rllib_appo, sweep
    from benchmarks.report import DOCS, IMG

    for s in (sweep.STUDY, rllib_appo.STUDY, vla_posttrain.STUDY):
        places = runner.places(s, "smoke")
        assert places.results.is_relative_to(ROOT / "runs"), s.name  # `runs/` is ignored by git
        assert not places.results.is_relative_to(s.store("smoke").parent)
        assert places.pages.docs != DOCS and places.pages.img != IMG
        real = next(name for name in s.presets if name not in s.smoke)
        assert runner.places(s, real).results == s.store(real) and runner.places(s, real).pages.docs == DOCS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp_dir: str) -> None:
    """Stop the processes of the cluster under `temp_dir` only (never `ray stop`: it stops every Ray on the machine)."""
    session = os.path.basename(os.path.realpath(os.path.join(temp_dir, "session_latest")))
    mine = set()
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if temp_dir in cmdline or (session.startswith("session_") and session in cmdline):
                mine |= {proc, *proc.children(recursive=True)}
        except psutil.Error:
            pass
    for proc in mine:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(mine), timeout=10)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def test_the_check_study_runs_on_a_two_node_cluster(tmp_path):
    """`ray start --head` + a second `ray start --address` on this machine, then the runner with `--address`."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    temp_dir = tempfile.mkdtemp(prefix="rtwo", dir="/tmp")
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats", "--dashboard-agent-listen-port", str(_free_port())]
    start = time.time()
    try:
        subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                        "--temp-dir", temp_dir, "--include-dashboard", "false", *common],
                       env=env, check=True, capture_output=True, cwd=ROOT)  # fmt: skip
        common[-1] = str(_free_port())
        subprocess.run([ray_cli, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common],
                       env=env, check=True, capture_output=True, cwd=ROOT)  # fmt: skip
        work = tmp_path / "work"
        out = subprocess.run([sys.executable, "-m", "benchmarks.runner", "--address", address, "--workdir", str(work)],
                             env=env, capture_output=True, text=True, cwd=ROOT, timeout=180)  # fmt: skip
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        summaries = runner.stored(runner.CHECK.runs(runner.CHECK.presets["smoke"]), work / "kept")
        assert len(summaries) == 4 and "they ran on 2 node(s)" in out.stdout
        assert len({s["node"] for s in summaries.values()}) == 2  # both nodes ran runs; the driver stored them all
        assert all(not Path(s["workdir"]).exists() and s["work"].startswith("run ") for s in summaries.values())
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert time.time() - start < 120
