"""The exact GridWorld bias–variance study: every objective, every behaviour case, no sampling.

Writes `docs/benchmarks/gridworld_bias_variance.{csv,md}` and
`docs/img/gridworld_bias_variance.png`. Runs in a few seconds:

```
python -m benchmarks.gridworld.study
```

The machinery (grid, exact values, per-sample gradients through the core objectives) is in
`exact.py`; this script only defines the cases, tabulates and plots, and checks the paper's two
claims on the numbers it just computed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.gridworld.exact import (
    ACTIONS,
    PolicyObjective,
    estimator_stats,
    mixture,
    tabular_policy,
    true_gradient,
)
from benchmarks.report import write_report

HERE = Path(__file__).resolve().parent

IMG = HERE.parents[1] / "docs" / "img" / "gridworld_bias_variance.png"
SIGMAS = (0.1, 0.3, 0.5, 1.0, 2.0)
ESTIMATORS: dict[str, PolicyObjective] = {
    "IS": PolicyObjective("is"),
    **{f"GIPO σ={s:g}": PolicyObjective("gipo", sigma=s) for s in SIGMAS},
    "PPO-clip ε=0.2": PolicyObjective("ppo_clip", clip_epsilon=0.2),
    "SAPO": PolicyObjective("sapo"),
}

UNIFORM = tabular_policy((1, 1, 1, 1))
PREFER_RIGHT = tabular_policy((1, 7, 1, 1))  # 0.7 right, 0.1 each other action
PREFER_DOWN = tabular_policy((1, 1, 7, 1))
TARGETS = {
    "near-uniform": tabular_policy((1.0, 1.6, 1.6, 1.0)),
    "prefer-right": tabular_policy((0.05, 0.8, 0.1, 0.05)),
    "near-optimal": tabular_policy((0.03, 0.47, 0.47, 0.03)),
}


def behaviour_cases(target):
    """Fresh to stale: D (μ = π), E–G mixtures of π with uniform, then C, B, A (no π at all)."""
    return {
        "D: μ = π": target,
        "E: 90% π + 10% uniform": mixture((0.9, target), (0.1, UNIFORM)),
        "F: 75% π + 25% uniform": mixture((0.75, target), (0.25, UNIFORM)),
        "G: 50% π + 50% uniform": mixture((0.5, target), (0.5, UNIFORM)),
        "C: 20% uniform + 40% right + 40% down": mixture((0.2, UNIFORM), (0.4, PREFER_RIGHT), (0.4, PREFER_DOWN)),
        "B: 40% uniform + 30% right + 30% down": mixture((0.4, UNIFORM), (0.3, PREFER_RIGHT), (0.3, PREFER_DOWN)),
        "A: 100% uniform": UNIFORM,
    }


BATCH = 64  # samples per gradient estimate for the batch MSE column
HEADERS = {
    "target": "target π",
    "case": "behaviour μ",
    "max_abs_log_ratio": "max abs log π/μ",
    "estimator": "objective",
    "true_grad": "g*",
    "mean": "E[ĝ]",
    "bias": "bias",
    "variance": "variance",
    "mse": "MSE (1)",
    "mse_batch": f"MSE ({BATCH})",
    "dead": "dead",
    "suppressed": "suppressed",
    "pareto": "Pareto",
    "min_mse": f"min MSE ({BATCH})",
}


def dominates(q: tuple[float, float], p: tuple[float, float], tol: float = 1e-12) -> bool:
    """`q` is no worse than `p` on both coordinates and better on one (beyond float noise)."""
    return q[0] <= p[0] + tol and q[1] <= p[1] + tol and (q[0] < p[0] - tol or q[1] < p[1] - tol)


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names whose (|bias|, variance) point no other point dominates."""
    return {n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)}


def run() -> list[dict]:
    rows = []
    for target_name, target in TARGETS.items():
        g_star = float(true_gradient(target)[ACTIONS.index("right")])
        for case, behaviour in behaviour_cases(target).items():
            stats = {name: estimator_stats(obj, target, behaviour) for name, obj in ESTIMATORS.items()}
            front = pareto_front({n: (abs(s.bias), s.variance) for n, s in stats.items()})
            best = min(stats, key=lambda n: stats[n].bias ** 2 + stats[n].variance / BATCH)
            max_log_ratio = float((target[0].log() - behaviour[0].log()).abs().max())
            for name, s in stats.items():
                rows.append({
                    "target": target_name, "case": case, "max_abs_log_ratio": max_log_ratio, "estimator": name,
                    "true_grad": g_star, "mean": s.mean, "bias": s.bias, "variance": s.variance, "mse": s.mse,
                    "mse_batch": s.bias**2 + s.variance / BATCH,
                    "dead": s.dead_fraction, "suppressed": s.suppressed_fraction,
                    "pareto": "yes" if name in front else "", "min_mse": "yes" if name == best else "",
                })  # fmt: skip
    return rows


def findings(rows: list[dict]) -> str:
    """The paper's claims, checked on these numbers (every sentence carries its count)."""
    by_case: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault((r["target"], r["case"]), {})[r["estimator"]] = r
    ppo_name = next(n for n in ESTIMATORS if n.startswith("PPO"))
    gipo_names = [n for n in ESTIMATORS if n.startswith("GIPO")]
    severe = [k for k in by_case if k[1][0] in "AB"]
    stale = [k for k in by_case if k[1][0] != "D"]
    ppo_dead = ", ".join(f"{t}/{c[0]} {by_case[(t, c)][ppo_name]['dead']:.0%}" for t, c in severe)
    ppo_all_dead = sum(by_case[k][ppo_name]["dead"] > 1 - 1e-12 for k in severe)
    gipo_dead = max(by_case[k][n]["dead"] for k in by_case for n in gipo_names)
    worst_suppressed = {n: max(by_case[k][n]["suppressed"] for k in by_case) for n in gipo_names}
    suppressed = ", ".join(f"{n.split()[-1]} {v:.0%}" for n, v in worst_suppressed.items())

    def point(r):
        return abs(r["bias"]), r["variance"]

    def beaten_by_gipo(k, name):
        return any(dominates(point(by_case[k][g]), point(by_case[k][name])) for g in gipo_names)

    def gipo_or_is(k, name):
        p, q = point(by_case[k][name]), point(by_case[k]["IS"])
        return name in gipo_names or (abs(p[0] - q[0]) < 1e-12 and abs(p[1] - q[1]) < 1e-12)

    gipo_frontier = sum(all(gipo_or_is(k, n) for n, r in by_case[k].items() if r["pareto"]) for k in stale)
    ppo_beaten = sum(beaten_by_gipo(k, ppo_name) for k in stale)
    sapo_beaten = sum(beaten_by_gipo(k, "SAPO") for k in stale)
    best = [next(n for n, r in by_case[k].items() if r["min_mse"]) for k in stale]
    best_counts = ", ".join(f"{n} {best.count(n)}" for n in ESTIMATORS if best.count(n))
    return "\n".join([
        "## Findings (computed by the script from the table above)",
        "",
        f"- **PPO's dead samples in the severe cases (A, B):** {ppo_dead}. PPO-clip zeroes 100 % of the "
        f"gradient in {ppo_all_dead} of {len(severe)} severe (target, case) pairs, so the paper's claim holds "
        "only where every behaviour action falls on the clipped side; elsewhere it keeps the actions whose "
        "ratio moves against the advantage.",
        f"- **GIPO never zeroes a sample:** its largest dead fraction over all cases and σ is {gipo_dead:.0%}. "
        f"But small σ suppresses nearly as hard: the largest mass kept at < 1 % of IS's gradient is {suppressed}.",
        f"- **Frontier:** in {gipo_frontier} of {len(stale)} off-policy pairs the (|bias|, variance) frontier "
        "consists only of GIPO points and points equal to plain IS's (the zero-bias end, which GIPO approaches as σ "
        "grows); elsewhere SAPO or PPO-clip also sit on it. "
        f"A GIPO point dominates PPO-clip in {ppo_beaten} of {len(stale)} pairs and SAPO in {sapo_beaten} of "
        f"{len(stale)}.",
        f"- **Lowest MSE with {BATCH}-sample estimates** (bias² + variance/{BATCH}), over the {len(stale)} "
        f"off-policy pairs: {best_counts}.",
        "- With μ = π (case D) every objective returns the exact on-policy gradient (bias 0) with the same variance.",
    ])  # fmt: skip


def plot(rows: list[dict]) -> None:
    targets = list(TARGETS)
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.4), constrained_layout=True)
    gipo_names = [n for n in ESTIMATORS if n.startswith("GIPO")]
    colors = {"IS": "black", **{n: plt.cm.Blues(0.35 + 0.13 * i) for i, n in enumerate(gipo_names)},
              "PPO-clip ε=0.2": "tab:red", "SAPO": "tab:orange"}  # fmt: skip
    markers = dict(zip("DEFGCBA", "o^v<>sX", strict=True))
    for ax, target in zip(axes, targets, strict=True):
        for r in (r for r in rows if r["target"] == target):
            ax.scatter(abs(r["bias"]), r["variance"] + 1e-6, color=colors[r["estimator"]], marker=markers[r["case"][0]],
                       s=46, edgecolors="k" if r["pareto"] else "none", linewidths=0.6)  # fmt: skip
        ax.set(xscale="symlog", yscale="log", xlabel="|bias| of the θ(S0, right) gradient",
               ylabel="variance (+1e-6 so zero shows)", title=f"target: {target}")  # fmt: skip
        ax.set_xscale("symlog", linthresh=1e-3)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=n) for n, c in colors.items()]
    handles += [plt.Line2D([], [], ls="", marker=m, color="gray", label=f"case {c}") for c, m in markers.items()]
    axes[-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("Exact GridWorld: bias vs variance per objective (black edge = Pareto-optimal in its case)")
    IMG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG, dpi=120)


def main() -> None:
    rows = run()
    plot(rows)
    page = write_report(
        "gridworld_bias_variance",
        "Exact GridWorld bias–variance study",
        "The paper's 2×2 GridWorld (S0, S1, S2 + absorbing goal, γ = 0.9, reward −1 per step, tabular "
        "softmax), enumerated exactly by `python -m benchmarks.gridworld.study` through the core objectives. "
        "Each row: the S0 gradient component θ(S0, right) estimated from one action of the behaviour μ, "
        "with the exact advantage of the target π; bias against the exact on-policy gradient `true_grad`; "
        "variance and MSE (= bias² + variance) per sample; `dead` = behaviour mass whose gradient the "
        "objective zeroes although plain IS would not; `suppressed` = mass kept at < 1 % of IS's gradient. "
        "`pareto`: on the (|bias|, variance) frontier of its (target, case). Behaviour policies: uniform, "
        "prefer-right/down = 0.7 on that action and 0.1 on each other.\n\n"
        "![bias-variance](../img/gridworld_bias_variance.png)",
        rows,
        HEADERS,
        digits=4,
        footer=findings(rows),
    )
    print(f"wrote {page} and {IMG}")


if __name__ == "__main__":
    main()
