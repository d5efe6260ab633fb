#!/usr/bin/env bash
# options.sh PROGRAM SHIM: REGAL_OPTIONS values of the purge policy are
# parsed as documented (README "Options"): the verbose line shows what is in
# force, and bad values get a warning and leave the default.  TAP.
set -u
prog=$1
shim=$2
cases=(
    "verbose|purge_delay=1000ms purge_cap=auto|"
    "verbose,purge_delay=250,purge_cap=1M|purge_delay=250ms purge_cap=1048576|"
    "verbose,purge_delay=2s,purge_cap=64k|purge_delay=2000ms purge_cap=65536|"
    "verbose,purge_delay=0ms,purge_cap=3G|purge_delay=0ms purge_cap=3221225472|"
    "verbose,purge_delay=off,purge_cap=off|purge_delay=off purge_cap=off|"
    "verbose,purge_cap=off,purge_cap=auto|purge_delay=1000ms purge_cap=auto|"
    "verbose,purge_delay=12x|purge_delay=1000ms purge_cap=auto|bad value in 'purge_delay=12x'"
    "verbose,purge_cap=3Q|purge_delay=1000ms purge_cap=auto|bad value in 'purge_cap=3Q'"
    "verbose,purge_cap=99999999999G|purge_delay=1000ms purge_cap=auto|bad value in 'purge_cap=99999999999G'"
    "verbose,purge_delay|purge_delay=1000ms purge_cap=auto|bad value in 'purge_delay'"
    "verbose,purge_delay=-1|purge_delay=1000ms purge_cap=auto|bad value in 'purge_delay=-1'"
)
echo "1..${#cases[@]}"
n=0
for c in "${cases[@]}"; do
    n=$((n + 1))
    IFS='|' read -r opts want warning <<<"$c"
    err=$(LD_PRELOAD=$shim REGAL_OPTIONS=$opts "$prog" 2>&1 >/dev/null)
    rc=$?
    if [ $rc -eq 0 ] && grep -qF "$want" <<<"$err" &&
        { [ -z "$warning" ] || grep -qF "regal: REGAL_OPTIONS: $warning ignored" <<<"$err"; }; then
        echo "ok $n - REGAL_OPTIONS=$opts"
    else
        echo "not ok $n - REGAL_OPTIONS=$opts (exit $rc, wanted '$want'${warning:+ and '$warning'}, stderr: ${err:0:300})"
    fi
done
