"""TRL: step time and peak memory of GIPOTrainer vs GRPOTrainer (same config, tiny local model).

Each measurement trains in its own subprocess (so peak memory is the trainer's own): the tiny
Qwen2 of ``gipo_plugins.trl.tiny`` on the letter task of ``examples/trl_gsm_like.py`` with stale
data (``num_iterations=2``). The learning rate is 0 so that both trainers generate and process
identical batches (same seed): with learning, the two objectives follow different trajectories
(different completion lengths, so different generation times) and the step-time ratio would
measure the dynamics, not the overhead. Every code path (old log-probs, loss, backward, optimizer
step, logging) still runs. GRPO runs as TRL's ``GRPOTrainer`` with ``loss_type="grpo"``; GIPO as
``GIPOTrainer`` with ``gipo_aggregation="grpo"`` (same normalisation). Runs alternate,
``--repeats`` each; medians reported. Peak memory: process max RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU. Written to ``docs/benchmarks/trl_step_overhead.{csv,md}``.

    python benchmarks/trl_step_overhead.py --repeats 3 --steps 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import write_report  # noqa: E402

WORKER = r"""
import json, os, resource, sys, time
os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[4])
from trl import GRPOConfig, GRPOTrainer
from transformers import PreTrainedTokenizerFast
from gipo_plugins.trl import GIPOConfig, GIPOTrainer
from trl_gsm_like import letter_reward, make_dataset

name, model, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
cuda = torch.cuda.is_available()
common = dict(output_dir=os.path.join(sys.argv[5], name), use_cpu=not cuda, bf16=False, gradient_checkpointing=False,
              learning_rate=0.0, per_device_train_batch_size=32, num_generations=8, max_completion_length=8,
              num_iterations=2, max_steps=steps, logging_steps=steps, report_to="none", save_strategy="no", seed=0)
if name == "gipo":
    cls, args = GIPOTrainer, GIPOConfig(loss_type="gipo", gipo_aggregation="grpo", **common)
else:
    cls, args = GRPOTrainer, GRPOConfig(loss_type="grpo", **common)
trainer = cls(model=model, reward_funcs=letter_reward, args=args, train_dataset=make_dataset("letter", 4096, 0),
              processing_class=PreTrainedTokenizerFast.from_pretrained(model))
start = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - start
peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"step_s": seconds / steps, "peak_mib": peak}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    from gipo_plugins.trl.tiny import build_tiny_causal_lm

    results = {"grpo": [], "gipo": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_causal_lm(Path(tmp) / "model", hidden_size=64))
        for repeat in range(args.repeats):
            for name in results:
                out = subprocess.run(
                    [sys.executable, "-c", WORKER, name, model, str(args.steps), str(ROOT / "examples"), tmp],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"repeat {repeat + 1} {name}: {results[name][-1]}", flush=True)
    med = {n: {k: statistics.median(r[k] for r in runs) for k in ("step_s", "peak_mib")} for n, runs in results.items()}
    rows = [
        {"measure": "step time (s)", "grpo": med["grpo"]["step_s"], "gipo": med["gipo"]["step_s"]},
        {"measure": "peak memory (MiB)", "grpo": med["grpo"]["peak_mib"], "gipo": med["gipo"]["peak_mib"]},
    ]
    for row in rows:
        row["ratio"] = row["gipo"] / row["grpo"]
    write_report(
        "trl_step_overhead",
        "TRL: GIPOTrainer vs GRPOTrainer overhead",
        f"Made by `python benchmarks/trl_step_overhead.py --repeats {args.repeats} --steps {args.steps}`: tiny local "
        "Qwen2 (hidden 64), batch 32 (8 generations), 8 completion tokens, num_iterations=2, "
        "learning rate 0 (identical batches in both trainers), 1 torch thread, "
        "each run in its own process; medians. Peak memory is the process max RSS on CPU (it includes the "
        "Python/torch runtime). Target: time ratio ≤ 1.03, equal memory.",
        rows,
        {"measure": "measure", "grpo": "GRPOTrainer", "gipo": "GIPOTrainer", "ratio": "ratio GIPO / GRPO"},
        digits=4,
    )


if __name__ == "__main__":
    main()
