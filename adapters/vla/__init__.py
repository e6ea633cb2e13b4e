"""VLA adapter: OpenVLA policies post-trained with GIPO on Meta-World from pixels, through TRL.

Needs the `[vla]` extra (the `[trl]` and `[metaworld]` extras). MuJoCo picks its rendering backend
when first imported: importing this package before MuJoCo makes `MUJOCO_GL=egl` (headless) the
default; otherwise export it yourself.

- `policy` — the interface the trainer depends on (`VLAPolicy`, `VLAProcessor`) and the sampling /
  scoring functions over the 256 action tokens;
- `actions` — OpenVLA's prompt, q01/q99 statistics and 256-bin action tokenizer;
- `tiny_openvla` — the project's tiny OpenVLA (`TinyOpenVLAForActionPrediction`,
  `TinyOpenVLAProcessor`), trained on a CPU;
- OpenVLA's published checkpoint format on transformers modules, no remote code, one job a file as
  transformers lays out a model: `configuration_openvla` (`OpenVLAConfig`), `modeling_openvla`
  (`OpenVLAForActionPrediction`, `load_openvla`), `processing_openvla` (`OpenVLAProcessor`) and
  `conversion_openvla` (published ↔ transformers weight names, reading and writing the checkpoint files);
- `recipe` — acting, evaluation and the tiny model's SFT recipe (`sft_checkpoint`);
- `trainer` — `VLAGIPOConfig`, `VLAGIPOTrainer`: GIPO (or any TRL loss) on Meta-World episodes.

```python
from gipo_plugins.vla import VLAGIPOConfig, VLAGIPOTrainer, goal_dataset, load_openvla
```
"""

import os as _os
import sys as _sys

if "mujoco" not in _sys.modules:  # before gipo_plugins.metaworld imports Meta-World (and MuJoCo)
    _os.environ.setdefault("MUJOCO_GL", "egl")

from gipo_plugins.vla.actions import ActionTokenizer, compute_statistics, normalize, unnormalize
from gipo_plugins.vla.configuration_openvla import OpenVLAConfig
from gipo_plugins.vla.modeling_openvla import OpenVLAForActionPrediction, load_openvla
from gipo_plugins.vla.policy import VLAPolicy, VLAProcessor, action_log_probs, sample_action_tokens
from gipo_plugins.vla.processing_openvla import OpenVLAProcessor
from gipo_plugins.vla.recipe import act, evaluate_success, sft_checkpoint
from gipo_plugins.vla.tiny_openvla import TinyOpenVLAConfig, TinyOpenVLAForActionPrediction, TinyOpenVLAProcessor
from gipo_plugins.vla.trainer import VLAGIPOConfig, VLAGIPOTrainer, goal_dataset, step_advantages

__all__ = [
    "ActionTokenizer",
    "OpenVLAConfig",
    "OpenVLAForActionPrediction",
    "OpenVLAProcessor",
    "TinyOpenVLAConfig",
    "TinyOpenVLAForActionPrediction",
    "TinyOpenVLAProcessor",
    "VLAGIPOConfig",
    "VLAGIPOTrainer",
    "VLAPolicy",
    "VLAProcessor",
    "act",
    "action_log_probs",
    "compute_statistics",
    "evaluate_success",
    "goal_dataset",
    "load_openvla",
    "normalize",
    "sample_action_tokens",
    "sft_checkpoint",
    "step_advantages",
    "unnormalize",
]
