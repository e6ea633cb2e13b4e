"""VLA post-training on Meta-World from pixels: SFT checkpoint → GIPO (or dapo/sapo) via TRL → evaluation.

1. If `--checkpoint` does not exist yet, build it with the recipe
   (`gipo_plugins.vla.recipe.sft_checkpoint`): scripted-expert demonstrations rendered at 64×64,
   a tiny OpenVLA, supervised fine-tuning on the action tokens, `save_pretrained`.
2. Evaluate the SFT policy (greedy) on `--eval-goals` goals.
3. Post-train with `gipo_plugins.vla.VLAGIPOTrainer` (`--loss-type gipo` or any TRL loss type for
   the A/B), evaluating every `--eval-every` steps; `--num-iterations` > 1 reuses each batch of
   episodes (the stale regime), and `--replay-episodes` / `--fresh-episodes` reuse episodes across
   generations from a FIFO, as acted (the paper's stale regime).
4. Write `<logdir>/<run-name>.json` (success curve, staleness diagnostics) and the post-trained model.

Success is Meta-World's `success` at an episode's last step (`gipo_plugins.metaworld.episode_success`).

    python examples/vla_metaworld.py                                  # SFT (≈10 min) + GIPO post-training
    python examples/vla_metaworld.py --loss-type dapo --seed 1        # the A/B, reusing the checkpoint
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from gipo_plugins.vla import (
    TinyOpenVLAProcessor,
    VLAGIPOConfig,
    VLAGIPOTrainer,
    evaluate_success,
    goal_dataset,
    sft_checkpoint,
)

TRAIN_METRICS = (
    "stale/log_ratio_abs_mean",
    "stale/log_ratio_abs_p95",  # every loss type
    "gipo/trust_weight_mean",
    "gipo/dead_fraction",
    "gipo/suppressed_fraction",
    "gipo/ess",  # GIPO
    "clip_ratio/region_mean",  # clipped losses (dapo, grpo): the fraction of tokens without gradient
    "gipo/behaviour_kl",  # the anchor's exact KL(pi_behaviour || pi_theta), when it is on
)
"""Per-step training metrics kept in the run summary (the staleness and dead-fraction diagnostics)."""


class SuccessCurve(TrainerCallback):
    """Greedy success rate every `every` optimizer steps, logged through the trainer's loggers, with the
    environment episodes the trainer has acted so far (`VLAGIPOTrainer.episodes_acted`)."""

    def __init__(self, evaluate, every: int, curve: list, trainer: VLAGIPOTrainer):
        self.evaluate, self.every, self.curve, self.trainer = evaluate, every, curve, trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            self.record(state)

    def on_train_end(self, args, state, control, **kwargs):
        self.record(state)

    def record(self, state):
        success = self.evaluate()
        acted = self.trainer.episodes_acted
        self.curve.append({"step": state.global_step, "episodes": acted, "eval_success_rate": success})
        state.log_history.append({"step": state.global_step, "eval_success_rate": success})
        print(f"[eval] step {state.global_step}: success {success:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="reach-v3")
    p.add_argument("--checkpoint", default="runs/vla/sft_reach-v3", help="SFT checkpoint folder (built if missing)")
    p.add_argument("--demo-episodes", type=int, default=50)
    p.add_argument("--sft-epochs", type=int, default=6, help="6: ~15 %% success, room for RL (15: ~95 %%)")
    p.add_argument("--sft-only", action="store_true", help="build/evaluate the SFT checkpoint and stop")
    p.add_argument("--loss-type", default="gipo", help="gipo, or a TRL loss type: dapo, sapo, grpo, ...")
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--sigma-neg-ratio", type=float, default=1.0, help="sigma_-/sigma for non-positive advantages")
    p.add_argument("--behaviour-kl-coeff", type=float, default=None,
                   help="anchor beta * KL(pi_behaviour || pi_theta), exact over the action tokens (the trainer's "
                   "gipo_behaviour_kl_coeff); default: 0.1 with gipo, 0 with TRL's loss types")  # fmt: skip
    p.add_argument("--max-steps", type=int, default=20)
    p.add_argument("--episodes-per-step", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4, help="episodes per goal (the GRPO group)")
    p.add_argument("--num-iterations", type=int, default=2, help="passes over each batch of episodes (>1: stale)")
    p.add_argument("--replay-episodes", type=int, default=0, help="FIFO of earlier episodes replayed (0: none)")
    p.add_argument("--fresh-episodes", type=int, default=None, help="episodes acted per step when replaying")
    p.add_argument("--horizon", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--eval-goals", type=int, default=20)
    p.add_argument("--eval-goal-offset", type=int, default=0, help="first evaluation goal (MT1 has 50)")
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--eval-horizon", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default="runs/vla")
    p.add_argument("--run-name", default=None, help="default: <loss-type>_seed<seed>")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    checkpoint = Path(args.checkpoint)
    if not (checkpoint / "config.json").exists():
        print(f"building the SFT checkpoint in {checkpoint} ({args.demo_episodes} expert episodes)", flush=True)
        sft_checkpoint(checkpoint, task=args.task, episodes=args.demo_episodes, epochs=args.sft_epochs)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    processor = TinyOpenVLAProcessor.from_pretrained(checkpoint)
    goals = [args.eval_goal_offset + i for i in range(args.eval_goals)]

    def evaluate() -> float:
        return evaluate_success(model, processor, args.task, goals, horizon=args.eval_horizon)

    sft_file = checkpoint / "eval_success.json"  # the SFT score is shared by every run from this checkpoint
    key = f"goals_{goals[0]}-{goals[-1]}_{args.eval_horizon}_steps_last_step_success"
    cached = json.loads(sft_file.read_text()) if sft_file.exists() else {}
    if key not in cached:
        cached[key] = evaluate()
        sft_file.write_text(json.dumps(cached))
    sft_success = cached[key]
    print(f"SFT checkpoint: success {sft_success:.2f} on {len(goals)} goals", flush=True)
    if args.sft_only:
        return

    name = args.run_name or f"{args.loss_type}_seed{args.seed}"
    config = VLAGIPOConfig(
        output_dir=str(Path(args.logdir) / name), task=args.task, loss_type=args.loss_type, gipo_sigma=args.sigma,
        gipo_sigma_neg_ratio=args.sigma_neg_ratio,
        gipo_behaviour_kl_coeff=args.behaviour_kl_coeff,
        per_device_train_batch_size=args.episodes_per_step, num_generations=args.num_generations,
        num_iterations=args.num_iterations, episode_horizon=args.horizon, max_steps=args.max_steps,
        replay_episodes=args.replay_episodes, fresh_episodes=args.fresh_episodes,
        learning_rate=args.lr, temperature=args.temperature, max_completion_length=4,
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), seed=args.seed,
        logging_steps=1, save_strategy="no", report_to="none", lr_scheduler_type="constant",
    )  # fmt: skip
    curve = [{"step": 0, "episodes": 0, "eval_success_rate": sft_success}]
    trainer = VLAGIPOTrainer(model, processor, config, goal_dataset(list(range(50))))
    trainer.add_callback(SuccessCurve(evaluate, args.eval_every, curve, trainer))
    trainer.train()
    trainer.save_model(config.output_dir)
    processor.save_pretrained(config.output_dir)
    train_logs = [h for h in trainer.state.log_history if "loss" in h]
    summary = {
        "task": args.task, "loss_type": args.loss_type, "seed": args.seed, "num_iterations": args.num_iterations,
        "anchor_coeff": config.anchor_coeff,
        "sft_success": sft_success, "final_success": curve[-1]["eval_success_rate"], "curve": curve,
        "train_success": [h.get("env/success_rate") for h in train_logs],
        "train_metrics": {key: [h.get(key) for h in train_logs] for key in TRAIN_METRICS},
        "wall_seconds": round(time.time() - start, 1), "args": vars(args),
    }  # fmt: skip
    out = Path(args.logdir) / f"{name}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"{name}: success {sft_success:.2f} (SFT) -> {summary['final_success']:.2f}; wrote {out}", flush=True)


if __name__ == "__main__":
    main()
