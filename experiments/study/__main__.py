"""`python -m experiments.study TABLE ...` (see experiments.study.study)."""

from __future__ import annotations

import sys

from experiments.study.study import main

if __name__ == "__main__":
    sys.exit(main())
