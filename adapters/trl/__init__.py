"""TRL adapter: `GIPOConfig` and `GIPOTrainer` (GRPO-style data flow, GIPO's policy term).

```python
from gipo_plugins.trl import GIPOConfig, GIPOTrainer  # instead of GRPOConfig, GRPOTrainer

trainer = GIPOTrainer(model=path, reward_funcs=reward, args=GIPOConfig(num_iterations=2), train_dataset=ds)
```

Needs the `[trl]` extra only (importing it never imports Meta-World or MuJoCo). The trainer relies
on TRL internals that change between releases, so the supported range is pinned and checked here.
`gipo_plugins.trl.tiny` builds a tiny causal LM and tokenizer locally (no model hub). The VLA
trainer built on it is its own adapter, `gipo_plugins.vla` (`[vla]` extra).
"""

from importlib.metadata import version as _version

from packaging.version import Version as _Version

SUPPORTED_TRL = (_Version("1.16"), _Version("1.17"))
_installed = _Version(_version("trl"))
if not SUPPORTED_TRL[0] <= _installed < SUPPORTED_TRL[1]:
    raise ImportError(
        f"gipo_plugins.trl supports trl>={SUPPORTED_TRL[0]},<{SUPPORTED_TRL[1]} (it overrides GRPOTrainer internals); "
        f"trl {_installed} is installed. Install the supported range: pip install 'gipo-plugins[trl]'."
    )

from gipo_plugins.trl.gipo import GIPOConfig, GIPOTrainer  # noqa: E402

__all__ = ["GIPOConfig", "GIPOTrainer"]
