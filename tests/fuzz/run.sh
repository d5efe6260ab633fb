#!/usr/bin/env bash
# A fixed-length libFuzzer run of fuzz_arena, reported as TAP.
#
#   tests/fuzz/run.sh FUZZER|BUILD_DIR SECONDS [CORPUS_DIR]
#
# FUZZER is the fuzz_arena executable of a clang build (or the build dir that
# holds tests/fuzz/fuzz_arena); SECONDS the length of the run; CORPUS_DIR the
# seeds (default: tests/fuzz/corpus next to this script).  The run works on a
# temporary copy of the corpus, so the repository is never modified.  A crash
# prints "not ok" with the tail of the fuzzer's output, and its reproducer is
# kept in crashes/ next to the fuzzer (replay: FUZZER crashes/crash-...;
# FUZZ_ARENA_TRACE=1 lists the operations).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target=${1:?usage: run.sh FUZZER|BUILD_DIR SECONDS [CORPUS_DIR]}
seconds=${2:?usage: run.sh FUZZER|BUILD_DIR SECONDS [CORPUS_DIR]}
corpus=${3:-$here/corpus}

if ! command -v clang >/dev/null 2>&1; then
    echo "1..0 # SKIP clang not installed"
    exit 0
fi
[ -d "$target" ] && target=$target/tests/fuzz/fuzz_arena
echo "1..1"
if [ ! -x "$target" ]; then
    echo "not ok 1 - fuzz_arena: no fuzzer at $target (build with CC=clang)"
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/regal-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
[ -d "$corpus" ] && cp -r "$corpus/." "$work/corpus/"

# UBSan only prints by default: make it a crash the fuzzer reports.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
start=$SECONDS
"$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=60 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
    >"$work/log" 2>&1
status=$?
elapsed=$((SECONDS - start))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -n 1)

crashes=$(find "$work/artifacts" -type f | head -n 5)
if [ "$status" -eq 0 ] && [ -z "$crashes" ]; then
    echo "ok 1 - fuzz_arena ran $elapsed s, ${execs:-?} execs (${rate:-?}/s), no crash"
    exit 0
fi

kept=""
if [ -n "$crashes" ]; then
    keep=$(cd "$(dirname "$target")" && pwd)/crashes
    mkdir -p "$keep" && cp $crashes "$keep/" && kept=" (reproducer in $keep/)"
fi
echo "not ok 1 - fuzz_arena failed after $elapsed s, exit $status$kept"
tail -n 60 "$work/log" | sed 's/^/# /'
exit 1
