"""GIPOLoss vs ClipPPOLoss: forward + backward time on the same batches, as a ratio.

Both losses wrap the same actor and critic (a 2x256 MLP, 39-d observations and 4-d TanhNormal
actions, as in the Meta-World example) and see identical stale batches. The two are timed
interleaved, ``--repeats`` rounds of ``--inner`` calls each, and the median per-call time is
reported; ratio = GIPO / ClipPPO. Written to ``docs/benchmarks/torchrl_loss_overhead.{csv,md}``.

    python benchmarks/torchrl_loss_overhead.py                 # CPU
    python benchmarks/torchrl_loss_overhead.py --device cuda   # GPU (writes *_cuda.*)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torchrl.objectives import ClipPPOLoss

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "examples"), str(ROOT / "benchmarks")]
from report import write_report  # noqa: E402
from torchrl_metaworld import make_actor_critic  # noqa: E402

from gipo_plugins.torchrl import GIPOLoss  # noqa: E402


def make_batch(actor, key: str, size: int, device: torch.device):
    from tensordict import TensorDict

    td = TensorDict({"observation": torch.randn(size, 39)}, batch_size=[size]).to(device)
    with torch.no_grad():
        actor(td)
    td.set(key, td.get(key) - 0.5 * torch.randn(size, device=device))  # stale: ratios spread around 1
    td.set("advantage", torch.randn(size, 1, device=device))
    td.set("value_target", torch.randn(size, 1, device=device))
    return td.exclude("loc", "scale")


def step_time(loss_module, td, inner: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    for _ in range(inner):
        out = loss_module(td)
        (out["loss_objective"] + out["loss_critic"]).backward()
    sync()
    return (time.perf_counter() - start) / inner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 2048, 16384])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--inner", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    actor, critic = make_actor_critic(39, 4)
    actor, critic = actor.to(device), critic.to(device)
    losses = {
        "ClipPPOLoss": ClipPPOLoss(actor, critic, entropy_bonus=False),
        "GIPOLoss": GIPOLoss(actor, critic, entropy_bonus=False),
    }
    rows = []
    for size in args.sizes:
        td = make_batch(actor, losses["GIPOLoss"].tensor_keys.sample_log_prob, size, device)
        times = {name: [] for name in losses}
        for module in losses.values():  # warm-up
            step_time(module, td, 3, device)
        for _ in range(args.repeats):
            for name, module in losses.items():
                times[name].append(step_time(module, td, args.inner, device))
        clip, gipo = statistics.median(times["ClipPPOLoss"]), statistics.median(times["GIPOLoss"])
        rows.append({"batch": size, "clip_ppo_ms": clip * 1e3, "gipo_ms": gipo * 1e3, "ratio": gipo / clip})
        print(
            f"batch {size:>6}: ClipPPOLoss {clip * 1e3:7.3f} ms  GIPOLoss {gipo * 1e3:7.3f} ms  ratio {gipo / clip:.3f}"
        )

    hardware = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "CPU"
    write_report(
        "torchrl_loss_overhead" + ("" if device.type == "cpu" else f"_{device.type}"),
        f"TorchRL: GIPOLoss vs ClipPPOLoss overhead ({device.type})",
        f"Made by `python benchmarks/torchrl_loss_overhead.py --device {args.device}` on {hardware}, "
        f"torch {torch.__version__}, {args.threads} thread(s). Forward + backward of the loss (objective + critic), "
        f"median of {args.repeats} interleaved rounds of {args.inner} calls. Target: ratio ≤ 1.05.",
        rows,
        {
            "batch": "batch",
            "clip_ppo_ms": "ClipPPOLoss (ms)",
            "gipo_ms": "GIPOLoss (ms)",
            "ratio": "ratio GIPO / ClipPPO",
        },
    )


if __name__ == "__main__":
    main()
