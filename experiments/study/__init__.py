"""The study of the OSPO paper's claims, in miniature (`python -m experiments.study`)."""
