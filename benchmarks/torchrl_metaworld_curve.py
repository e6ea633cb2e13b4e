"""Learning curves of the TorchRL example on Meta-World: GIPOLoss vs the PPO-clip objective.

Runs ``examples/torchrl_metaworld.py`` once per objective and seed (in parallel processes, one
torch thread each), with identical settings, then plots the deterministic-policy success rate
(evaluated every ``--eval-every`` iterations on ``--eval-episodes`` fresh goals) against env frames.
Writes ``docs/img/torchrl_<task>_success.png`` and ``docs/benchmarks/torchrl_<task>.{csv,md}``.

    python benchmarks/torchrl_metaworld_curve.py --total-frames 150000 --seeds 0
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
COLORS = {"gipo": "tab:blue", "ppo_clip": "tab:red", "sapo": "tab:green", "is": "tab:gray"}


def run(objective: str, seed: int, args: argparse.Namespace, extra: list[str]) -> dict:
    logdir = Path(args.workdir) / args.task
    summary = logdir / f"{objective}_seed{seed}.json"
    if not summary.exists():  # resumable: finished runs are kept
        cmd = [
            sys.executable, str(ROOT / "examples/torchrl_metaworld.py"), "--task", args.task, "--objective", objective,
            "--seed", str(seed), "--total-frames", str(args.total_frames), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes), "--logdir", str(logdir), "--no-progress", *extra,
        ]  # fmt: skip
        print("running:", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--objectives", nargs="+", default=["gipo", "ppo_clip"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--total-frames", type=int, default=150_000)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--workdir", default="runs/torchrl_curve")
    args, extra = p.parse_known_args()
    jobs = [(o, s) for o in args.objectives for s in args.seeds]
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda job: run(*job, args, extra), jobs))

    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for (objective, seed), summary in zip(jobs, results, strict=True):
        points = [(r["frames"], r["eval_success_rate"]) for r in summary["history"] if "eval_success_rate" in r]
        rows += [{"objective": objective, "seed": seed, "frames": f, "eval_success_rate": s} for f, s in points]
        ax.plot(*zip(*points, strict=True), color=COLORS[objective], marker=".", label=f"{objective} seed {seed}")
    ax.set_xlabel("environment frames")
    ax.set_ylabel(f"success rate ({args.eval_episodes} eval episodes)")
    ax.set_title(f"TorchRL on Meta-World {args.task}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    img = ROOT / f"docs/img/torchrl_{args.task}_success.png"
    fig.savefig(img, dpi=120)

    out = ROOT / "docs/benchmarks"
    with open(out / f"torchrl_{args.task}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# TorchRL on Meta-World {args.task}",
        "",
        f"Made by `python benchmarks/torchrl_metaworld_curve.py --total-frames {args.total_frames} "
        f"--seeds {' '.join(map(str, args.seeds))} {' '.join(extra)}`: the example's defaults otherwise "
        "(2000 frames per batch, 200-step episodes, 80 minibatch updates of 250 per batch, KL 0.1 to the "
        "behaviour policy for every objective, 1 torch thread per run).",
        "",
        "| objective | seed | success at 0 frames | final success | wall time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (objective, seed), summary in zip(jobs, results, strict=True):
        evals = [r["eval_success_rate"] for r in summary["history"] if "eval_success_rate" in r]
        lines.append(
            f"| {objective} | {seed} | {evals[0]:.2f} | {summary['eval_success_rate']:.2f} | "
            f"{summary['wall_seconds']:.0f} |"
        )
    lines += ["", f"![success](../img/{img.name})", ""]
    (out / f"torchrl_{args.task}.md").write_text("\n".join(lines))
    print("wrote", img, "and", out / f"torchrl_{args.task}.md")


if __name__ == "__main__":
    main()
