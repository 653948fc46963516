"""The Kohya SS GUI (bmaltais/kohya_ss) LoRA tab: its saved JSON configs, read and written by lorakit.

`keys` is the GUI's key table and its rules, `load` reads a config the way the GUI loads it,
`launch` is what the GUI hands sd-scripts for a config (its training TOML and extra arguments),
`export` writes a plan as a GUI config and `importer` turns a GUI config into a lorakit preset.
"""
