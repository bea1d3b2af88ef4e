"""`python -m fragfix` runs the CLI (and is what torchrun launches)."""
from .cli import main

main()
