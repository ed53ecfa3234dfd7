"""Allow ``python -m deepfake_cli``."""

from deepfake_cli.cli import main

main()
