"""Named YAML presets shipped with dfk (installed as deepfake_cli.presets)."""
