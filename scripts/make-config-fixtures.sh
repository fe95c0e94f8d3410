#!/usr/bin/env bash
# Regenerate tests/fixtures/configs/tf{4,5}/*.json with the real transformers 4.x and 5.x from
# PyPI (config classes only: no torch needed). Virtual environments live in the cache, outside
# the repository. Usage: scripts/make-config-fixtures.sh [EXPORT_DIR]
# EXPORT_DIR: the test model exported by `hermes-eval export` (default:
# target/test-models/smollm2-135m-f32, which the tests create); transformers 5 re-saves its config.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${HERMES_EVAL_CACHE:-$HOME/.cache/hermes-eval}"
export_dir="${1:-$repo/target/test-models/smollm2-135m-f32}"
for spec in "4 transformers==4.57.6" "5 transformers==5.24.0"; do
  set -- $spec
  venv="$cache/venv-tf$1"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$2"
  rm -rf "$repo/tests/fixtures/configs/tf$1"
  "$venv/bin/python" "$repo/scripts/config_fixtures.py" "$repo/tests/fixtures/configs" \
    "$export_dir"
done
