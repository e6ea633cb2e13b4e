"""Run by test_multiprocess.py under `torchrun --nproc_per_node 2`: a few GIPO steps on CPU (gloo).

Each rank writes its result to `<out>/rank<k>.json`: a file of its own, which the two processes cannot
interleave the way they interleave their stdout with transformers' own prints. The script then takes the process
group down itself: left to interpreter exit, gloo's threads are destroyed still joinable now and then, and a rank that
trained correctly dies of SIGABRT ("terminate called without an active exception").
"""

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
rank = trainer.accelerator.process_index
result = {"rank": rank, "world": trainer.accelerator.num_processes, "losses": losses}
(Path(sys.argv[2]) / f"rank{rank}.json").write_text(json.dumps(result))
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
