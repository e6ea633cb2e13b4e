"""Fused LM head + GIPO loss vs materialised logits: peak memory and time of one forward + backward.

Variants, all on the same inputs (hidden states `[N, H]`, LM head `[V, H]`, fp32, GIPO σ = 1):

* `unfused` — `F.linear` → `log_softmax` → `gather` → `PolicyObjective("gipo")`: the full `[N, V]` logits.
* `fused` — `gipo_plugins.fused.fused_linear_policy_loss` (one pass, gradients formed chunk by chunk).
* `fused_logprobs` — `chunked_token_log_probs` + the objective (logits recomputed in the backward: the
  path `GIPOConfig(gipo_fused_loss=True)` uses in the trainer).
* `trl_head` — TRL 1.16's own chunked log-prob kernel (`trl.kernels.ChunkedLogProbFunction`, what
  `GRPOTrainer` runs by default, log-probs only) + the objective. A reference, skipped without TRL.

Each measurement runs in a fresh subprocess. Memory (CPU): the peak of the bytes the torch CPU
allocator handed out during the call and had not freed, replayed from the profiler's memory events
(`torch.profiler.profile(profile_memory=True)`); inputs allocated before the call are not counted,
the gradients it creates are. Deterministic, so measured once. As a cross-check, the process's peak
RSS during the first (warm-up) call above its RSS before it (`VmHWM` after resetting it through
`/proc/self/clear_refs`). Memory (CUDA): `torch.cuda.max_memory_allocated()` minus the allocation
before the call. Time: one warm-up call, then one timed call per round; the variants run interleaved
in rotating order, and a time ratio is taken within each round.

    python -m benchmarks.fused_loss_memory                  # CPU, 5 rounds -> docs/benchmarks/fused_loss.{csv,md}
    python -m benchmarks.fused_loss_memory --device cuda    # -> docs/benchmarks/fused_loss_cuda.{csv,md}

On a shared machine the measurements can be split into short runs appended to one file:
`--rounds 0 --raw FILE --no-report` (memory only), `--rounds 1 --no-memory --raw FILE --no-report`
(one timing round, repeated), then `--rounds 0 --no-memory --raw FILE` writes the report from FILE.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import write_report
from benchmarks.rss import reset_peak_rss, rss_kib
from gipo_plugins import PolicyObjective
from gipo_plugins.fused import DEFAULT_CHUNK_SIZE, chunked_token_log_probs, fused_linear_policy_loss

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("unfused", "fused", "fused_logprobs", "trl_head")
TARGETS = {"memory": 0.25, "time": 1.2}


# --- worker: one variant, one fresh process ------------------------------------------------------


def make_inputs(tokens: int, hidden_size: int, vocab: int, device: torch.device, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, hidden_size, generator=gen).to(device).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, generator=gen) / math.sqrt(hidden_size)).to(device).requires_grad_()
    ids = torch.randint(0, vocab, (tokens,), generator=gen).to(device)
    # behaviour log-probs near the current ones (log-probs of a random head are about -log V): ratios around 1
    old = (-math.log(vocab) + 0.3 * torch.randn(tokens, generator=gen)).to(device)
    return {
        "hidden": hidden,
        "weight": weight,
        "ids": ids,
        "old": old,
        "adv": torch.randn(tokens, generator=gen).to(device),
    }


def loss_fn(variant: str, x: dict, chunk_size: int):
    objective = PolicyObjective("gipo")
    hidden, weight, ids, old, adv = x["hidden"], x["weight"], x["ids"], x["old"], x["adv"]
    if variant == "unfused":

        def unfused():
            log_probs = torch.log_softmax(torch.nn.functional.linear(hidden, weight), -1)  # [N, V]
            return objective(log_probs.gather(1, ids[:, None])[:, 0], old, adv).loss

        return unfused
    if variant == "fused":
        return lambda: (
            fused_linear_policy_loss(
                hidden, weight, None, ids, old, adv, objective=objective, chunk_size=chunk_size
            ).loss
        )
    if variant == "fused_logprobs":
        return lambda: (
            objective(chunked_token_log_probs(hidden, weight, None, ids, chunk_size=chunk_size)[0], old, adv).loss
        )
    if variant == "trl_head":
        from trl.kernels import ChunkedLogProbFunction

        # TRL's trainer arguments: 32768-entry vocabulary tiles (its 4096-token tiles are fixed), log-probs only
        return lambda: (
            objective(
                ChunkedLogProbFunction.apply(hidden, weight, None, ids, 1.0, 32768, None, 1.0, ())[0], old, adv
            ).loss
        )
    raise ValueError(f"unknown variant {variant!r}")


def _step(fn, x: dict, device: torch.device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one forward + backward."""
    x["hidden"].grad = x["weight"].grad = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def _allocator_peak_cpu(fn, x: dict) -> int:
    from torch.profiler import ProfilerActivity, profile

    x["hidden"].grad = x["weight"].grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn().backward()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = [e for e in json.loads(trace.read_text())["traceEvents"] if e.get("name") == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e["ts"]):
        if event["args"].get("Device Type", 0) == 0:  # CPU
            live += event["args"]["Bytes"]
            peak = max(peak, live)
    return peak


def worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = make_inputs(args.tokens, args.hidden, args.vocab, device)
    fn = loss_fn(args.worker, x, args.chunk_size)
    out = {"variant": args.worker, "chunk_size": args.chunk_size, "mode": args.mode}
    if args.mode == "memory":
        if device.type == "cuda":
            _step(fn, x, device)  # warm-up (cuBLAS workspaces), then the measured call
            x["hidden"].grad = x["weight"].grad = None
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            _step(fn, x, device)
            out["peak_bytes"] = torch.cuda.max_memory_allocated() - before
        else:
            out["peak_bytes"] = _allocator_peak_cpu(fn, x)
        return out
    rss_before = rss_kib("VmRSS") if reset_peak_rss() else None
    out["warmup_s"] = _step(fn, x, device)[0]
    if rss_before is not None:
        out["rss_peak_bytes"] = (rss_kib("VmHWM") - rss_before) * 1024
    out["time_s"], out["cpu_s"] = _step(fn, x, device)
    return out


# --- driver ----------------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace, variant: str, mode: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.fused_loss_memory", "--worker", variant, "--mode", mode,
               "--device", args.device, "--threads", str(args.threads), "--tokens", str(args.tokens),
               "--hidden", str(args.hidden), "--vocab", str(args.vocab),
               "--chunk-size", str(args.chunk_size)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def available_variants() -> list[str]:
    try:
        import trl.kernels  # noqa: F401
    except ImportError:
        return [v for v in VARIANTS if v != "trl_head"]
    return list(VARIANTS)


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else "–"


def _cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
    except OSError:
        names = []
    return f"{names[0]} ({len(names)} cores)" if names else platform.processor() or "CPU"


def report(args: argparse.Namespace, records: list[dict]) -> None:
    config = {"tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab, "chunk_size": args.chunk_size}
    mine = [r for r in records if all(r.get(k) == v for k, v in config.items()) and r.get("device") == args.device]
    memory = {r["variant"]: r["peak_bytes"] for r in mine if r["mode"] == "memory"}
    timed = [r for r in mine if r["mode"] == "time"]
    rounds = sorted({r["round"] for r in timed if r["variant"] == "unfused"})
    times = {v: [r["time_s"] for r in timed if r["variant"] == v] for v in VARIANTS}
    rss = {v: [r["rss_peak_bytes"] for r in timed if r["variant"] == v and "rss_peak_bytes" in r] for v in VARIANTS}
    ratios = {(v, k): [] for v in VARIANTS for k in ("time_s", "cpu_s")}  # per round, against its unfused call
    for n in rounds:
        in_round = {r["variant"]: r for r in timed if r["round"] == n}  # a round: one call of each variant
        for v, r in in_round.items():
            for k in ("time_s", "cpu_s"):
                ratios[v, k].append(r[k] / in_round["unfused"][k])
    rows = []
    for v in VARIANTS:
        if v not in memory and not times[v]:
            continue
        mib = memory.get(v, math.nan) / 2**20
        rows.append({
            "variant": v,
            "peak_mib": mib,
            "memory_ratio": mib / (memory["unfused"] / 2**20) if "unfused" in memory else math.nan,
            "rss_peak_mib_median": statistics.median(rss[v]) / 2**20 if rss[v] else math.nan,
            "rss_peak_mib_range": _spread([b / 2**20 for b in rss[v]]) if rss[v] else "–",
            "time_s_median": statistics.median(times[v]) if times[v] else math.nan,
            "time_s_range": _spread(times[v]),
            "time_ratio_median": statistics.median(ratios[v, "time_s"]) if ratios[v, "time_s"] else math.nan,
            "time_ratio_range": _spread(ratios[v, "time_s"]),
            "cpu_ratio_median": statistics.median(ratios[v, "cpu_s"]) if ratios[v, "cpu_s"] else math.nan,
            "cpu_ratio_range": _spread(ratios[v, "cpu_s"]),
            "rounds": len(times[v]),
        })  # fmt: skip
    hardware = torch.cuda.get_device_name() if args.device == "cuda" else _cpu_name()
    command = "python -m benchmarks.fused_loss_memory" + ("" if args.device == "cpu" else f" --device {args.device}")
    measured = (
        "`torch.cuda.max_memory_allocated()` during the call, minus what was allocated before it"
        if args.device == "cuda"
        else "the torch CPU allocator's peak of live bytes during the call (replayed from "
        "`torch.profiler` memory events; inputs allocated before the call excluded, gradients included). "
        "RSS: the process's peak resident memory during its first call above its RSS before it "
        "(glibc may keep freed blocks, so RSS can only over-state the allocator peak)"
    )
    description = (
        f"Made by `{command}` ({len(rounds)} rounds) on {hardware}, torch {torch.__version__}, "
        f"{args.threads} thread(s). One forward + backward of the GIPO loss over {args.tokens} tokens, hidden size "
        f"{args.hidden}, vocabulary {args.vocab}, fp32; fused chunk size {args.chunk_size} tokens. The full logits "
        f"are {args.tokens * args.vocab * 4 / 2**20:.0f} MiB; the LM head's weight gradient "
        f"{args.vocab * args.hidden * 4 / 2**20:.0f} MiB.\n\n"
        f"Peak memory: {measured}. Time: one warm-up then one timed call per round, each variant in its own "
        f"process, variants interleaved; ratios are taken against `unfused` within each round (median and "
        f"min–max over rounds), for wall time and for the process's CPU time (`time.process_time`, less "
        f"sensitive to other processes on a shared machine). Targets: memory ratio ≤ {TARGETS['memory']}, "
        f"time ratio ≤ {TARGETS['time']}."
    )
    write_report(
        "fused_loss" + ("" if args.device == "cpu" else f"_{args.device}"),
        f"Fused LM head + GIPO loss: memory and time ({args.device})",
        description,
        rows,
        {
            "variant": "variant",
            "peak_mib": "peak memory (MiB)",
            "memory_ratio": "memory / unfused",
            "rss_peak_mib_median": "peak RSS (MiB, median)",
            "time_s_median": "wall time (s, median)",
            "time_s_range": "wall min–max",
            "time_ratio_median": "wall / unfused (median)",
            "time_ratio_range": "wall ratio min–max",
            "cpu_ratio_median": "CPU time / unfused (median)",
            "cpu_ratio_range": "CPU ratio min–max",
            "rounds": "rounds",
        },
        digits=2,
        footer=args.footer,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--rounds", type=int, default=5, help="timing rounds to run now (0: report only)")
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True, help="measure peak memory")
    p.add_argument("--raw", type=Path, default=None, help="JSON-lines file the measurements are appended to")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None, help="default: all available")
    p.add_argument("--footer", default="", help="text under the table")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("memory", "time"), default="time", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    raw = args.raw or Path(tempfile.mkdtemp()) / "fused_loss.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    records = [json.loads(line) for line in raw.read_text().splitlines()] if raw.exists() else []
    tag = {"device": args.device, "tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab}
    variants = [v for v in available_variants() if args.variants is None or v in args.variants]
    new = []
    if args.memory:
        new += [run_worker(args, v, "memory") for v in variants]
    first = max((r.get("round", -1) for r in records), default=-1) + 1
    for n in range(first, first + args.rounds):
        order = variants[n % len(variants) :] + variants[: n % len(variants)]
        for v in order:
            new.append(run_worker(args, v, "time") | {"round": n})
            print(json.dumps(new[-1]), flush=True)
    with raw.open("a") as f:
        for record in new:
            f.write(json.dumps(record | tag) + "\n")
    if args.report:
        report(args, records + [r | tag for r in new])


if __name__ == "__main__":
    main()
