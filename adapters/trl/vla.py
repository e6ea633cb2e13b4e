"""Moved to `gipo_plugins.vla.trainer`: the VLA code is its own adapter (`pip install 'gipo-plugins[vla]'`)."""

raise ImportError(
    "gipo_plugins.trl.vla moved to gipo_plugins.vla.trainer "
    "(VLAGIPOConfig, VLAGIPOTrainer; sft_checkpoint and evaluate_success: "
    "gipo_plugins.vla.recipe); "
    "install the [vla] extra and import from there"
)
