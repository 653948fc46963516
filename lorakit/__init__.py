"""lorakit: plan, fit, launch and watch SDXL LoRA training with kohya-ss sd-scripts."""

__version__ = "0.1.0"

# The sd-scripts commit whose arguments, dataset schema and log formats lorakit follows.
SD_SCRIPTS_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"
SD_SCRIPTS_VERSION = "v0.10.1-5-g48d368fa"  # `git describe --tags` of that commit (docs/sd-scripts.md §1)
