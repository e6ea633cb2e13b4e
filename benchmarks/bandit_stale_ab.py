r"""The objectives' gates plotted, and a stale-data bandit A/B of the core objectives.

1. `docs/img/objective_gates.png`: the gate $g(r)$ and gradient weight $u = g\,r$ of each GIPO kernel
   against PPO's hard clip and SAPO's soft gate, for positive and negative advantages
   (`docs/objective.md`).
2. The bandit: a softmax policy over `--arms` arms with fixed mean rewards. Each iteration samples a
   batch from a *behaviour* policy that lags `lag` updates behind the learner (the stale-data regime
   of asynchronous actors / replay), normalises rewards into advantages, and takes `--epochs` Adam
   steps on the chosen objective with the behaviour log-probs as `old_log_prob`. Reported: the
   expected reward of the learner over the run (higher and earlier is better) and the fraction of
   samples whose gradient is exactly zero. Writes `docs/img/bandit_stale_ab.png` and
   `docs/benchmarks/bandit_stale_ab.{csv,md}`.

Run: `python -m benchmarks.bandit_stale_ab` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from benchmarks.report import write_report
from gipo_plugins import PolicyObjective

ROOT = Path(__file__).resolve().parents[1]

OBJECTIVE_STYLES = {"gipo": "tab:blue", "ppo_clip": "tab:red", "sapo": "tab:green", "is": "tab:gray"}


def plot_gates(path: Path) -> None:
    """w(r) of each kernel against PPO's hard clip and SAPO's soft gate, for A > 0 and A < 0."""
    ratio = torch.logspace(-1.5, 1.5, 600)
    log_prob = ratio.log()
    curves = {
        "GIPO gaussian σ=1": PolicyObjective("gipo"),
        "GIPO gaussian σ=0.5": PolicyObjective("gipo", sigma=0.5),
        "GIPO laplacian σ=1": PolicyObjective("gipo", kernel="laplacian"),
        "GIPO cauchy σ=1": PolicyObjective("gipo", kernel="cauchy"),
        "PPO-clip ε=0.2": PolicyObjective("ppo_clip"),
        "SAPO τ=(1, 1.05)": PolicyObjective("sapo"),
    }
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, objective in curves.items():
        style = "--" if "PPO" in label or "SAPO" in label else "-"
        for column, sign in ((0, 1.0), (1, -1.0)):
            result = objective(log_prob, torch.zeros_like(log_prob), torch.full_like(ratio, sign), reduction="none")
            axes[column].plot(ratio, result.gate, style, label=label)
            if column == 0:
                axes[2].plot(ratio, result.grad_weight, style, label=label)
    axes[0].set_title("gate g(r), advantage > 0")
    axes[1].set_title("gate g(r), advantage < 0")
    axes[2].set_title("gradient weight u(r) = g·r, advantage > 0")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("importance ratio r = π_θ / π_old")
        ax.axvline(1.0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-3, 30)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_bandit(objective: str, lag: int, seed: int, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Returns (expected reward per iteration, dead fraction per iteration)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.linspace(0, 1, args.arms)[torch.randperm(args.arms, generator=gen)]
    logits = torch.zeros(args.arms, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=args.lr)
    history = [logits.detach().clone()]
    loss_fn = PolicyObjective(objective)
    rewards, dead = [], []
    for _ in range(args.iterations):
        behaviour = history[max(0, len(history) - 1 - lag)]
        actions = torch.multinomial(torch.softmax(behaviour, 0), args.batch, replacement=True, generator=gen)
        reward = means[actions] + args.noise * torch.randn(args.batch, generator=gen)
        advantages = (reward - reward.mean()) / (reward.std() + 1e-8)
        old_log_prob = torch.log_softmax(behaviour, 0)[actions]
        for _ in range(args.epochs):
            result = loss_fn(torch.log_softmax(logits, 0)[actions], old_log_prob, advantages)
            optimizer.zero_grad()
            result.loss.backward()
            optimizer.step()
        history.append(logits.detach().clone())
        rewards.append(float(torch.softmax(logits.detach(), 0) @ means))
        dead.append(float(result.metrics["dead_fraction"]))
    return rewards, dead


def bandit_ab(args: argparse.Namespace) -> list[dict]:
    rows, curves = [], {}
    for lag in args.lags:
        for objective in OBJECTIVE_STYLES:
            runs = [train_bandit(objective, lag, seed, args) for seed in range(args.seeds)]
            curve = torch.tensor([r for r, _ in runs]).mean(0)
            curves[lag, objective] = curve
            row = {
                "lag": lag,
                "objective": objective,
                "mean_reward_over_run": round(float(curve.mean()), 3),
                "final_reward": round(float(curve[-1]), 3),
                "dead_fraction": round(float(torch.tensor([d for _, d in runs]).mean()), 3),
            }
            rows.append(row)
            print(
                f"lag {lag:>3}  {objective:<9} mean reward {row['mean_reward_over_run']:.3f}  "
                f"final {row['final_reward']:.3f}  dead {row['dead_fraction']:.3f}",
                flush=True,
            )
    fig, axes = plt.subplots(1, len(args.lags), figsize=(5 * len(args.lags), 3.8), sharey=True)
    for ax, lag in zip(axes, args.lags, strict=True):
        for objective, color in OBJECTIVE_STYLES.items():
            ax.plot(curves[lag, objective], color=color, label=objective)
        ax.set_title(f"behaviour policy {lag} updates behind")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"expected reward (mean of {args.seeds} seeds)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs/img/bandit_stale_ab.png", dpi=120)
    plt.close(fig)
    return rows


def write_table(rows: list[dict], args: argparse.Namespace) -> None:
    write_report(
        "bandit_stale_ab",
        "Stale-data bandit A/B (core objectives)",
        f"Made by `python -m benchmarks.bandit_stale_ab` ({args.arms} arms, batch {args.batch}, {args.epochs} "
        f"epochs per batch, {args.iterations} iterations, {args.seeds} seeds, Adam lr {args.lr}). The behaviour "
        "policy lags `lag` updates behind the learner. Expected reward is in [0, 1] (best arm = 1).",
        rows,
        {
            "lag": "lag",
            "objective": "objective",
            "mean_reward_over_run": "mean reward over run",
            "final_reward": "final reward",
            "dead_fraction": "dead fraction",
        },
        footer="![curves](../img/bandit_stale_ab.png)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lags", type=int, nargs="+", default=[0, 8, 32])
    args = parser.parse_args()
    torch.set_num_threads(1)
    plot_gates(ROOT / "docs/img/objective_gates.png")
    print("wrote docs/img/objective_gates.png", flush=True)
    rows = bandit_ab(args)
    write_table(rows, args)
    print("wrote docs/img/bandit_stale_ab.png and docs/benchmarks/bandit_stale_ab.{csv,md}")


if __name__ == "__main__":
    main()
