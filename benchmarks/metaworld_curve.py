"""Learning curves of the RLlib Meta-World example: GIPO vs the PPO-clip objective (fresh regime).

(TorchRL's curves come from the stale sweep, `benchmarks/metaworld_stale`, on the reference recipe.)

Runs `examples/<framework>_metaworld.py` once per objective (and GIPO σ) and seed, in parallel
processes (`--workers`), with identical settings; extra arguments go to the example. Plots the
deterministic-policy success rate (evaluated every `--eval-every` iterations on
`--eval-episodes` fresh goals) against env frames. Finished runs are kept (resumable). Writes
`docs/img/<framework>_<task>_success.png` and `docs/benchmarks/<framework>_<task>.{csv,md}`.

    python -m benchmarks.metaworld_curve --framework rllib --total-frames 100000 --workers 1
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "rllib": "(train batch 4000, minibatch 256, 10 epochs, 200-step episodes, lr 3e-4, RLlib's adaptive KL "
    "penalty (kl_coeff 0.2, kl_target 0.01) for every objective, 1 remote env runner, evaluation on a separate "
    "env runner).",
}
COLORS = {"gipo": "tab:blue", "ppo_clip": "tab:red", "sapo": "tab:green", "is": "tab:gray"}


def label(objective: str, sigma: float | None) -> str:
    return objective if sigma is None else f"{objective} σ={sigma:g}"


def run(objective: str, sigma: float | None, seed: int, args: argparse.Namespace, extra: list[str]) -> dict:
    logdir = Path(args.workdir or f"runs/{args.framework}_curve") / args.task
    name = f"{objective}_seed{seed}" if sigma in (None, 1.0) else f"{objective}_sigma{sigma:g}_seed{seed}"
    summary = logdir / f"{name}.json"
    if not summary.exists():  # resumable: finished runs are kept
        cmd = [
            sys.executable, str(ROOT / f"examples/{args.framework}_metaworld.py"), "--task", args.task,
            "--objective", objective,
            "--seed", str(seed), "--total-frames", str(args.total_frames), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes), "--logdir", str(logdir), "--run-name", name, "--no-progress",
            *(["--sigma", str(sigma)] if sigma is not None else []), *extra,
        ]  # fmt: skip
        print("running:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--framework", default="rllib", choices=["rllib"])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--objectives", nargs="+", default=["gipo", "ppo_clip"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--gipo-sigmas", type=float, nargs="+", default=[1.0], help="one GIPO run per sigma")
    p.add_argument("--total-frames", type=int, default=150_000)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", default=None, help="default: runs/<framework>_curve")
    args, extra = p.parse_known_args()
    jobs = [
        (o, sigma if o == "gipo" else None, s)
        for o in args.objectives
        for sigma in (args.gipo_sigmas if o == "gipo" else [None])
        for s in args.seeds
    ]
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda job: run(*job, args, extra), jobs))

    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    styles = ["-", "--", ":", "-."]
    for (objective, sigma, seed), summary in zip(jobs, results, strict=True):
        points = [(r["frames"], r["eval_success_rate"]) for r in summary["history"] if "eval_success_rate" in r]
        name = label(objective, sigma)
        rows += [{"run": name, "seed": seed, "frames": f, "eval_success_rate": s} for f, s in points]
        style = styles[args.gipo_sigmas.index(sigma) % len(styles)] if objective == "gipo" else "-"
        ax.plot(*zip(*points, strict=True), style, color=COLORS[objective], marker=".", label=f"{name} seed {seed}")
    ax.set_xlabel("environment frames")
    ax.set_ylabel(f"success rate ({args.eval_episodes} eval episodes)")
    title = {"rllib": "Ray RLlib"}[args.framework]
    ax.set_title(f"{title} on Meta-World {args.task}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    img = ROOT / f"docs/img/{args.framework}_{args.task}_success.png"
    fig.savefig(img, dpi=120)

    out = ROOT / "docs/benchmarks"
    with open(out / f"{args.framework}_{args.task}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# {title} on Meta-World {args.task}",
        "",
        f"Made by `python -m benchmarks.metaworld_curve --framework {args.framework} "
        f"--total-frames {args.total_frames} "
        f"--seeds {' '.join(map(str, args.seeds))} --gipo-sigmas {' '.join(f'{x:g}' for x in args.gipo_sigmas)} "
        f"{' '.join(extra)}`: `examples/{args.framework}_metaworld.py`'s defaults otherwise, "
        + DEFAULTS[args.framework],
        "",
        "| run | seed | success at 0 frames | best | mean of last 5 evals | final | wall time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (objective, sigma, seed), summary in zip(jobs, results, strict=True):
        evals = [r["eval_success_rate"] for r in summary["history"] if "eval_success_rate" in r]
        lines.append(
            f"| {label(objective, sigma)} | {seed} | {evals[0]:.2f} | {max(evals):.2f} | "
            f"{sum(evals[-5:]) / len(evals[-5:]):.2f} | {summary['eval_success_rate']:.2f} | "
            f"{summary['wall_seconds']:.0f} |"
        )
    lines += ["", f"![success](../img/{img.name})", ""]
    (out / f"{args.framework}_{args.task}.md").write_text("\n".join(lines))
    print("wrote", img, "and", out / f"{args.framework}_{args.task}.md")


if __name__ == "__main__":
    main()
