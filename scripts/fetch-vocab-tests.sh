#!/usr/bin/env bash
# Fetch llama.cpp's tokenizer conformance files (models/ggml-vocab-<name>.gguf with .gguf.inp /
# .gguf.out) from the vendored llama.cpp of the PyPI sdist llama-cpp-python==0.3.36. The sdist is
# only downloaded (never built) into a cache outside the repository; the files are never
# committed. Prints the directory holding them.
# Usage: scripts/fetch-vocab-tests.sh [CACHE_DIR]   (default: $HERMES_EVAL_CACHE or ~/.cache/hermes-eval)
#
# `--no-binary llama-cpp-python` (not `:all:`): pip still prepares the sdist's metadata, and with
# `:all:` it would compile the build backend's own dependencies (cmake) from source to do so.
set -euo pipefail
cache="${1:-${HERMES_EVAL_CACHE:-$HOME/.cache/hermes-eval}}"
ver=0.3.36
sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
out="$cache/llama-cpp-python-$ver-vocab"
if [ -s "$out/.complete" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/sdist"
tgz="$cache/sdist/llama_cpp_python-$ver.tar.gz"
if [ ! -s "$tgz" ] || [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "$sha" ]; then
  rm -f "$tgz"
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    --disable-pip-version-check "llama-cpp-python==$ver" -d "$cache/sdist" >&2
fi
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then echo "fetch-vocab-tests: sha256 mismatch ($got, expected $sha)" >&2; exit 1; fi
tmp=$(mktemp -d "$cache/vocab.XXXXXX"); trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp" --wildcards --no-anchored 'vendor/llama.cpp/models/ggml-vocab-*'
rm -rf "$out"
mv "$tmp/llama_cpp_python-$ver/vendor/llama.cpp/models" "$out"
ls "$out" > "$out/.complete"
echo "$out"
