"""The Meta-World stale-data row on RLlib's APPO: AGIPO with `objective="gipo"` vs `objective="ppo_clip"`.

Stale data the way RLlib users meet it: asynchronous env runners act with older weights, and APPO's
circular buffer keeps `buffer_batches` train batches and reuses each up to `buffer_iterations` times,
so the learner trains on batches many updates old (the policy lag is logged per iteration). Both
variants are the same `AGIPOConfig`; only `objective` differs (`ppo_clip` is APPO's own clipped
surrogate, so that row is stock APPO), set up by the adapter's Meta-World recipe
(`gipo_plugins.rllib.recipe.metaworld_config`). Settings, per run: 2 remote env runners, train batch 500 of
50-step fragments, a 16 × 20 circular buffer, the target network updated every
`0.125 × 16 × 20 × 500` trained steps, Meta-World rewards × 0.001 (as the TorchRL recipe), lr 3e-4,
no entropy bonus, no KL penalty (APPO's default), 500-step episodes, greedy evaluations every 12 500
env steps on seeded goals. `small_kl` is `small` with APPO's KL loss to the target network turned on
for both variants, at APPO's default `kl_coeff` 1.0 and `kl_target` 0.01: in `small`, AGIPO's policy
drifts away from the target network (|log r| p95 far above σ, falling entropy and return) with nothing
to pull it back, and the KL loss is RLlib's own anchor (each preset has its own page and results).
`binned` and `binned_light` (issue 24, run set 5) are `small` and `light` with the GIPO protocol's
discretised action head: Meta-World's 4 action dimensions in 256 bins each (`action_bins=256`, a
`MultiDiscrete` space, RLlib's `TorchMultiCategorical` head) instead of the diagonal Gaussian, no anchor.
Their log-ratio is the joint log-ratio over the 4 dimensions (RLlib's `TorchMultiCategorical.logp` sums
them; AGIPO's learner and APPO's V-trace use that joint ratio); the TorchRL recipe and the paper use one
ratio per dimension. Does AGIPO lose to APPO only with the Gaussian head?

Runs go through the study runner (`benchmarks.runner`): one Ray task per run (`--workers` at a time
here, or on a cluster with `--address`), each run its own process with its own Ray instance (own temp
dir) in a temp folder that exists only in the worker; the summary comes back through Ray and is kept,
gzipped, in `benchmarks/metaworld_stale/results/rllib_appo_<preset>/` (tracked) and never rerun (the
log tail, with the progress printed at each evaluation, in `runs/metaworld_stale/rllib_appo_<preset>/`).
When the runs are done (or with `--report-only`, from what has finished)
`benchmarks.metaworld_stale.appo_report` writes `docs/benchmarks/metaworld_stale_rllib_appo.{csv,md}`
and its figure (the smoke preset: in its work folder). `--run TASK VARIANT SEED` runs one in this
process and writes `<workdir>/<run>.json` (what each task runs). A summary has the TorchRL
sweep's shape (`steps`, `final_eval_success`, `history` rows with `steps` and, at evaluations,
`eval_success`; `config.steps_per_iteration` is 0 because evaluation rows carry the env steps at which
they ran), so `benchmarks.metaworld_stale.aggregate` can read it, plus per iteration: train success and
return, `dead_fraction`, `log_ratio_abs_p95`, `ess`, the policy entropy and, for the Gaussian head,
its mean log-std (`action_log_std_mean`), the policy lag's mean (RLlib's
`diff_num_grad_updates_vs_sampler_policy`), p50, p95 and max, and the learner updates done:

```
python -m benchmarks.metaworld_stale.rllib_appo --preset smoke            # minutes: the pipeline works
python -m benchmarks.metaworld_stale.rllib_appo --preset small --workers 1
python -m benchmarks.metaworld_stale.rllib_appo --preset small --report-only  # the page from finished runs
python -m benchmarks.metaworld_stale.rllib_appo --preset small_kl --workers 1  # the same, KL loss on
python -m benchmarks.metaworld_stale.rllib_appo --preset light --workers 1     # 16 x 2 buffer, no anchor
python -m benchmarks.metaworld_stale.rllib_appo --preset small_anchor --workers 1  # AGIPO's anchor, both arms
python -m benchmarks.metaworld_stale.rllib_appo --preset binned --workers 1        # 256-bin head, 16 x 20 buffer
python -m benchmarks.metaworld_stale.rllib_appo --preset binned_light --workers 1  # 256-bin head, 16 x 2 buffer
```

Cost (measured on a 2-core machine): a 150k-step `small` run took 370–700 s of wall time with the
machine to itself (a run keeps ~3 processes busy: two env runners, the learner reusing the buffer,
the driver), so the 12 runs of a preset take ~1.5 h.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from benchmarks import runner
from benchmarks.metaworld_stale import appo_report
from benchmarks.report import Pages

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "metaworld_stale" / "results"
VARIANTS = ("gipo", "ppo_clip")
MODULE = __spec__.name if __spec__ else __name__
"""This module, as `python -m` runs it (a run's process)."""


@dataclass(frozen=True)
class Preset:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    total_steps: int
    env_runners: int = 2
    train_batch: int = 500
    buffer_batches: int = 16
    buffer_iterations: int = 20
    target_update_freq: float = 0.125
    max_episode_steps: int = 500
    reward_scale: float = 0.001
    lr: float = 3e-4
    eval_every_steps: int = 12_500
    eval_episodes: int = 5
    min_iteration_s: float = 10.0  # APPO's reporting period
    kl_coeff: float = 0.0  # > 0: APPO's KL penalty to the target network (`use_kl_loss`), adapted towards kl_target
    kl_target: float = 0.01
    behaviour_kl_coeff: float = 0.0  # AGIPOConfig's anchor to the behaviour policy, the same for both variants
    action_bins: int | None = None  # None: the Box action (Gaussian head); n: n bins per dimension (MultiDiscrete)
    against: str = ""  # a preset whose runs differ from these in the settings above: the page pairs each arm with it


SMOKE = {"env_runners": 1, "train_batch": 200, "buffer_batches": 4, "buffer_iterations": 4, "max_episode_steps": 100,
         "eval_every_steps": 1_000, "eval_episodes": 1, "min_iteration_s": 2.0}  # fmt: skip
PRESETS = {
    "smoke": Preset(("reach-v3",), (0,), total_steps=2_000, **SMOKE),
    "small": Preset(("reach-v3", "handle-press-v3"), (0, 1, 2), total_steps=150_000),
    # the same with APPO's KL loss at APPO's own defaults (kl_coeff 1.0, kl_target 0.01), for both objectives
    "small_kl": Preset(("reach-v3", "handle-press-v3"), (0, 1, 2), total_steps=150_000, kl_coeff=1.0, against="small"),
    # issue 24, run set 2: the update rate without an anchor: each batch reused at most twice instead of 20 times
    "light": Preset(
        ("reach-v3", "handle-press-v3"), (0, 1, 2), total_steps=150_000, buffer_iterations=2, against="small"
    ),
    # issue 24, run set 7: AGIPO's shipped anchor (0.1 KL to the behaviour policy), given to both arms
    "small_anchor": Preset(
        ("reach-v3", "handle-press-v3"), (0, 1, 2), total_steps=150_000, behaviour_kl_coeff=0.1, against="small"
    ),
    # issue 24, run set 5: the discretised head (256 bins per dimension, joint log-ratio), heavy reuse, no anchor
    "binned": Preset(("reach-v3", "handle-press-v3"), (0, 1, 2), total_steps=150_000, action_bins=256, against="small"),
    # issue 24, run set 5: the same with light reuse (16 x 2 buffer, `light`'s settings), no anchor
    "binned_light": Preset(
        ("reach-v3", "handle-press-v3"),
        (0, 1, 2),
        total_steps=150_000,
        buffer_iterations=2,
        action_bins=256,
        against="light",
    ),
}


def run_name(task: str, variant: str, seed: int) -> str:
    return f"appo_{task}_{variant}_seed{seed}"


class AppoRun(NamedTuple):
    task: str
    variant: str
    seed: int

    @property
    def name(self) -> str:
        return run_name(*self)


def runs_of(preset: Preset) -> list[AppoRun]:
    """(task, variant, seed) of every run, seed-major (a sweep cut short has whole seeds)."""
    return [AppoRun(task, variant, seed) for seed in preset.seeds for task in preset.tasks for variant in VARIANTS]


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


LEARNER_KEYS = (
    "dead_fraction",
    "log_ratio_abs_p95",
    "log_ratio_abs_mean",
    "ess",
    "trust_weight_mean",
    "policy_lag_p50",
    "policy_lag_p95",
    "policy_lag_max",
    "num_module_steps_trained",
    "entropy",
    "action_log_std_mean",  # the Gaussian head's (None for the binned head)
)
LAG_MEAN = "diff_num_grad_updates_vs_sampler_policy"


def training_settings(preset: Preset, variant: str) -> dict:
    """`AGIPOConfig.training` settings of a run: only `objective` differs between the two variants."""
    kl_loss = {"use_kl_loss": True, "kl_coeff": preset.kl_coeff, "kl_target": preset.kl_target}
    return {
        "objective": variant,
        "lr": preset.lr,
        "gamma": 0.99,
        "entropy_coeff": 0.0,
        "train_batch_size_per_learner": preset.train_batch,
        "circular_buffer_num_batches": preset.buffer_batches,
        "circular_buffer_iterations_per_batch": preset.buffer_iterations,
        "target_network_update_freq": preset.target_update_freq,
        "behaviour_kl_coeff": preset.behaviour_kl_coeff,
        **(kl_loss if preset.kl_coeff else {}),
    }


def run_config(task: str, variant: str, seed: int, preset: Preset):
    """The `AGIPOConfig` of one run (`gipo_plugins.rllib.recipe.metaworld_config` with the preset's settings)."""
    from gipo_plugins.rllib import AGIPOConfig
    from gipo_plugins.rllib.recipe import metaworld_config

    return metaworld_config(
        AGIPOConfig(),
        task,
        seed=seed,
        max_episode_steps=preset.max_episode_steps,
        reward_scale=preset.reward_scale,
        action_bins=preset.action_bins,
        env_runners=preset.env_runners,
        rollout_fragment_length=50,
        eval_episodes=preset.eval_episodes,
        min_iteration_s=preset.min_iteration_s,
        **training_settings(preset, variant),
    )


def run_one(task: str, variant: str, seed: int, preset: Preset, workdir: Path) -> dict:
    """One training run in this process; writes `<workdir>/<run>.json` and returns the summary."""
    import ray
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp_dir = tempfile.mkdtemp(prefix="rappo", dir="/tmp")
    ray.init(
        num_cpus=preset.env_runners + 3,  # runners, evaluation runner, remote learner, driver
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp_dir,
    )
    config = run_config(task, variant, seed, preset)
    algo = config.build_algo()
    start, steps, iteration = time.time(), 0, 0

    def evaluate() -> float:
        return float(algo.evaluate()["env_runners"]["episode_success"])

    history = [{"steps": 0, "iteration": 0, "eval_success": evaluate()}]
    next_eval = preset.eval_every_steps
    while steps < preset.total_steps:
        iteration += 1
        result = algo.train()
        steps = int(result.get("num_env_steps_sampled_lifetime", 0))
        learner = result.get("learners", {}).get("default_policy", {})
        runners = result["env_runners"]
        row = {
            "steps": steps,
            "iteration": iteration,
            "seconds": round(time.time() - start, 1),
            "train_success": _finite(runners.get("episode_success", math.nan)),
            "train_return": _finite(runners.get("episode_return_mean", math.nan)),
            "policy_lag_mean": _finite(learner.get(LAG_MEAN, math.nan)),
            **{key: _finite(learner.get(key, math.nan)) for key in LEARNER_KEYS},
        }
        if steps >= next_eval or steps >= preset.total_steps:
            row["eval_success"] = evaluate()
            next_eval += preset.eval_every_steps
            lag = "–" if row["policy_lag_mean"] is None else f"{row['policy_lag_mean']:.1f}"
            print(f"{run_name(task, variant, seed)}: {steps:,} / {preset.total_steps:,} env steps, greedy success "
                  f"{row['eval_success']:.2f}, policy lag {lag}, {row['seconds']:.0f} s", flush=True)  # fmt: skip
        history.append(row)
    algo.stop()
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    summary = {
        "framework": "rllib_appo",
        "task": task,
        "variant": variant,
        "seed": seed,
        "config": asdict(preset) | {"steps_per_iteration": 0},
        "steps": steps,
        "wall_seconds": round(time.time() - start, 1),
        "final_eval_success": history[-1]["eval_success"],
        "history": history,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{run_name(task, variant, seed)}.json").write_text(json.dumps(summary, indent=1))
    return summary


def execute(context: runner.RunContext) -> dict:
    """One run as its own process (`--run`, which starts its own Ray instance) in the worker's temp folder; returns
    the summary it wrote there."""
    task, variant, seed = run = context.run
    preset = context.preset
    steps = [] if preset == PRESETS.get(context.preset_name) else ["--total-steps", str(preset.total_steps)]
    context.call([sys.executable, "-m", MODULE, "--preset", context.preset_name, "--workdir", str(context.workdir),
                  "--run", task, variant, str(seed), *steps])  # fmt: skip
    return json.loads((context.workdir / f"{run.name}.json").read_text())


def cpus(preset: Preset) -> float:
    """A run keeps its env runners, the learner reusing the buffer and its driver busy."""
    return preset.env_runners + 1


def describe(summary: dict) -> str:
    return f"final greedy success {summary['final_eval_success']:.2f}; {summary['steps']:,} env steps"


def differences(preset: Preset, other: Preset) -> str:
    """The settings in which `other`'s runs differ from `preset`'s, e.g. "`buffer_iterations` 20 there, 2 here"."""
    fields = [f for f in Preset.__dataclass_fields__ if f not in ("tasks", "seeds", "against")]
    return ", ".join(f"`{f}` {getattr(other, f)} there, {getattr(preset, f)} here" for f in fields
                     if getattr(other, f) != getattr(preset, f))  # fmt: skip


def report(preset_name: str, preset: Preset, summaries: dict, pages: Pages | None = None) -> None:
    """Write the APPO page (`appo_report`) from the finished runs' summaries, paired with the stored runs of the
    preset it names as `against`, if any."""
    pages = pages or Pages()
    against = None
    if preset.against:
        other = PRESETS[preset.against]
        stored = runner.stored(runs_of(other), STUDY.store(preset.against))
        against = (preset.against, stored, differences(preset, other))
    appo_report.write(preset_name, preset, summaries, pages.img, pages.docs, against=against)


STUDY = runner.Study(
    name="metaworld_stale.rllib_appo",
    presets=PRESETS,
    runs=runs_of,
    run=execute,
    report=report,
    store=lambda preset_name: RESULTS / f"rllib_appo_{preset_name}",
    workdir=lambda preset_name: ROOT / "runs" / "metaworld_stale" / f"rllib_appo_{preset_name}",
    describe=describe,
    cpus=cpus,
    workers=1,
)


def main(argv: list[str] | None = None) -> None:
    p = runner.parser(STUDY, __doc__.split("\n\n")[0], default_preset="small")
    p.add_argument("--total-steps", type=int, default=None,
                   help="override the preset's env-step budget (results and page: in the work folder)")  # fmt: skip
    p.add_argument("--run", nargs=3, metavar=("TASK", "VARIANT", "SEED"), help="run one in this process")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.total_steps:
        preset = replace(preset, total_steps=args.total_steps)
    if args.run:
        task, variant, seed = args.run
        workdir = args.workdir or STUDY.workdir(args.preset)
        summary = run_one(task, variant, int(seed), preset, workdir)
        print(f"{run_name(task, variant, int(seed))}: final greedy success {summary['final_eval_success']:.2f}; "
              f"{summary['steps']} steps, {summary['wall_seconds']} s")  # fmt: skip
        return
    runner.main(STUDY, args, preset=preset, tracked=preset == PRESETS[args.preset])


if __name__ == "__main__":
    from benchmarks.metaworld_stale import rllib_appo  # the importable module: Ray sends its functions by name

    rllib_appo.main()
