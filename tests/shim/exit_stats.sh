#!/usr/bin/env bash
# exit_stats.sh PROGRAM SHIM: the exit statistics appear, in time, whether
# stderr is fully buffered or closed by the program.  TAP.
set -u
prog=$1
shim=$2
echo "1..3"
n=0
for mode in buffered closed; do
    n=$((n + 1))
    err=$(LD_PRELOAD=$shim REGAL_OPTIONS=stats timeout 20 "$prog" "$mode" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 0 ] && grep -q "regal arena 'default'" <<<"$err" &&
        grep -q "^  memory: resident [0-9]*, retained [0-9]*, dirty [0-9]*" <<<"$err"; then
        echo "ok $n - stats at exit with stderr $mode"
    else
        echo "not ok $n - stats at exit with stderr $mode (exit $rc${err:+, stderr: ${err:0:200}})"
    fi
done

# stats=json: one object a line (timeout prints one too, being preloaded as
# well) whose memory figures hold together.
n=$((n + 1))
err=$(LD_PRELOAD=$shim REGAL_OPTIONS=stats=json timeout 20 "$prog" buffered 2>&1 >/dev/null)
rc=$?
why=$(python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
if not lines:
  print("no JSON", end="")
for line in lines:
  s = json.loads(line)
  checks = [
    ("resident <= mapped", s["resident"] <= s["mapped"]),
    ("dirty <= free_resident", s["dirty"] <= s["free_resident"]),
    ("free_resident <= resident", s["free_resident"] <= s["resident"]),
    ("fragmentation <= free_resident", s["fragmentation"] <= s["free_resident"]),
    ("retained > 0", s["retained"] > 0),
    ("purged is a count", isinstance(s["purged"], int)),
    ("purge settings", "delay_ms" in s["purge"] and "cap" in s["purge"]),
  ]
  print(", ".join(name for name, ok in checks if not ok), end="")
' <<<"$err" 2>&1)
if [ $rc -eq 0 ] && [ -z "$why" ]; then
    echo "ok $n - stats=json at exit has consistent memory figures"
else
    echo "not ok $n - stats=json at exit (exit $rc, failed: ${why:0:300}, stderr: ${err:0:200})"
fi
