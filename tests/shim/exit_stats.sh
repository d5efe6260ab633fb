#!/usr/bin/env bash
# exit_stats.sh PROGRAM SHIM: the exit statistics appear, in time, whether
# stderr is fully buffered or closed by the program.  TAP.
set -u
prog=$1
shim=$2
echo "1..2"
n=0
for mode in buffered closed; do
    n=$((n + 1))
    err=$(LD_PRELOAD=$shim REGAL_OPTIONS=stats timeout 20 "$prog" "$mode" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 0 ] && grep -q "regal arena 'default'" <<<"$err"; then
        echo "ok $n - stats at exit with stderr $mode"
    else
        echo "not ok $n - stats at exit with stderr $mode (exit $rc${err:+, stderr: ${err:0:200}})"
    fi
done
