"""`python -m experiments.study TABLE ... | all | report` (see experiments.study.cli)."""

from __future__ import annotations

import sys

from experiments.study.cli import main

if __name__ == "__main__":
    sys.exit(main())
