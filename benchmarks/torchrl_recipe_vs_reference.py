"""The TorchRL recipe against the authors' public single-file script: seconds per iteration, side by side.

The authors' Meta-World script (`metaworld_ppo_discrete_simple_complete.py` in the public repository
github.com/distanceLu/GIPO; not vendored here — pass its path) and this project's recipe
(`python -m gipo_plugins.torchrl.recipe`) run the same protocol: reach-v3, seed 42, GIPO with
σ = 1 and σ₋/σ₊ = 1, the stale regime (500 env steps per iteration, 20 000-transition FIFO, 10
minibatches of 512 × 10 reuses, the actor on every 10th), on the CPU with one torch thread each
(`OMP_NUM_THREADS=1`; the recipe also sets `--threads 1`). Each program runs as its own process,
back to back, alternating which goes first, `--repeats` times; a repeat runs each program twice,
`--short` and `--long` iterations, and seconds per iteration are the difference of the two wall
times over the difference of the iteration counts: process start-up, imports, the env's first
reset and the final evaluation / checkpoint cancel. The same difference of the child processes'
CPU time (user + system) is reported too.

The collection / update split comes from each program's own clocks: the authors' script prints
`rollout_time` and `update_time` for every iteration with `--log-interval-seconds 0` (two decimals;
its collection includes its GAE); the recipe's summary holds `collect_seconds` and
`update_seconds` per iteration (its GAE and replay insert are in neither). Medians over the long
runs' iterations after the first two (the authors' script does not update on its first iteration).

Lower bounds, measured in this process: 500 `env.step` calls of a plain
`gymnasium.make("Meta-World/MT1", env_name="reach-v3")` with random actions (no policy), and the
same 500 steps with the recipe's policy (its `ProbabilisticActor`, batch 1, `torch.no_grad`)
choosing the actions in a plain Python loop — what collection would cost without any collector; the
recipe's TorchRL env stepped by `env.rollout` with random actions (the wrappers' share); and the
iteration's 100 optimizer steps in plain torch on fixed tensors (`plain_update_seconds`: the
recipe's networks and loss terms without `LossModule`, tensordict or replay). The page states each
phase's floor and what the recipe spends above it.

`--pause-pattern PATTERN` SIGSTOPs the processes whose command line matches `PATTERN` (`pgrep -f`)
and all their descendants (a Ray driver's GCS, raylet and `ray::` workers) during each repeat and
SIGCONTs exactly those right after, in a `finally` (`benchmarks.machine.paused`); this process and
its ancestors are never stopped. Writes `docs/benchmarks/torchrl_recipe_vs_reference.{md,csv}`:

```
git -C <clone of distanceLu/GIPO> show HEAD:metaworld_ppo_discrete_simple_complete.py > /tmp/authors.py
python -m benchmarks.torchrl_recipe_vs_reference /tmp/authors.py --commit <its commit> \
    --repeats 3 --pause-pattern benchmarks.metaworld_stale.rllib_appo
```
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import busy_cores, paused
from benchmarks.report import write_report

TASK, SEED, STEPS = "reach-v3", 42, 500
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
ITERATION_LINE = re.compile(r"\[Iter (\d+)/\d+\].*rollout_time=([\d.]+)s update_time=([\d.]+)s")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], cwd: str, what: str) -> tuple[float, float, str]:
    """Run `command` in `cwd` with one thread: its wall and CPU seconds and its stdout (an error names `what`)."""
    cpu, tick = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=os.environ | ENV, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - tick, _children_cpu() - cpu
    if done.returncode:
        raise RuntimeError(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return wall, cpu, done.stdout


def run_reference(script: str, iterations: int) -> dict:
    """The authors' script for `iterations` iterations: wall and CPU seconds, and its per-iteration split."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, script, "--device", "cpu", "--task-name", TASK, "--seed", str(SEED),
            "--train-iters", str(iterations), "--rollout-steps-per-iter", str(STEPS), "--clip-mode", "gipo",
            "--sigma", "1.0", "--sigma-neg-ratio", "1.0", "--log-interval-seconds", "0", "--eval-every-iters", "0",
            "--log-dir", tmp,
        ]  # fmt: skip
        wall, cpu, stdout = _timed(command, tmp, "the authors' script")
    split = [(int(i), float(c), float(u)) for i, c, u in ITERATION_LINE.findall(stdout)]
    if len(split) != iterations:
        raise RuntimeError(f"expected {iterations} iteration lines, parsed {len(split)}")
    return {"wall": wall, "cpu": cpu, "collect": [c for _, c, _ in split], "update": [u for _, _, u in split]}


def run_recipe(iterations: int) -> dict:
    """The recipe for `iterations` iterations: wall and CPU seconds, and its per-iteration split."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "gipo_plugins.torchrl.recipe", "--task", TASK, "--seed", str(SEED),
            "--total-steps", str(iterations * STEPS), "--steps-per-iteration", str(STEPS), "--objective", "gipo",
            "--sigma", "1.0", "--sigma-neg-ratio", "1.0", "--threads", "1", "--eval-every", "0",
            "--eval-episodes", "1", "--no-progress", "--logdir", tmp, "--run-name", "bench",
        ]  # fmt: skip
        wall, cpu, _ = _timed(command, tmp, "the recipe")
        history = json.loads((Path(tmp) / "bench.json").read_text())["history"]
    return {
        "wall": wall, "cpu": cpu,
        "collect": [h["collect_seconds"] for h in history], "update": [h["update_seconds"] for h in history],
    }  # fmt: skip


def raw_env_seconds(with_policy: bool) -> float:
    """500 env steps of plain Meta-World reach-v3: random actions, or the recipe's policy network at batch 1.

    With the policy: its network on the observation tensor, a `torch.distributions.Categorical` per
    action dimension (argument checks off, as in the recipe), a sample and its log-prob, the bins
    mapped to the env's action: what acting costs without tensordict, TorchRL's env or a collector.
    Timed over the second 500 steps (the first pass warms the allocator and the env up).
    """
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World envs)
    import torch

    from gipo_plugins.torchrl.recipe import make_actor_critic

    torch.set_num_threads(1)
    env = gym.make("Meta-World/MT1", env_name=TASK, seed=SEED, disable_env_checker=True, max_episode_steps=STEPS)
    env.action_space.seed(SEED)
    torch.manual_seed(SEED)
    actor, _ = make_actor_critic()
    network = actor.module[0].module  # observation -> [4, 256] logits
    seconds = 0.0
    with torch.no_grad():
        for _ in range(2):
            obs, _ = env.reset(seed=SEED)
            tick = time.perf_counter()
            for _ in range(STEPS):
                if with_policy:
                    dist = torch.distributions.Categorical(
                        logits=network(torch.as_tensor(obs, dtype=torch.float32)), validate_args=False
                    )
                    bins = dist.sample()
                    dist.log_prob(bins)
                    action = (-1 + 2 * bins.to(torch.float64) / 255).numpy()
                else:
                    action = env.action_space.sample()
                obs, *_ = env.step(action)
            seconds = time.perf_counter() - tick
    env.close()
    return seconds


def torchrl_env_seconds() -> float:
    """500 steps of the recipe's TorchRL env (`GymWrapper` + transforms) through `env.rollout`, random actions.

    Timed on the second rollout of 500 steps (the first builds the wrappers' caches).
    """
    import torch

    from gipo_plugins.torchrl.envs import make_metaworld_env

    torch.set_num_threads(1)
    env = make_metaworld_env(TASK, seed=SEED, max_episode_steps=STEPS, action_bins=256)
    with torch.no_grad():
        env.rollout(STEPS, break_when_any_done=False)  # warm-up: the first pass builds the wrappers' caches
        tick = time.perf_counter()
        env.rollout(STEPS, break_when_any_done=False)
        seconds = time.perf_counter() - tick
    env.close()
    return seconds


def plain_update_seconds(iterations: int = 3) -> float:
    """One iteration's 100 optimizer steps in plain torch: the recipe's networks, shapes and loss terms, no TorchRL.

    10 actor steps (encoder + policy head forward on 512 samples, per-dimension log-ratios, the
    core's GIPO objective, the exact KL to stored behaviour logits, the value loss) and 90
    critic-only steps (the value head on cached encoder features); gradient-norm clip and fused
    AdamW on every step. What the update phase costs without any framework; median seconds over
    `iterations` iterations after one warm-up.
    """
    import torch
    from torch import nn

    from gipo_plugins import PolicyObjective, categorical_kl
    from gipo_plugins.torchrl.recipe import make_actor_critic

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    actor, critic = make_actor_critic()
    policy_net = actor.module[0].module  # encoder + policy head: observation -> [B, 4, 256] logits
    encoder, value_head = critic[0].module, critic[1].module
    params = list(policy_net.parameters()) + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=3e-4, fused=True)
    objective = PolicyObjective("gipo", sigma=1.0, sigma_neg_ratio=1.0)
    batch, gen = 512, torch.Generator().manual_seed(SEED)
    obs = torch.randn(batch, 39, generator=gen)
    with torch.no_grad():
        old_logits = policy_net(obs) + 0.1 * torch.randn(batch, 4, 256, generator=gen)
    action = torch.randint(0, 256, (batch, 4), generator=gen)
    old_log_prob = old_logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
    advantage, target = torch.randn(batch, 1, generator=gen), torch.randn(batch, 1, generator=gen)

    def step(actor_step: bool, features: torch.Tensor) -> None:
        if actor_step:
            logits = policy_net(obs)
            log_prob = logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
            loss = objective(log_prob, old_log_prob, advantage).loss + 0.1 * categorical_kl(logits, old_logits)
            loss = loss + 0.5 * (value_head(encoder(obs)) - target).pow(2).mean()
        else:
            loss = 0.5 * (value_head(features) - target).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    times = []
    for _ in range(iterations + 1):
        tick = time.perf_counter()
        for _ in range(10):  # minibatches
            for k in range(10):  # reuse steps: the actor on the first
                if k == 0:
                    step(True, None)
                    with torch.no_grad():
                        features = encoder(obs)
                else:
                    step(False, features)
        times.append(time.perf_counter() - tick)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference", help="path of the authors' metaworld_ppo_discrete_simple_complete.py")
    p.add_argument("--commit", default="unknown", help="the distanceLu/GIPO commit the script was taken from")
    p.add_argument("--short", type=int, default=4, help="iterations of the short run")
    p.add_argument("--long", type=int, default=16, help="iterations of the long run")
    p.add_argument("--repeats", type=int, default=3, help="repeats (each: both programs, short and long)")
    p.add_argument("--skip", type=int, default=2, help="first iterations left out of the split's medians")
    p.add_argument("--pause-pattern", default=None, help="pgrep -f pattern of processes (with descendants) to stop")
    p.add_argument("--rest-s", type=float, default=15.0, help="seconds between repeats (the paused processes run)")
    p.add_argument("--max-pause-s", type=float, default=540.0, help="refuse a repeat predicted to pause longer")
    args = p.parse_args(argv)
    if args.long <= args.short:
        p.error("--long must exceed --short")

    programs = {"authors' script": lambda n: run_reference(args.reference, n), "TorchRL recipe": run_recipe}
    results = {name: {"per_iter": [], "cpu_per_iter": [], "collect": [], "update": []} for name in programs}
    raw = {"random actions": [], "recipe policy, plain loop": [], "torchrl env": [], "plain updates": []}
    machine = []
    for run in programs.values():  # warm-up, not timed: the first start of each program reads its files from disk
        run(1)
    for repeat in range(args.repeats):
        if repeat:
            time.sleep(args.rest_s)
        order = list(programs) if repeat % 2 == 0 else list(programs)[::-1]
        started = time.perf_counter()
        with paused(args.pause_pattern) as stopped:
            machine.append({"stopped": len(stopped), "busy": busy_cores(), "load": os.getloadavg()[0]})
            for name in order:
                short, long = programs[name](args.short), programs[name](args.long)
                span = args.long - args.short
                results[name]["per_iter"].append((long["wall"] - short["wall"]) / span)
                results[name]["cpu_per_iter"].append((long["cpu"] - short["cpu"]) / span)
                results[name]["collect"] += long["collect"][args.skip :]
                results[name]["update"] += long["update"][args.skip :]
            for name, policy in (("random actions", False), ("recipe policy, plain loop", True)):
                raw[name].append(raw_env_seconds(policy))
            raw["torchrl env"].append(torchrl_env_seconds())
            raw["plain updates"].append(plain_update_seconds())
        took = time.perf_counter() - started
        ratio = results["authors' script"]["per_iter"][-1] / results["TorchRL recipe"]["per_iter"][-1]
        print(f"repeat {repeat}: {took:.0f} s paused, authors/recipe {ratio:.2f}x, "
              f"{ {k: round(v['per_iter'][-1], 3) for k, v in results.items()} }", flush=True)  # fmt: skip
        if repeat + 1 < args.repeats and took * 1.1 > args.max_pause_s:
            print(f"stopping after {repeat + 1} repeats: a repeat took {took:.0f} s", flush=True)
            break

    rows = []
    for name, r in results.items():
        rows.append({
            "program": name, "s_per_iter": statistics.median(r["per_iter"]),
            "min": min(r["per_iter"]), "max": max(r["per_iter"]),
            "cpu_per_iter": statistics.median(r["cpu_per_iter"]),
            "collect": statistics.median(r["collect"]), "update": statistics.median(r["update"]),
            "repeats": len(r["per_iter"]),
        })  # fmt: skip
    nan = float("nan")
    bounds = {
        "lower bound: 500 raw env steps, random actions": ("random actions", "collect"),
        "lower bound: 500 raw env steps, recipe policy, plain loop": ("recipe policy, plain loop", "collect"),
        "TorchRL env alone: 500 steps through `env.rollout`, random actions": ("torchrl env", "collect"),
        "lower bound: the 100 optimizer steps in plain torch": ("plain updates", "update"),
    }
    for program, (name, phase) in bounds.items():
        rows.append({
            "program": program, "s_per_iter": nan, "min": nan, "max": nan, "cpu_per_iter": nan,
            "collect": nan, "update": nan, phase: statistics.median(raw[name]), "repeats": len(raw[name]),
        })  # fmt: skip
    authors, recipe = results["authors' script"], results["TorchRL recipe"]
    ratios = [a / b for a, b in zip(authors["per_iter"], recipe["per_iter"], strict=True)]
    cpu_ratios = [a / b for a, b in zip(authors["cpu_per_iter"], recipe["cpu_per_iter"], strict=True)]
    ratio = statistics.median(authors["per_iter"]) / statistics.median(recipe["per_iter"])
    state = "; ".join(
        f"repeat {i}: {m['stopped']} processes stopped, {m['busy']:.2f} cores busy while paused (sampled 2 s before "
        f"the runs), 1-min load {m['load']:.1f}"
        for i, m in enumerate(machine)
    )
    command = (
        f"python -m benchmarks.torchrl_recipe_vs_reference <script> --commit {args.commit[:12]} --short {args.short} "
        f"--long {args.long} --repeats {args.repeats}"
        + (f" --pause-pattern {args.pause_pattern}" if args.pause_pattern else "")
    )
    description = (
        f"Made by `{command}` on a {os.cpu_count()}-core CPU. "
        "`<script>` is `metaworld_ppo_discrete_simple_complete.py` "
        f"from [distanceLu/GIPO](https://github.com/distanceLu/GIPO) at commit `{args.commit}` (not vendored: "
        "`git show <commit>:metaworld_ppo_discrete_simple_complete.py`), run unmodified with `--device cpu "
        "--sigma 1.0 --sigma-neg-ratio 1.0 --log-interval-seconds 0 --eval-every-iters 0`; the recipe is "
        "`python -m gipo_plugins.torchrl.recipe --sigma-neg-ratio 1.0 --threads 1 --eval-every 0 --eval-episodes 1`. "
        f"Both: {TASK}, seed {SEED}, GIPO σ = 1, the stale regime (500 env steps, 20 000-transition FIFO, 10 × 10 "
        "optimizer steps at batch 512, 10 with the actor), fp32 on the CPU, `OMP_NUM_THREADS=1`, each in its own "
        "process, back to back, alternating which runs first.\n\n"
        f"**s / iteration** = (wall of a {args.long}-iteration run − wall of a {args.short}-iteration run) / "
        f"{args.long - args.short}, median over repeats (min, max beside it); **CPU s / iteration** the same "
        "difference of the processes' user + system time. **collection** and **updates** are the programs' own "
        f"per-iteration clocks, medians over the long runs' iterations after the first {args.skip}: the authors' "
        "script prints them with two decimals and its collection includes its GAE; the recipe's collection is "
        "the collector's 500 steps (its GAE and replay insert are in neither). The lower bounds are 500 "
        "`env.step` calls of plain `gymnasium.make('Meta-World/MT1', env_name='reach-v3')` after a reset, with "
        "random actions, and with the recipe's policy network choosing every action at batch 1 in a plain loop "
        "(the network on a tensor, a torch `Categorical` per dimension, sample and log-prob; no tensordict), "
        "timed over a second 500 steps; "
        "*TorchRL env alone* is the recipe's env (`GymWrapper`, the `success` info reader, `StepCounter`, "
        "`RewardSum`, the 256-bin `ActionBins`) stepped 500 times by `env.rollout` with random actions, no policy "
        "and no collector. The update bound runs the recipe's networks and loss terms (the core's GIPO objective, "
        "the exact KL to stored logits, the value loss; 10 actor and 90 critic-only steps at batch 512 with "
        "gradient clipping and fused AdamW) on fixed tensors in plain torch: no `LossModule`, tensordict or "
        "replay buffer.\n\n"
        f"Machine state: {state}."
        + (f" The background processes matching `{args.pause_pattern}` and their descendants (its Ray workers) "
           "were SIGSTOPped for each repeat and continued between repeats; other sessions' processes (test "
           "runs) were not paused and show in the busy-core figure."
           if args.pause_pattern else "")
    )  # fmt: skip
    ours, env_floor, policy_floor, wrapped_env, update_floor = rows[1], rows[2], rows[3], rows[4], rows[5]
    floor = policy_floor["collect"] + update_floor["update"]
    footer = (
        f"**The recipe takes {ratio:.2f}× less time per iteration than the authors' script** (median s / iteration "
        f"of each; per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}; CPU-time ratios "
        f"{', '.join(f'{r:.2f}' for r in cpu_ratios)}; target ≥ 2×). Per phase, the authors' time over the "
        f"recipe's: collection {rows[0]['collect'] / ours['collect']:.2f}×, updates "
        f"{rows[0]['update'] / ours['update']:.2f}×.\n\n"
        "**Where the recipe's time goes, against each phase's floor.**\n\n"
        f"- Collection: {ours['collect']:.2f} s per 500 steps. The floor of any implementation is the env with the "
        f"policy network acting at batch 1 in a plain loop, {policy_floor['collect']:.2f} s, of which the env "
        f"itself is {env_floor['collect']:.2f} s. TorchRL's env stack alone (wrapper, info reader, transforms) "
        f"takes {wrapped_env['collect']:.2f} s without any policy, {wrapped_env['collect'] - env_floor['collect']:.2f}"
        " s above the raw env; acting through the `ProbabilisticActor` inside the collector adds "
        f"{ours['collect'] - wrapped_env['collect']:.2f} s to that, against "
        f"{policy_floor['collect'] - env_floor['collect']:.2f} s for the plain network and sampler.\n"
        f"- Updates: {ours['update']:.2f} s against {update_floor['update']:.2f} s for the same steps in plain "
        f"torch: the `LossModule`, tensordict and replay sampling cost {ours['update'] - update_floor['update']:.2f}"
        " s; the rest is the matrix products of 10 full and 90 critic-only steps at batch 512 on one thread.\n"
        f"- Both floors together: {floor:.2f} s per iteration, "
        f"{statistics.median(authors['per_iter']) / floor:.2f}× faster than the authors' script: the most an "
        "implementation of this protocol (same networks, batch-1 acting, one thread) could reach on this machine, "
        "with no framework at all. With acting and updates at their floors but the env stepped through TorchRL's "
        f"env stack, an iteration would take {floor + wrapped_env['collect'] - env_floor['collect']:.2f} s: "
        f"{statistics.median(authors['per_iter']) / (floor + wrapped_env['collect'] - env_floor['collect']):.2f}× "
        "the authors' script is the ceiling of a recipe built on TorchRL's env wrappers here."
    )
    write_report(
        "torchrl_recipe_vs_reference",
        "TorchRL recipe vs the authors' script: seconds per iteration, side by side",
        description,
        rows,
        {
            "program": "program",
            "s_per_iter": "s / iteration",
            "min": "min",
            "max": "max",
            "cpu_per_iter": "CPU s / iteration",
            "collect": "collection (s)",
            "update": "updates (s)",
            "repeats": "repeats",
        },
        digits=3,
        footer=footer,
    )


if __name__ == "__main__":
    main()
