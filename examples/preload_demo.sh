#!/usr/bin/env bash
# preload_demo: runs ordinary programs with regal as their malloc.
#
#   LD_PRELOAD=<build>/shim/libregal-malloc.so REGAL_OPTIONS=stats <program>
#
# puts every malloc, free, realloc... of <program> on regal's default arena,
# and REGAL_OPTIONS=stats prints that arena's table on stderr at exit.
# usage: preload_demo.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: preload_demo.sh BUILD_DIR}
shim=$(cd "$build" && pwd)/shim/libregal-malloc.so
[ -f "$shim" ] || {
    echo "preload_demo: $shim not found (configure with -Dshim=true)" >&2
    exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# A shell pipeline: only ls gets the preload.  Its output must not change.
# shellcheck disable=SC2012 # ls is the program being shown, not a file lister
plain=$(ls -l /usr/bin | wc -l)
# shellcheck disable=SC2012
shimmed=$(LD_PRELOAD=$shim REGAL_OPTIONS=stats ls -l /usr/bin 2>"$tmp/ls.err" | wc -l) || status=1
echo "ls -l /usr/bin | wc -l: $shimmed under the shim, $plain without"
[ "$plain" = "$shimmed" ] || status=1
# coreutils close stderr in an atexit handler, before regal's exit hook
# prints the table, so the table may be missing for ls.
if grep -q "^regal arena 'default'" "$tmp/ls.err"; then
    echo "  ls: $(grep -m1 '^  total:' "$tmp/ls.err" | sed 's/^ *//')"
else
    echo "  ls: no table (ls closed its stderr before exiting)"
fi

# A Python program.  PYTHONMALLOC=malloc makes Python send its small objects
# to malloc too (it keeps them in arenas of its own otherwise), so nearly
# every allocation of the interpreter comes from regal.
LD_PRELOAD=$shim PYTHONMALLOC=malloc REGAL_OPTIONS=stats /usr/bin/python3 -c '
words = {}
for i in range(200000):
    words.setdefault(str(i % 5000), []).append(i)
print("python3:", len(words), "keys,", sum(map(len, words.values())), "values")' \
    2>"$tmp/py.err" || status=1
if grep -q "^regal arena 'default'" "$tmp/py.err"; then
    grep -m1 "^regal arena 'default'" "$tmp/py.err"
    grep -E '^  (total|calls):' "$tmp/py.err"
else
    echo "preload_demo: python3 printed no statistics table on stderr:" >&2
    cat "$tmp/py.err" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "preload_demo: ok"
else
    echo "preload_demo: FAILED"
fi
exit "$status"
