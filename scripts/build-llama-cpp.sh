#!/usr/bin/env bash
# Builds the two inference servers the server-backend tests (tests/server.rs) talk to, from the PyPI sdist of
# llama-cpp-python 0.3.36 (sdist only on PyPI; it vendors llama.cpp), compiling llama.cpp ONCE:
#   - vendor/llama.cpp with cmake, shared libraries, targets `llama` and `llama-server` only:
#       $DIR/lib/libllama.so (+ libggml*.so), $DIR/bin/llama-server (RPATH $ORIGIN/../lib)
#   - llama-cpp-python[server] into a venv WITHOUT compiling anything (CMAKE_ARGS=-DLLAMA_BUILD=OFF: its
#     CMakeLists.txt then skips vendor/llama.cpp and mtmd); it loads $DIR/lib/libllama.so through
#     LLAMA_CPP_LIB_PATH (llama_cpp/llama_cpp.py), which tests/fixtures/llama_cpp_server.py sets.
# The build is cached outside the repository ($HERMES_EVAL_LLAMA_CPP_DIR, default ~/.cache/hermes-eval/llama-cpp);
# a second call with the same version and CPU options returns at once. Only PyPI is used (cmake, ninja wheels).
# CPU options are explicit (GGML_NATIVE=OFF): AVX/AVX2/FMA/F16C on, AVX-512 only where /proc/cpuinfo lists
# avx512f (GGML_NATIVE=OFF compiles the whole CPU backend with these -m flags, so AVX-512 code on a CPU without
# it would fault), AMX always OFF (machines that advertise AMX fault with SIGILL). Prints the directory last.
set -euo pipefail

VERSION=0.3.36
DIR="${HERMES_EVAL_LLAMA_CPP_DIR:-$HOME/.cache/hermes-eval/llama-cpp}"
PY="${PYTHON:-python3}"
JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]] && echo ON || echo OFF; }
avx512=$(has avx512f)
CPU_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=$(has bmi2)"
CPU_ARGS+=" -DGGML_AVX512=$avx512 -DGGML_AVX512_VBMI=$(has avx512vbmi)"
CPU_ARGS+=" -DGGML_AVX512_VNNI=$(has avx512_vnni) -DGGML_AVX512_BF16=$(has avx512_bf16)"
CPU_ARGS+=" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
COMMON_ARGS="-DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
COMMON_ARGS+=" -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
COMMON_ARGS+=" -DGGML_OPENMP=OFF"

log() { echo "build-llama-cpp: $*" >&2; }

# One build at a time (tests may call this concurrently): the others wait, then find it built.
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

STAMP="$DIR/built-$VERSION-$(echo "$CPU_ARGS $COMMON_ARGS" | sha256sum | cut -c1-12)"
python_ok() {
    local env=()
    [[ -f "$DIR/lib/libllama.so" ]] && env=(env "LLAMA_CPP_LIB_PATH=$DIR/lib")
    "${env[@]}" "$DIR/venv/bin/python" -c \
        "import llama_cpp, llama_cpp.server.app, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null
}
server_ok() { [[ -x "$DIR/bin/llama-server" ]] && "$DIR/bin/llama-server" --version >/dev/null 2>&1; }

if [[ -f "$STAMP" ]] && python_ok && server_ok; then
    echo "$DIR"
    exit 0
fi
if ! compgen -G "$DIR/built-*" >/dev/null && python_ok && server_ok; then
    # Made by an earlier version of this script (no stamp): both servers run, keep them.
    log "adopting the existing build in $DIR"
    touch "$STAMP"
    echo "$DIR"
    exit 0
fi
if compgen -G "$DIR/built-*" >/dev/null && [[ ! -f "$STAMP" ]]; then
    log "options changed since the cached build: rebuilding"
    rm -rf "$DIR/venv" "$DIR/bin" "$DIR/lib" "$DIR/build" "$DIR"/built-*
fi
t0=$(date +%s)
mkdir -p "$DIR/src"

if [[ ! -x "$DIR/venv/bin/python" ]]; then
    log "creating venv in $DIR/venv"
    # Debian's python3 needs python3-venv for ensurepip.
    "$PY" -m venv "$DIR/venv" 2>/dev/null || {
        rm -rf "$DIR/venv"
        command -v apt-get >/dev/null && apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv "$DIR/venv"
    }
fi
# llama.cpp is C/C++: Debian's g++ where no C++ compiler is installed.
command -v c++ >/dev/null || command -v g++ >/dev/null || {
    log "installing g++"
    command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq g++) >/dev/null
}
VPIP=("$DIR/venv/bin/python" -m pip --disable-pip-version-check -q)
command -v cmake >/dev/null && command -v ninja >/dev/null || "${VPIP[@]}" install cmake ninja
export PATH="$PATH:$DIR/venv/bin"

SDIST="$DIR/src/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    log "downloading the llama-cpp-python $VERSION sdist"
    "${VPIP[@]}" download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$DIR/src"
fi

# llama.cpp once: shared libllama for the Python server, llama-server linked against the same libraries.
if ! server_ok || [[ ! -f "$DIR/lib/libllama.so" ]]; then
    log "building libllama + llama-server from the sdist's vendor/llama.cpp (-j$JOBS)"
    SRC="$DIR/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
    [[ -f "$SRC/CMakeLists.txt" ]] || tar xzf "$SDIST" -C "$DIR/src"
    # shellcheck disable=SC2086
    nice -n 10 cmake -S "$SRC" -B "$DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN:$ORIGIN/../lib' \
        $CPU_ARGS $COMMON_ARGS >"$DIR/build.log" 2>&1 || { tail -30 "$DIR/build.log" >&2; exit 1; }
    nice -n 10 cmake --build "$DIR/build" --target llama llama-server -j"$JOBS" >>"$DIR/build.log" 2>&1 \
        || { tail -30 "$DIR/build.log" >&2; exit 1; }
    rm -rf "$DIR/lib" "$DIR/bin"
    mkdir -p "$DIR/lib" "$DIR/bin"
    find "$DIR/build/bin" "$DIR/build/src" "$DIR/build/ggml" -name 'lib*.so*' -exec cp -P {} "$DIR/lib/" \;
    cp "$DIR/build/bin/llama-server" "$DIR/bin/"
    server_ok || { log "the built llama-server does not start"; exit 1; }
    log "llama.cpp built in $(( $(date +%s) - t0 )) s"
fi

# The Python server: no compilation (LLAMA_BUILD=OFF); --no-cache-dir so that a wheel pip cached from an earlier
# build with other CMAKE_ARGS (bundling its own libllama) is not reused; --no-binary names only llama-cpp-python (":all:" would
# compile cmake and every dependency from source).
if ! python_ok; then
    log "installing llama-cpp-python[server]==$VERSION on the shared libllama"
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
        nice -n 10 "${VPIP[@]}" install --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python[server]==$VERSION" numpy
    python_ok || { log "llama-cpp-python does not import with LLAMA_CPP_LIB_PATH=$DIR/lib"; exit 1; }
fi

rm -f "$DIR"/built-*
touch "$STAMP"
log "done in $(( $(date +%s) - t0 )) s"
echo "$DIR"
