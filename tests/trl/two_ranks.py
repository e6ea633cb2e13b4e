"""Run by test_multiprocess.py under `torchrun --nproc_per_node 2`: a few GIPO steps on CPU (gloo)."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from trl_helpers import make_trainer

torch.set_num_threads(1)
trainer = make_trainer(sys.argv[1], Path(sys.argv[2]), max_steps=4, logging_steps=1, per_device_train_batch_size=8)
trainer.train()
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print("RESULT " + json.dumps({"rank": trainer.accelerator.process_index, "world": trainer.accelerator.num_processes,
                              "losses": losses}), flush=True)  # fmt: skip
