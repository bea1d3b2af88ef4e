"""`python -m fragfix` runs the CLI (and is what torchrun launches)."""
from fragfix.cli.commands import main

if __name__ == "__main__":  # not when a spawned worker process imports this module (pool.py)
    main()
