#!/usr/bin/env bash
# Prints the path of whisper.cpp's own `whisper-cli`, built once from a pinned release and cached
# under $WAI_BENCH_CACHE/whisper.cpp (default ~/.cache/wai/bench/whisper.cpp). It is the speech
# benchmark's anchor: bench/ct2_whisper_to_ggml.py writes the very weights wai's faster-whisper
# engine loads as a ggml file, and bench/speech.py times this CLI on them.
#
# The source is a shallow clone of the pinned tag, or, offline, the tree named by $WHISPERCPP_SRC
# (an extracted snapshot of the same commit: `git archive 371b5a75 | tar -x -C DIR`).
#
#   WHISPERCPP_SRC=/tmp/whisper.cpp-src bench/whispercpp.sh   # -> .../whisper.cpp/bin/whisper-cli
#
# Only whisper-cli and whisper-quantize are built (about 4 minutes on 2 cores), statically, so the cached binary is one
# file. GGML_NATIVE=ON compiles ggml for this CPU (-march=native): right for a local bench tool
# timed on the machine that built it, never for anything shipped; WHISPERCPP_NATIVE=OFF builds the
# portable baseline instead. The cache key holds the commit and that choice, so changing either
# rebuilds.
#
# ggml uses OpenMP here: run the CLI with OMP_WAIT_POLICY=passive on a shared machine (and for
# concurrent processes), or its spinning threads, a core short, run several times slower.
set -euo pipefail

# Pinned: whisper.cpp's newest release when this anchor was set up; the commit is checked.
WHISPERCPP_TAG="v1.9.3"
WHISPERCPP_COMMIT="371b5a7561823ab2bb32142d2751e35e7534727b"
WHISPERCPP_URL="${WHISPERCPP_URL:-https://github.com/ggml-org/whisper.cpp}"  # or a mirror

native="${WHISPERCPP_NATIVE:-ON}"
root="${WAI_BENCH_CACHE:-${WAI_CACHE_DIR:-$HOME/.cache/wai}/bench}/whisper.cpp"
bin="$root/bin/whisper-cli"
stamp="$root/bin/BUILD"
want="commit=$WHISPERCPP_COMMIT native=$native"

if [[ -x "$bin" && -x "$root/bin/whisper-quantize" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$bin"
    exit 0
fi

log() { echo "whispercpp.sh: $*" >&2; }

src="${WHISPERCPP_SRC:-}"
if [[ -z "$src" ]]; then
    src="$root/src"
    rm -rf "$src"
    log "cloning $WHISPERCPP_URL at $WHISPERCPP_TAG"
    git -c advice.detachedHead=false clone --quiet --depth 1 --branch "$WHISPERCPP_TAG" \
        "$WHISPERCPP_URL" "$src" >&2
    got="$(git -C "$src" rev-parse HEAD)"
    if [[ "$got" != "$WHISPERCPP_COMMIT" ]]; then
        log "tag $WHISPERCPP_TAG is $got, expected $WHISPERCPP_COMMIT"
        exit 1
    fi
elif [[ ! -f "$src/CMakeLists.txt" || ! -f "$src/src/whisper.cpp" ]]; then
    log "WHISPERCPP_SRC=$src is not a whisper.cpp source tree"
    exit 1
elif git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
    got="$(git -C "$src" rev-parse HEAD)"
    [[ "$got" == "$WHISPERCPP_COMMIT" ]] || log "warning: $src is at $got, not $WHISPERCPP_COMMIT"
else
    log "building from $src (trusted to be $WHISPERCPP_COMMIT: it has no .git to check)"
fi

build="$root/build"
rm -rf "$build"  # a fresh configure: the source tree or GGML_NATIVE may have changed
log "building whisper-cli and whisper-quantize (GGML_NATIVE=$native) in $build"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_BUILD_SERVER=OFF \
    -DWHISPER_SDL2=OFF -DWHISPER_CURL=OFF -DGGML_NATIVE="$native" >&2
cmake --build "$build" --target whisper-cli whisper-quantize -j "${WHISPERCPP_JOBS:-$(nproc)}" >&2

mkdir -p "$root/bin"
install -m 0755 "$build/bin/whisper-cli" "$bin"
install -m 0755 "$build/bin/whisper-quantize" "$root/bin/whisper-quantize"  # q8_0: int8 as wai
echo "$want" >"$stamp"
echo "$bin"
