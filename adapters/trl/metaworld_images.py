"""Moved to `gipo_plugins.metaworld.pixels`: the VLA code is its own adapter (`pip install 'gipo-plugins[vla]'`)."""

raise ImportError(
    "gipo_plugins.trl.metaworld_images moved to gipo_plugins.metaworld.pixels "
    "(MetaWorldImageEnv, collect_demonstrations, instruction); "
    "install the [vla] extra and import from there"
)
