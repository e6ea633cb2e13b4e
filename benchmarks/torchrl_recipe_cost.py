"""Cost of the recipe's critic-only reuse steps: seconds per iteration against the full loss on every step.

The TorchRL recipe (`gipo_plugins.torchrl.recipe`) steps the actor on 10 of its 110 optimizer steps per
iteration; on the other 100 it trains the value head alone through `GIPOLoss.loss_critic` (no policy
head forward or backward). The straightforward variant (`--full-loss-every-step`, as the reference
script does) runs the full loss on every step and uses only its critic term off actor steps: the
same updates (a test checks the parameters are bitwise equal), more compute. Both variants run in
this one process, alternating, on the stale regime's defaults (reach-v3, 500 env steps, 10 × 10
reuse steps of 512 per iteration, one torch thread); an iteration's time is its collection plus
its updates (evaluation excluded). Writes `docs/benchmarks/torchrl_recipe_cost.{csv,md}`:

```
python -m benchmarks.torchrl_recipe_cost --iterations 8 --repeats 3
```
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from benchmarks.report import write_report
from gipo_plugins.torchrl.recipe import RecipeConfig, train


def seconds_per_iteration(full: bool, iterations: int, skip: int, seed: int) -> list[float]:
    with tempfile.TemporaryDirectory() as logdir:
        config = RecipeConfig(
            total_steps=iterations * 500, full_loss_every_step=full, eval_every=0, eval_episodes=1,
            logdir=logdir, progress=False, seed=seed,
        )  # fmt: skip
        history = train(config)["history"]
    return [h["collect_seconds"] + h["update_seconds"] for h in history[skip:]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=8, help="iterations per run")
    p.add_argument("--skip", type=int, default=2, help="first iterations left out (warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant, alternating")
    args = p.parse_args(argv)
    times: dict[bool, list[float]] = {False: [], True: []}
    ratios = []
    for repeat in range(args.repeats):
        run = {full: seconds_per_iteration(full, args.iterations, args.skip, repeat) for full in (False, True)}
        for full, values in run.items():
            times[full] += values
        ratios.append(statistics.median(run[True]) / statistics.median(run[False]))
        print(f"repeat {repeat}: recipe {statistics.median(run[False]):.2f} s/it, "
              f"full loss every step {statistics.median(run[True]):.2f} s/it", flush=True)  # fmt: skip
    rows = [
        {"variant": "recipe (critic-only reuse steps)", "median_s_per_iteration": statistics.median(times[False]),
         "min": min(times[False]), "max": max(times[False]), "iterations": len(times[False])},
        {"variant": "full loss on every reuse step", "median_s_per_iteration": statistics.median(times[True]),
         "min": min(times[True]), "max": max(times[True]), "iterations": len(times[True])},
    ]  # fmt: skip
    speedup = statistics.median(times[True]) / statistics.median(times[False])
    footer = (
        f"**Speed-up of the recipe: {speedup:.2f}× iterations per second** (median over all timed iterations; "
        f"per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}; target ≥ 2×). The saving is the policy "
        "head's forward and backward on the 90 critic-only steps of each iteration; collection (500 env steps "
        "through TorchRL's collector, about half of the recipe's iteration) is the same in both."
    )
    write_report(
        "torchrl_recipe_cost",
        "TorchRL recipe: critic-only reuse steps vs the full loss on every step",
        "Made by `python -m benchmarks.torchrl_recipe_cost "
        f"--iterations {args.iterations} --repeats {args.repeats}` on a 2-core CPU, one torch thread, the other "
        "core idle (the background sweep paused). Seconds per training iteration = collection of 500 env steps + "
        f"110 optimizer steps; the first {args.skip} iterations of each run are left out.",
        rows,
        {
            "variant": "variant",
            "median_s_per_iteration": "median s / iteration",
            "min": "min",
            "max": "max",
            "iterations": "timed iterations",
        },
        digits=2,
        footer=footer,
    )


if __name__ == "__main__":
    main()
