"""ospo's tests. A regular package so that `tests.support` resolves to this directory: the
openrlhf/verl wheels install a top-level `tests` package into site-packages, and pytest's
`pythonpath = ["."]` puts the repo root ahead of it."""
