"""Post-train a small causal LM with GIPOTrainer on a GSM-like arithmetic task (in-memory dataset).

Two tasks, each scored by two reward functions:

- `--task letter` (default; a tiny random model learns it in a minute): prompts ask for the letter
  "a"; `letter_reward` is the fraction of "a" in the completion, `first_letter_reward` 0.5 if it
  starts with "a" (best total 1.5);
- `--task sum`: prompts ask "What is a + b? Answer:" for a, b in {0, 1, 2}; `format_reward` (0.2
  if it starts with a number) and `correct_reward` (1 if that number is a + b). Too hard for the
  tiny model in a CPU minute (it settles on one number); meant for a real `--model`.

With no `--model` the script builds a tiny Qwen2 and a tokenizer locally (no hub needed) and
loads it from that folder like any hub checkpoint; pass `--model <path or hub id>` for a real one.

Stale data — where GIPO differs from GRPO — comes from `--num-iterations` (each generation batch
is reused that many times) and `--steps-per-generation`. `--loss-type grpo|dapo|sapo` runs TRL's
own losses with the same settings for an A/B. `--gipo-behaviour-kl-coeff` sets the anchor
β·KL(π_old ‖ π_θ) (default: 0.1 with GIPO, 0 with TRL's losses; give both arms the same value for an
A/B); a run whose anchor in force is > 0 has `_anchor<β>` in its name (the runs named without it,
including those on `docs/benchmarks/trl_reward.md`, ran with none: `--gipo-behaviour-kl-coeff 0`
repeats them). Writes the log history as JSON and, with `--plot`, the reward curves of all runs in
the output folder to `docs/img/trl_reward.png`.

    python examples/trl_gsm_like.py --loss-type gipo --num-iterations 4
    python examples/trl_gsm_like.py --loss-type grpo --num-iterations 4 --plot
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from gipo_plugins import anchor_coeff
from gipo_plugins.trl import GIPOConfig, GIPOTrainer
from gipo_plugins.trl.tiny import build_tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"\s*(\d+)")


TARGET_LETTER = "a"


def make_dataset(task: str, size: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    if task == "letter":
        prompts = [f"Note {rng.randint(0, 999)}: write only the letter {TARGET_LETTER}." for _ in range(size)]
        return Dataset.from_dict({"prompt": prompts, "answer": [TARGET_LETTER] * size})
    pairs = [(rng.randint(0, 2), rng.randint(0, 2)) for _ in range(size)]
    return Dataset.from_dict(
        {"prompt": [f"What is {a} + {b}? Answer:" for a, b in pairs], "answer": [str(a + b) for a, b in pairs]}
    )


def letter_reward(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """Fraction of the completion's characters that are the requested letter."""
    return [c.count(a) / max(len(c), 1) for c, a in zip(completions, answer, strict=True)]


def first_letter_reward(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """0.5 if the completion starts with the requested letter."""
    return [0.5 if c.lstrip().startswith(a) else 0.0 for c, a in zip(completions, answer, strict=True)]


def format_reward(completions: list[str], **kwargs) -> list[float]:
    """0.2 if the completion starts with a number."""
    return [0.2 if NUMBER.match(c) else 0.0 for c in completions]


def correct_reward(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """1 if the number the completion starts with is the right sum."""
    matches = (NUMBER.match(c) for c in completions)
    return [1.0 if m and m.group(1) == a else 0.0 for m, a in zip(matches, answer, strict=True)]


def load_tokenizer(model: str):
    # A locally built tokenizer is loaded as the fast tokenizer it is (AutoTokenizer would pick the
    # model type's slow class, which mangles a custom vocabulary).
    if Path(model, "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(model)
    return AutoTokenizer.from_pretrained(model)


def plot(output_root: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    table = ["| run | first logged reward | last logged reward | steps to reward ≥ 1.0 |", "|---|---:|---:|---:|"]
    for history_file in sorted(output_root.glob("*/history.json")):
        logs = [h for h in json.loads(history_file.read_text()) if "reward" in h]
        ax.plot([h["step"] for h in logs], [h["reward"] for h in logs], label=history_file.parent.name)
        reached = next((h["step"] for h in logs if h["reward"] >= 1.0), None)
        table.append(f"| {history_file.parent.name} | {logs[0]['reward']:.3f} | {logs[-1]['reward']:.3f} | {reached} |")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean reward")
    ax.set_title("TRL post-training of a tiny local model")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = ROOT / "docs/img/trl_reward.png"
    fig.savefig(out, dpi=120)
    summary = [
        "# TRL post-training of a tiny local model",
        "",
        f"Runs found in `{output_root}`, made by `python examples/trl_gsm_like.py` with the options in each run's "
        "name (task_losstype_iters<num_iterations>[_anchor<β>]_seed), `--max-steps 200 --learning-rate 0.01`, and "
        "plotted with `--plot`; a run without `_anchor` ran without the anchor to the sampling policy "
        "(`--gipo-behaviour-kl-coeff 0`). Rewards are averaged by TRL over each 10-step logging window.",
        "",
        *table,
        "",
        "![reward](../img/trl_reward.png)",
        "",
    ]
    (ROOT / "docs/benchmarks/trl_reward.md").write_text("\n".join(summary))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model path or hub id (default: build a tiny one locally)")
    p.add_argument("--task", default="letter", choices=["letter", "sum"], help="sum needs a real --model")
    p.add_argument("--loss-type", default="gipo")
    p.add_argument("--gipo-sigma", type=float, default=1.0)
    p.add_argument("--gipo-behaviour-kl-coeff", type=float, default=None,
                   help="anchor beta to the sampling policy (default: 0.1 with gipo, 0 with TRL's losses)")  # fmt: skip
    p.add_argument("--num-iterations", type=int, default=4)
    p.add_argument("--steps-per-generation", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-generations", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-root", default="runs/trl_gsm_like")
    p.add_argument("--plot", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    beta = anchor_coeff(args.gipo_behaviour_kl_coeff, args.loss_type)  # GIPOConfig.anchor_coeff, before the config
    anchor = f"_anchor{beta:g}" if beta > 0 else ""  # no anchor: named as the runs made before it existed
    name = f"{args.task}_{args.loss_type}_iters{args.num_iterations}{anchor}_seed{args.seed}"
    output_dir = Path(args.output_root) / name
    model = args.model or str(build_tiny_causal_lm(Path(args.output_root) / "tiny_model", hidden_size=64))
    config = GIPOConfig(
        output_dir=str(output_dir),
        loss_type=args.loss_type,
        gipo_sigma=args.gipo_sigma,
        gipo_behaviour_kl_coeff=args.gipo_behaviour_kl_coeff,
        num_iterations=args.num_iterations,
        steps_per_generation=args.steps_per_generation,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=4,
        temperature=1.0,
        beta=0.0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        gradient_checkpointing=False,
        seed=args.seed,
    )
    assert config.anchor_coeff == beta
    trainer = GIPOTrainer(
        model=model,
        reward_funcs=[letter_reward, first_letter_reward] if args.task == "letter" else [format_reward, correct_reward],
        args=config,
        train_dataset=make_dataset(args.task, 4096, args.seed),
        processing_class=load_tokenizer(model),
    )
    trainer.train()
    history = trainer.state.log_history
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "history.json").write_text(json.dumps(history, indent=1))
    rewards = [h["reward"] for h in history if "reward" in h]
    print(f"[{args.loss_type}] reward {rewards[0]:.3f} -> {rewards[-1]:.3f} over {args.max_steps} steps")
    if args.plot:
        print("wrote", plot(Path(args.output_root)))
    return history


if __name__ == "__main__":
    main()
