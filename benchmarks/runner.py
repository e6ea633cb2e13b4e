"""One runner for every study: presets (data), a run function and a report function, scheduled on Ray.

A `Study` is its presets, a function that makes one run's summary (a plain JSON-able dict) from a
`RunContext`, and a function that writes its report from the finished summaries. The runner owns
the rest, the same for every study:

- **scheduling**: one Ray task per run, on a local Ray instance (`--workers` runs at a time) or on
  a cluster (`--address`, e.g. `auto`); a run takes one CPU unless its study asks for more
  (`Study.cpus`). The nodes need the repository and its environment at the same path (the task
  imports `benchmarks`, and runs that are their own process start `python` there).
- **results through Ray**: a run works in a temp folder that exists only in its worker
  (`RunContext.workdir`, deleted afterwards) and its summary comes back as the task's return value,
  with the tail of its log; only the driver writes the results store (`<store>/<run>.json.gz`,
  gzipped JSON). A cluster needs no shared filesystem. Runs that need their own process (RLlib runs
  start Ray themselves; the TorchRL and VLA runs are scripts) run it with `RunContext.call`.
- **resume**: runs already in the store are skipped, so a killed sweep continues with the missing
  ones. Summaries that the earlier per-study runners left in the work folder (`<workdir>/<run>.json`)
  are adopted into the store first.
- **progress**: per finished run, runs done and left, the elapsed time and an ETA.
- **failures**: a failed run is printed with its log tail (kept in `<workdir>/<run>.log`), the
  others go on; the runner exits non-zero at the end, naming them.
- **smoke presets** (and presets changed on the command line): their results and pages go to the
  ignored work folder (`<workdir>/kept`, `<workdir>/pages`), never to the committed store or docs.
- **`--report-only`**: the report from the stored runs, launching nothing.

A study's module builds its command line with `parser(study)` (adding its own options) and hands the
parsed arguments to `main(study, args)`; see `benchmarks.metaworld_stale.sweep`,
`benchmarks.metaworld_stale.rllib_appo` and `benchmarks.vla_posttrain`.

Run as a module, the runner runs its own check study (`CHECK`: trivial runs, each in a worker-only
folder, a few seconds each) and says on how many nodes they ran; the check for a cluster, e.g. two
nodes on one machine (`tests/benchmarks/test_runner.py` does this):

```
ray start --head --port 6390 --num-cpus 1 --temp-dir /tmp/rcheck --include-dashboard false
ray start --address 127.0.0.1:6390 --num-cpus 1
python -m benchmarks.runner --address 127.0.0.1:6390 --workdir /tmp/rcheck-work
```
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import ray

from benchmarks.report import Pages

ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL = 20_000
"""Characters of a run's log that come back with its result (the end of the log)."""
PRINTED_TAIL = 30
"""Lines of a failed run's log printed by the driver."""


class RunFailed(Exception):
    """A run's process failed; `log` is its output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass
class RunContext:
    """What a run function gets: its preset, its run, and a work folder that exists only in its worker."""

    preset_name: str
    preset: Any
    run: Any
    workdir: Path = field(default_factory=Path)
    """A temp folder on the worker's disk, deleted when the run returns: anything the report needs goes in the
    summary."""
    shared: Any = None
    """What the study's `prepare` made on the driver (e.g. a checkpoint's files), sent once through Ray."""
    log: str = ""
    """The run's log, returned (its tail) with the summary; `call` fills it."""

    def call(self, command: list[str], *, cwd: Path | str = ROOT) -> str:
        """Run `command` as its own process, its output the run's log; raise `RunFailed` (with the log) on failure.

        Ray's variables are dropped from its environment (and `OMP_NUM_THREADS`, which Ray sets to the task's
        CPUs), so a command that starts Ray starts its own instance, as it would from a shell.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "OMP_NUM_THREADS"}
        path = self.workdir / "run.log"
        with open(path, "w") as log:
            code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd).returncode
        self.log = path.read_text(errors="replace")
        if code:
            raise RunFailed(f"`{' '.join(command[1:4])} ...` exited with status {code}", self.log)
        return self.log


def _one_cpu(preset: Any) -> float:
    return 1


def _nothing(summary: dict) -> str:
    return "finished"


@dataclass(frozen=True)
class Study:
    """A study: presets (data), a run function and a report function; `main` runs it.

    `runs(preset)` lists a preset's runs in the order they should start; each run is hashable and has a
    unique `name` (its file name in the store). `run(context)` makes one run's summary, executed in a Ray
    worker. `report(preset_name, preset, summaries, pages)` writes the study's page from the finished runs'
    summaries (keyed by run, in `runs` order) into `pages`.
    """

    name: str
    """The module, as in `python -m benchmarks.<name>`."""
    presets: Mapping[str, Any]
    runs: Callable[[Any], list]
    run: Callable[[RunContext], dict]
    report: Callable[[str, Any, dict, Pages], Any] | None
    store: Callable[[str], Path]
    """The committed results folder of a (non-smoke) preset."""
    workdir: Callable[[str], Path]
    """The default work folder of a preset (ignored by git): logs, smoke results and pages."""
    describe: Callable[[dict], str] = _nothing
    """A finished run's one-line result, for the progress line."""
    cpus: Callable[[Any], float] = _one_cpu
    """CPUs one run of a preset takes."""
    prepare: Callable[[str, Any], Any] | None = None
    """Runs on the driver before any run; its value reaches every run as `RunContext.shared`."""
    smoke: tuple[str, ...] = ("smoke",)
    """Presets whose results never reach the store."""
    workers: int = 1
    """Default runs at a time on a local Ray instance."""


def _execute(run: Callable[[RunContext], dict], context: RunContext, shared: Any) -> dict:
    """In a Ray worker: one run in a temp folder of its own; returns the summary (or the error) and the log's tail."""
    start = time.time()
    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    with tempfile.TemporaryDirectory(prefix="gipo-run-") as workdir:
        context.workdir, context.shared = Path(workdir), shared
        try:
            summary = run(context)
            json.dumps(summary)  # a plain JSON-able dict, checked here rather than in the driver
            out = {"summary": summary}
        except Exception as error:  # the run failed: its log and traceback go back, the sweep goes on
            log = getattr(error, "log", "") or context.log
            context.log = log + ("\n" if log else "") + traceback.format_exc()
            out = {"error": f"{type(error).__name__}: {error}"}
    return out | {"log": context.log[-LOG_TAIL:], "seconds": time.time() - start, "node": node}


def stored_path(results: Path, run: Any) -> Path:
    return results / f"{run.name}.json.gz"


def load(results: Path, run: Any) -> dict:
    """A stored run's summary."""
    return json.loads(gzip.decompress(stored_path(results, run).read_bytes()))


def store(results: Path, run: Any, summary: dict | bytes) -> Path:
    """Keep a run's summary (a dict, or JSON bytes as a run wrote them) in `results`, gzipped; atomic."""
    data = summary if isinstance(summary, bytes) else json.dumps(summary, indent=1).encode()
    results.mkdir(parents=True, exist_ok=True)
    path = stored_path(results, run)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(gzip.compress(data, mtime=0))
    partial.replace(path)
    return path


def stored(runs: list, results: Path) -> dict:
    """The stored summaries of `runs`, in their order (runs not stored are left out)."""
    return {run: load(results, run) for run in runs if stored_path(results, run).exists()}


def adopt(runs: list, workdir: Path, results: Path) -> list:
    """Store the summaries that the earlier runners left in the work folder (`<workdir>/<run>.json`); returns
    the runs adopted."""
    adopted = []
    for run in runs:
        left = workdir / f"{run.name}.json"
        if stored_path(results, run).exists() or not left.exists():
            continue
        data = left.read_bytes()
        try:
            json.loads(data)
        except ValueError:  # still being written
            continue
        store(results, run, data)
        adopted.append(run)
    return adopted


def _start_ray(address: str | None, num_cpus: int) -> str | None:
    """Connect to `address`, or start a local instance with `num_cpus` CPUs in a temp dir of its own (returned)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=address, log_to_driver=False)
        return None
    temp_dir = tempfile.mkdtemp(prefix="rrun", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
    return temp_dir


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def execute(
    study: Study,
    preset_name: str,
    runs: list,
    results: Path,
    workdir: Path,
    *,
    preset: Any = None,
    workers: int | None = None,
    address: str | None = None,
) -> tuple[dict, list]:
    """Run the runs of `runs` not in `results` on Ray and store each summary as it comes back.

    Returns (every stored summary of `runs`, in their order; the runs that failed). Uses the Ray instance
    already initialised in this process if there is one.
    """
    preset = study.presets[preset_name] if preset is None else preset
    workdir.mkdir(parents=True, exist_ok=True)
    adopted = adopt(runs, workdir, results)
    done = stored(runs, results)
    todo = [run for run in runs if run not in done]
    print(f"{study.name} {preset_name}: {len(runs)} runs, {len(done)} stored in {results} ({len(adopted)} adopted "
          f"from {workdir}), {len(todo)} to go", flush=True)  # fmt: skip
    if not todo:
        return done, []
    cpus = study.cpus(preset)
    limit = workers or (study.workers if not address else len(todo))
    temp_dir, owns_ray = None, not ray.is_initialized()  # inside a program that already runs Ray, use its cluster
    if owns_ray:
        temp_dir = _start_ray(address, max(1, math.ceil(limit * cpus)))
    try:
        shared = ray.put(study.prepare(preset_name, preset) if study.prepare else None)
        remote = ray.remote(_execute).options(num_cpus=cpus, max_retries=0)
        queue, pending, failed, start = list(todo), {}, [], time.time()
        while queue or pending:
            while queue and len(pending) < limit:
                run = queue.pop(0)
                pending[remote.remote(study.run, RunContext(preset_name, preset, run), shared)] = run
            [ref], _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(ref)
            try:
                out = ray.get(ref)
            except ray.exceptions.RayError as error:  # the worker died (out of memory, node lost)
                out = {"error": f"{type(error).__name__}: {error}", "log": "", "seconds": time.time() - start}
            (workdir / f"{run.name}.log").write_text(out["log"])
            if "summary" in out:
                store(results, run, out["summary"])
                done[run] = out["summary"]
                result = study.describe(out["summary"])
            else:
                failed.append(run)
                tail = "\n".join(out["log"].splitlines()[-PRINTED_TAIL:])
                result = f"FAILED: {out['error']}; log tail (whole tail in {workdir / run.name}.log):\n{tail}\n"
            left, elapsed = len(queue) + len(pending), time.time() - start
            finished = len(todo) - left
            eta = f", ~{_minutes(elapsed / finished * left)} to go" if left else ""
            print(f"[{finished}/{len(todo)} done, {left} left; {_minutes(elapsed)} elapsed{eta}] {run.name} "
                  f"({_minutes(out['seconds'])}): {result}", flush=True)  # fmt: skip
    finally:
        if owns_ray:
            ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return {run: done[run] for run in runs if run in done}, failed


def parser(study: Study, description: str, default_preset: str) -> argparse.ArgumentParser:
    """The runner's command line for `study`; the study adds its own options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--preset", default=default_preset, choices=list(study.presets))
    p.add_argument("--workers", type=int, default=None,
                   help=f"runs at a time (default: {study.workers} here; on a cluster, as many as fit)")  # fmt: skip
    p.add_argument("--address", default=None, help="a Ray cluster to run on, e.g. 'auto' (default: a local instance)")
    p.add_argument("--workdir", type=Path, default=None, help="logs, smoke results and pages (ignored by git)")
    p.add_argument("--results", type=Path, default=None,
                   help="results store (default: the committed one; smoke presets: <workdir>/kept)")  # fmt: skip
    p.add_argument("--report-only", action="store_true", help="write the report from the stored runs, run nothing")
    p.add_argument("--pages", type=Path, default=None,
                   help="write the report under PAGES/benchmarks and PAGES/img instead of the docs site")  # fmt: skip
    p.add_argument("--no-report", action="store_true", help="run, but write no report")
    return p


@dataclass(frozen=True)
class Places:
    """Where a preset's results and pages go."""

    workdir: Path
    results: Path
    pages: Pages


def places(study: Study, preset_name: str, args: argparse.Namespace | None = None, *, tracked: bool = True) -> Places:
    """The work folder, results store and pages of a preset: a smoke preset (or one changed on the command line,
    `tracked=False`) keeps its results and pages in the work folder."""
    workdir = getattr(args, "workdir", None) or study.workdir(preset_name)
    scratch = preset_name in study.smoke or not tracked
    results = getattr(args, "results", None) or (workdir / "kept" if scratch else study.store(preset_name))
    pages = getattr(args, "pages", None) or (workdir / "pages" if scratch else None)
    pages = Pages(pages / "benchmarks", pages / "img") if pages else Pages()
    return Places(workdir, results, pages)


def main(study: Study, args: argparse.Namespace, *, preset: Any = None, tracked: bool = True) -> dict:
    """Run (or with `--report-only`, only report) the preset `args.preset`; returns the stored summaries.

    `preset`: the preset changed on the command line (then pass `tracked=False`: its results are not the
    committed preset's).
    """
    preset = study.presets[args.preset] if preset is None else preset
    where = places(study, args.preset, args, tracked=tracked)
    runs, failed = study.runs(preset), []
    if args.report_only:
        if where.workdir.exists():
            adopt(runs, where.workdir, where.results)
        summaries = stored(runs, where.results)
    else:
        summaries, failed = execute(study, args.preset, runs, where.results, where.workdir, preset=preset,
                                    workers=args.workers, address=args.address)  # fmt: skip
    if study.report and not args.no_report:
        if summaries:
            study.report(args.preset, preset, summaries, where.pages)
        else:
            print(f"no stored run in {where.results}: no report", flush=True)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(runs)} runs failed (logs in {where.workdir}): "
                         f"{', '.join(run.name for run in failed)}")  # fmt: skip
    return summaries


class CheckRun(NamedTuple):
    """A run of the check study."""

    index: int

    @property
    def name(self) -> str:
        return f"check_{self.index}"


def _check_run(context: RunContext) -> dict:
    """The check study's run: work in the worker-only folder, wait a little, say where it ran."""
    (context.workdir / "work.txt").write_text(f"run {context.run.index}\n")
    time.sleep(context.preset["seconds"])
    return {
        "index": context.run.index,
        "square": context.run.index**2,
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "workdir": str(context.workdir),
        "work": (context.workdir / "work.txt").read_text(),
    }


def _check_report(preset_name: str, preset: Any, summaries: dict, pages: Pages) -> None:
    nodes, pids = {s["node"] for s in summaries.values()}, {s["pid"] for s in summaries.values()}
    print(f"check: {len(summaries)} runs stored; they ran on {len(nodes)} node(s), in {len(pids)} worker process(es)")


CHECK = Study(
    name="runner",
    presets={"smoke": {"runs": 4, "seconds": 2.0}},
    runs=lambda preset: [CheckRun(i) for i in range(preset["runs"])],
    run=_check_run,
    report=_check_report,
    store=lambda preset_name: ROOT / "runs" / "runner" / preset_name / "kept",
    workdir=lambda preset_name: ROOT / "runs" / "runner" / preset_name,
    describe=lambda summary: f"ran on node {summary['node'][:8]}",
    workers=2,
)
"""The runner's own check: trivial runs (`python -m benchmarks.runner [--address ...]`)."""


if __name__ == "__main__":
    from benchmarks import runner  # the importable module: Ray sends its functions by name

    runner.main(runner.CHECK, runner.parser(runner.CHECK, "The runner's check study.", "smoke").parse_args())
