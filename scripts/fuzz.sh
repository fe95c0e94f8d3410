#!/usr/bin/env bash
# Fuzz hermes-eval's input parsers with cargo-fuzz (libFuzzer + AddressSanitizer), issue 13 item 3.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 600 s, every target)
#
# Targets (fuzz/fuzz_targets/): gguf (header reader + hyper-parameters + validator + tokenizer),
# gguf_tokenizer, hf_config (config.json, safetensors header + validator), tool_call, json_judge,
# task_file, request_cache, server_response. The toolchain here is stable Rust: cargo-fuzz's
# nightly flags (-Zsanitizer=address, …) are accepted with RUSTC_BOOTSTRAP=1, and the stable
# sysroot ships the ASan runtime (librustc-stable_rt.asan.a). Seeds come from the repository
# (scripts/fuzz-seeds.py); corpora and crash artifacts stay in fuzz/corpus and fuzz/artifacts
# (git-ignored). Prints one line per target (executions, seconds, crashes); exits 1 on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(gguf gguf_tokenizer hf_config tool_call json_judge task_file request_cache server_response)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build >&2
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
python3 scripts/fuzz-seeds.py "$seeds" $( [ -f "$model" ] && echo "$model" ) >&2
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    [ -d "$seeds/$t" ] && cp -n "$seeds/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    log="fuzz/artifacts/$t/last-run.log"
    start=$(date +%s)
    rc=0
    cargo fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -max_len=65536 -print_final_stats=1 > "$log" 2>&1 || rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    crashes=$(find "fuzz/artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' | wc -l)
    echo "$t: ${execs} executions in ${took} s, exit ${rc}, crash/timeout/oom artifacts: ${crashes}"
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -m3 -E 'ERROR|panicked|SUMMARY' "$log" | sed "s/^/  $t: /" || true
    fi
done
exit $status
