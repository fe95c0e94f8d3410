#!/usr/bin/env bash
# Peer comparison (issue 11, item 4): the first N HellaSwag validation documents, the same thread count, timed
# back to back under /usr/bin/time (whole-process user+system CPU-seconds and max RSS) for
#   - lm-evaluation-harness 0.4.13, `--model hf` (torch, f32) on the f32 HF directory, batch 16, --device cpu
#   - llama.cpp's llama-perplexity --hellaswag (built from the llama-cpp-python 0.3.36 sdist) on the Q4_1 GGUF
#   - hermes-eval bench on the f32 directory and on the Q4_1 GGUF
# Prints a Markdown table and writes JSON (default reports/bench-peers.json) with each tool's accuracy too.
#
# Usage: scripts/bench-peers.sh [N] [THREADS]        (defaults: N=60, THREADS=2; also read from $N / $THREADS)
# Environment (all optional):
#   PEERS_DIR        cache outside the repository: the lm-eval venv (default ~/.cache/hermes-eval/peers)
#   PEERS_PYTHON     python used to create that venv (default python3)
#   PEERS_TORCH_SITE a site-packages directory that already has torch + transformers; it is added to the venv's
#                    path with a .pth file (nothing is installed into it) so that torch is not downloaded again
#   HERMES_EVAL_LLAMA_CPP_DIR  llama.cpp build cache of scripts/build-llama-cpp.sh (default ~/.cache/hermes-eval/llama-cpp)
#   DATA_DIR         hub mirror (default $HERMES_EVAL_DATA_DIR, else ../shared/hub, else /work/shared/hub)
#   F32_DIR, GGUF    the models (default target/test-models/smollm2-135m-f32, models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   HERMES_EVAL      the binary (default target/release/hermes-eval)
#   OUT_JSON         default reports/bench-peers.json
#   SKIP             space-separated tools not to run: lm-eval llama-perplexity hermes-f32 hermes-q4_1
#   PPL_ARGS         extra llama-perplexity arguments, e.g. "--poll 0" (no spin-waiting: fairer CPU-seconds on a
#                    machine busy with other work; llama.cpp's default is --poll 50)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N="${1:-${N:-60}}"
THREADS="${2:-${THREADS:-2}}"
LM_EVAL_VERSION=0.4.13
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/hermes-eval/peers}"
LLAMA_DIR="${HERMES_EVAL_LLAMA_CPP_DIR:-$HOME/.cache/hermes-eval/llama-cpp}"
F32_DIR="${F32_DIR:-$ROOT/target/test-models/smollm2-135m-f32}"
GGUF="${GGUF:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
HERMES_EVAL="${HERMES_EVAL:-$ROOT/target/release/hermes-eval}"
OUT_JSON="${OUT_JSON:-$ROOT/reports/bench-peers.json}"
SKIP="${SKIP:-}"
if [[ -z "${DATA_DIR:-}" ]]; then
    for d in "${HERMES_EVAL_DATA_DIR:-}" "$ROOT/../shared/hub" /work/shared/hub; do
        [[ -n "$d" && -d "$d/datasets" ]] && { DATA_DIR=$d; break; }
    done
fi
DATA_DIR=$(cd "${DATA_DIR:?no hub mirror found: set DATA_DIR}" && pwd)
PARQUET=$(compgen -G "$DATA_DIR/datasets/Rowan/hellaswag/default/validation-*.parquet" | head -1) \
    || { echo "bench-peers: no HellaSwag validation parquet under $DATA_DIR" >&2; exit 1; }

log() { echo "bench-peers: $*" >&2; }
skipped() { [[ " $SKIP " == *" $1 "* ]]; }

[[ -f "$GGUF" ]] || { log "missing $GGUF"; exit 1; }
[[ -f "$F32_DIR/config.json" ]] || { log "missing $F32_DIR (hermes-eval export of the test model)"; exit 1; }
[[ -x "$HERMES_EVAL" ]] || { log "missing $HERMES_EVAL: cargo build --release"; exit 1; }

# GNU time (whole-process CPU-seconds and max RSS).
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    (apt-get update -qq && apt-get install -y -qq time) >/dev/null
fi

# --- lm-evaluation-harness in a cached venv ---------------------------------------------------------------
VENV="$PEERS_DIR/venv"
PY="$VENV/bin/python"
mkdir -p "$PEERS_DIR"
exec 9>"$PEERS_DIR/.lock"
flock 9
if [[ ! -x "$PY" ]]; then
    log "creating $VENV"
    "${PEERS_PYTHON:-python3}" -m venv "$VENV"
fi
if [[ -n "${PEERS_TORCH_SITE:-}" ]]; then
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$PEERS_TORCH_SITE" >"$site/zz-peers-torch-site.pth"
fi
lm_eval_ok() {
    "$PY" -c "import importlib.metadata as m, sys, torch, transformers, datasets, lm_eval
sys.exit(m.version('lm_eval') != '$LM_EVAL_VERSION')" 2>/dev/null
}
if ! lm_eval_ok; then
    log "installing lm-eval[hf]==$LM_EVAL_VERSION (and torch unless PEERS_TORCH_SITE has it) into $VENV"
    nice -n 10 "$PY" -m pip install --disable-pip-version-check -q "lm-eval[hf]==$LM_EVAL_VERSION"
    lm_eval_ok || { log "lm-eval $LM_EVAL_VERSION does not import in $VENV"; exit 1; }
fi

# --- llama-perplexity from the llama-cpp-python 0.3.36 sdist's llama.cpp ------------------------------------
# scripts/build-llama-cpp.sh configures $LLAMA_DIR/build (targets llama + llama-server); llama-perplexity is one
# more target of the same tree. A tree configured as build-server (static, llama-server) is used the same way.
PPL=""
if ! skipped llama-perplexity; then
    export PATH="$PATH:$LLAMA_DIR/venv/bin"   # cmake/ninja wheels of build-llama-cpp.sh
    tree=""
    for t in build build-server; do
        [[ -f "$LLAMA_DIR/$t/CMakeCache.txt" ]] && { tree="$LLAMA_DIR/$t"; break; }
    done
    if [[ -z "$tree" ]]; then
        log "no configured llama.cpp tree in $LLAMA_DIR: running scripts/build-llama-cpp.sh"
        "$ROOT/scripts/build-llama-cpp.sh" >/dev/null
        tree="$LLAMA_DIR/build"
    fi
    if [[ ! -x "$tree/bin/llama-perplexity" ]]; then
        log "building llama-perplexity in $tree"
        nice -n 10 cmake --build "$tree" --target llama-perplexity -j"$THREADS" >"$tree/perplexity-build.log" 2>&1 \
            || { tail -30 "$tree/perplexity-build.log" >&2; exit 1; }
    fi
    PPL="$tree/bin/llama-perplexity"
    avx512=$(grep -m1 '^GGML_AVX512:' "$tree/CMakeCache.txt" | cut -d= -f2 || true)
    log "llama-perplexity: $PPL (GGML_AVX512=${avx512:-?})"
fi

# --- the same first N documents for every tool --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-peers.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HF_HOME="$PEERS_DIR/hf-home" HF_DATASETS_CACHE="$WORK/hf-datasets"
# lm-eval's own hellaswag task (its YAML and utils.process_docs), reading the mirror's parquet instead of the hub.
LM_HS_DIR=$("$PY" -c 'import lm_eval, os; print(os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "hellaswag"))')
mkdir -p "$WORK/tasks"
cat >"$WORK/tasks/hellaswag_mirror.yaml" <<EOF
include: $LM_HS_DIR/hellaswag.yaml
task: hellaswag_mirror
tag: null
dataset_path: parquet
dataset_name: null
dataset_kwargs:
  data_files:
    validation: $PARQUET
training_split: null
EOF
# llama-perplexity's --hellaswag text format (tools/perplexity/perplexity.cpp): 6 lines per task — context,
# gold label, 4 endings — preprocessed as lm-eval does (the same process_docs). It draws its tasks in a random
# order from the file; with exactly N tasks in the file and --hellaswag-tasks N it scores exactly these N.
"$PY" - "$PARQUET" "$N" "$LM_HS_DIR" "$WORK/hellaswag-$N.txt" <<'PYEOF'
import sys, importlib.util
import datasets
parquet, n, hs_dir, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = importlib.util.spec_from_file_location("hs_utils", f"{hs_dir}/utils.py")
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)
ds = datasets.load_dataset("parquet", data_files={"validation": parquet})["validation"].select(range(n))
docs = utils.process_docs(ds)
with open(out, "w", encoding="utf-8") as f:
    for d in docs:
        lines = [d["query"], str(int(d["gold"]))] + list(d["choices"])
        assert len(lines) == 6 and all("\n" not in l for l in lines), lines
        f.write("\n".join(lines) + "\n")
PYEOF

# --- timed runs ---------------------------------------------------------------------------------------------
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" RAYON_NUM_THREADS="$THREADS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
timed() {  # name, command...: /usr/bin/time -> $WORK/<name>.time ("wall user sys maxrss_kb"), output -> .log
    local name=$1
    shift
    log "running $name"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 \
        || { tail -40 "$WORK/$name.log" >&2; log "$name failed"; exit 1; }
    cp "$WORK/$name.log" "$PEERS_DIR/last-$name.log"
}
if ! skipped lm-eval; then
    timed lm-eval "$VENV/bin/lm_eval" --model hf --model_args "pretrained=$F32_DIR,dtype=float32" \
        --tasks hellaswag_mirror --include_path "$WORK/tasks" --device cpu --batch_size 16 --limit "$N" \
        --output_path "$WORK/lm-eval-out"
fi
read -r -a ppl_args <<<"${PPL_ARGS:-}"
if ! skipped llama-perplexity; then
    # -c 512 per sequence (--hellaswag uses 4 parallel sequences): every HellaSwag task fits; the default
    # context would only enlarge the KV cache (and the peak RSS).
    timed llama-perplexity "$PPL" -m "$GGUF" -f "$WORK/hellaswag-$N.txt" --hellaswag --hellaswag-tasks "$N" \
        -t "$THREADS" -tb "$THREADS" -c 512 "${ppl_args[@]}"
fi
for m in f32 q4_1; do
    skipped "hermes-$m" && continue
    model=$F32_DIR
    [[ $m == q4_1 ]] && model=$GGUF
    timed "hermes-$m" "$HERMES_EVAL" bench --model "$model" --task hellaswag --limit "$N" --threads "$THREADS" \
        --data-dir "$DATA_DIR" --json "$WORK/hermes-$m.json"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- table + JSON -------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT_JSON")"
"$PY" - "$WORK" "$N" "$THREADS" "$OUT_JSON" "$LOAD_BEFORE" "$LOAD_AFTER" "$F32_DIR" "$GGUF" "${PPL:-}" <<'PYEOF'
import glob, json, os, re, subprocess, sys, platform
work, n, threads, out, load0, load1, f32, gguf, ppl = sys.argv[1:10]
n, threads = int(n), int(threads)
rows = []
def timing(name):
    p = f"{work}/{name}.time"
    if not os.path.exists(p):
        return None
    wall, user, sys_, rss = open(p).read().split()[-4:]
    return dict(wall_s=float(wall), user_s=float(user), sys_s=float(sys_), peak_rss_mb=int(rss) / 1024)
def add(tool, name, model, accuracy, extra=None):
    t = timing(name)
    if t is None:
        return
    cpu = t["user_s"] + t["sys_s"]
    rows.append(dict(key=name, tool=tool, model=model, documents=n, threads=threads, **t, cpu_s=cpu,
                     cpu_s_per_doc=cpu / n, accuracy=accuracy, **(extra or {})))
# lm-eval: results_*.json under the output path
acc = None
res = glob.glob(f"{work}/lm-eval-out/**/results_*.json", recursive=True)
if res:
    r = json.load(open(res[0]))["results"]["hellaswag_mirror"]
    acc = {k.split(",")[0]: v for k, v in r.items() if k.split(",")[0] in ("acc", "acc_norm", "acc_stderr", "acc_norm_stderr")}
add("lm-evaluation-harness 0.4.13 (hf, torch f32, batch 16)", "lm-eval", f"{os.path.basename(f32)} (f32 safetensors)", acc)
# llama-perplexity: the last "<i>\t<acc>%\t[lo%, hi%]" line
acc = None
p = f"{work}/llama-perplexity.log"
if os.path.exists(p):
    last = [l for l in open(p, errors="replace") if re.match(r"^\d+\t[0-9.]+%\t\[", l)]
    if last:
        i, a = last[-1].split("\t")[:2]
        acc = {"acc_norm_per_token": float(a.rstrip("%")) / 100, "tasks": int(i)}
add("llama.cpp llama-perplexity --hellaswag (llama-cpp-python 0.3.36 sdist)", "llama-perplexity", os.path.basename(gguf), acc,
    {"binary": ppl, "extra_args": os.environ.get("PPL_ARGS", "")})
for m, model in (("f32", f"{os.path.basename(f32)} (f32 safetensors)"), ("q4_1", os.path.basename(gguf))):
    p = f"{work}/hermes-{m}.json"
    if os.path.exists(p):
        b = json.load(open(p))
        acc = {x["metric"]: x["value"] for x in b.get("metrics", [])}
        extra = {"hermes_bench": {k: b.get(k) for k in ("seconds", "documents_per_s", "computed_tokens_per_s",
                                                          "achieved_gflops", "share_of_peak", "kernel", "peak_rss_mb")}}
        add(f"hermes-eval bench ({m})", f"hermes-{m}", model, acc, extra)
by = {r["key"]: r for r in rows}
def ratio(peer, ours):
    a, b = by.get(peer), by.get(ours)
    return a["cpu_s_per_doc"] / b["cpu_s_per_doc"] if a and b else None
ratios = {
    "f32_vs_lm_eval": {"ratio": ratio("lm-eval", "hermes-f32"), "target": 5.0},
    "q4_1_vs_llama_perplexity": {"ratio": ratio("llama-perplexity", "hermes-q4_1"), "target": 2.0},
}
for v in ratios.values():
    v["met"] = None if v["ratio"] is None else v["ratio"] >= v["target"]
doc = dict(task="hellaswag (validation, first documents)", documents=n, threads=threads,
           load_before=load0, load_after=load1, nproc=os.cpu_count(), machine=platform.processor() or platform.machine(),
           cpu_seconds="user+system of the whole process (/usr/bin/time), incl. model load", rows=rows,
           ratios_cpu_s_per_doc=ratios)
json.dump(doc, open(out, "w"), indent=2)
print(f"| tool | model | documents | wall s | CPU-s/doc | peak RSS MB | accuracy |")
print("|---|---|---:|---:|---:|---:|---|")
for r in rows:
    a = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in (r["accuracy"] or {}).items()
                  if "stderr" not in k)
    print(f"| {r['tool']} | {r['model']} | {r['documents']} | {r['wall_s']:.1f} | {r['cpu_s_per_doc']:.3f} | "
          f"{r['peak_rss_mb']:.0f} | {a} |")
print()
for k, v in ratios.items():
    if v["ratio"] is not None:
        print(f"- {k}: {v['ratio']:.2f}x fewer CPU-s/doc (target >= {v['target']:.0f}x: {'met' if v['met'] else 'not met'})")
print(f"- load average before / after: {load0} / {load1} ({os.cpu_count()} cores); JSON: {out}")
PYEOF
