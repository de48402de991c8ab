"""`python -m experiments.train`: the CPU GRPO/OSPO trainer (see experiments.train.cli)."""

from __future__ import annotations

import sys

from experiments.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
