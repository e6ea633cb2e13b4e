"""Moved to `gipo_plugins.vla.tiny_openvla`: the VLA code is its own adapter (`pip install 'gipo-plugins[vla]'`)."""

raise ImportError(
    "gipo_plugins.trl.openvla moved to gipo_plugins.vla.tiny_openvla "
    "(the tiny OpenVLA; action tokenizer and statistics: "
    "gipo_plugins.vla.actions); "
    "install the [vla] extra and import from there"
)
