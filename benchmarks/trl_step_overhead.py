"""TRL: step time and peak memory of GIPOTrainer vs GRPOTrainer (same config, tiny local model).

Each measurement trains in its own subprocess (so peak memory is the trainer's own): the tiny
Qwen2 of `gipo_plugins.trl.tiny` on a letter task (reward: the share of "a" in the completion)
with stale data (`num_iterations=2`). The learning rate is 0 so that both trainers generate and process
identical batches (same seed): with learning, the two objectives follow different trajectories
(different completion lengths, so different generation times) and the step-time ratio would
measure the dynamics, not the overhead. Every code path (old log-probs, loss, backward, optimizer
step, logging) still runs. GRPO runs as TRL's `GRPOTrainer` with `loss_type="grpo"`; GIPO as
`GIPOTrainer` with `gipo_aggregation="grpo"` (same normalisation). Runs alternate,
`--repeats` each; medians reported. Memory added by training (the target's measure): on CPU the
peak RSS during `train()` above the RSS just before it (peak reset through `/proc/self/clear_refs`),
so the modules each trainer imports do not count; on GPU `torch.cuda.max_memory_allocated` above
the allocation before `train()`. The process's whole peak RSS is reported alongside. Step time is
the worker's CPU time per step on CPU (robust to other processes on a shared box), wall time on
GPU. Written to
`docs/benchmarks/trl_step_overhead.{csv,md}`:

```
python -m benchmarks.trl_step_overhead --repeats 5 --steps 60
```
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import verdict, write_report

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, os, resource, sys, time
os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
import torch
torch.set_num_threads(1)
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from transformers import PreTrainedTokenizerFast
from gipo_plugins.trl import GIPOConfig, GIPOTrainer
from benchmarks.rss import reset_peak_rss, rss_kib

def letter_reward(completions, **kwargs):
    return [c.count("a") / max(len(c), 1) for c in completions]

name, model, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cuda = torch.cuda.is_available()
common = dict(output_dir=os.path.join(sys.argv[4], name), use_cpu=not cuda, bf16=False, gradient_checkpointing=False,
              learning_rate=0.0, per_device_train_batch_size=32, num_generations=8, max_completion_length=8,
              num_iterations=2, max_steps=steps, logging_steps=steps, report_to="none", save_strategy="no", seed=0)
if name == "gipo":
    cls, args = GIPOTrainer, GIPOConfig(loss_type="gipo", gipo_aggregation="grpo", **common)
else:
    cls, args = GRPOTrainer, GRPOConfig(loss_type="grpo", **common)
dataset = Dataset.from_dict({"prompt": ["Say a: "] * 4096})
trainer = cls(model=model, reward_funcs=letter_reward, args=args, train_dataset=dataset,
              processing_class=PreTrainedTokenizerFast.from_pretrained(model))
clock = time.perf_counter if cuda else time.process_time
if cuda:
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() / 2**20
else:
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak RSS through /proc/self/clear_refs")
    before = rss_kib("VmRSS") / 1024
start = clock()
trainer.train()
seconds = clock() - start
peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_kib("VmHWM") / 1024
total = peak if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"step_s": seconds / steps, "train_mib": peak - before, "peak_mib": total}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    from gipo_plugins.trl.tiny import build_tiny_causal_lm

    results = {"grpo": [], "gipo": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_causal_lm(Path(tmp) / "model", hidden_size=64))
        for repeat in range(args.repeats):
            for name in results:
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, name, model, str(args.steps), tmp],
                    capture_output=True, text=True, check=True, cwd=ROOT,  # the worker imports benchmarks.rss
                )  # fmt: skip
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"repeat {repeat + 1} {name}: {results[name][-1]}", flush=True)
    rows = []
    measures = (("step_s", "step time (s)", 1.03), ("train_mib", "memory added by training (MiB)", 1.00),
                ("peak_mib", "process peak memory (MiB)", None))  # fmt: skip
    for key, measure, target in measures:
        ratios = sorted(g[key] / r[key] for g, r in zip(results["gipo"], results["grpo"], strict=True))  # per repeat
        ratio = statistics.median(ratios)
        rows.append({
            "measure": measure, "grpo": statistics.median(r[key] for r in results["grpo"]),
            "gipo": statistics.median(r[key] for r in results["gipo"]), "ratio": ratio, "min": ratios[0],
            "max": ratios[-1], "target": "" if target is None else target,
            "verdict": verdict(ratio, ratios[0], target),
        })  # fmt: skip
    write_report(
        "trl_step_overhead",
        "TRL: GIPOTrainer vs GRPOTrainer overhead",
        f"Made by `python -m benchmarks.trl_step_overhead --repeats {args.repeats} --steps {args.steps}`: tiny local "
        "Qwen2 (hidden 64), batch 32 (8 generations), 8 completion tokens, num_iterations=2, "
        "learning rate 0 (identical batches in both trainers), 1 torch thread, "
        "each run in its own process, the two alternating; step time is the process's CPU time per step. Medians, "
        "and the min–max of the per-repeat ratios ('within noise': the median misses, the best repeat meets). "
        "Memory added by training: peak RSS during `train()` above the RSS just before it (the target's "
        "measure); the process peak RSS also counts the Python/torch runtime and the modules each trainer imports.",
        rows,
        {
            "measure": "measure",
            "grpo": "GRPOTrainer",
            "gipo": "GIPOTrainer",
            "ratio": "GIPO / GRPO",
            "min": "min",
            "max": "max",
            "target": "target",
            "verdict": "verdict",
        },
        digits=4,
    )


if __name__ == "__main__":
    main()
