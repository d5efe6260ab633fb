#!/usr/bin/env bash
# The two commands of the README:
#   ./run.sh demo   installs what is missing, builds, runs the examples
#   ./run.sh test   installs what is missing, builds, runs every test suite
#                   (plain build, then ASan+UBSan) and ends with "N passed, M failed"
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the build and the tests need; installed when missing.
# sqlite3, git, perl, gzip: real programs the shim tests and the demo run.
PACKAGES=(meson ninja-build gcc clang pkg-config libcriterion-dev valgrind python3
    sqlite3 git perl gzip)

install_missing() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "run.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "run.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# build DIR [meson options...]: configure once, then build.
build() {
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" -Dwerror=true "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

# Runs the meson tests of a build dir and prints "<passed> <failed>" on the
# last line of its output, counting every TAP subtest (Criterion tests) and
# every plain test once.
run_suites() {
    local dir=$1
    shift
    meson test -C "$dir" --print-errorlogs "$@" || true
    python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, re, sys
passed = failed = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    out = t.get("stdout") or ""
    tap = [l for l in out.splitlines() if re.match(r"(not )?ok\b", l)]
    if tap:
        for l in tap:
            if l.startswith("not ok"):
                failed += 1
            elif "# SKIP" in l:
                pass
            else:
                passed += 1
        if t["result"] not in ("OK", "EXPECTEDFAIL") and not any(l.startswith("not ok") for l in tap):
            failed += 1  # the runner itself failed (crash, timeout)
    elif t["result"] in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif t["result"] != "SKIP":
        failed += 1
print(passed, failed)
PY
}

cmd_demo() {
    install_missing
    build build
    for ex in build/examples/*; do
        [ -f "$ex" ] && [ -x "$ex" ] || continue
        echo "== ${ex##*/}"
        "$ex"
    done
    # Real programs with regal as their malloc; the statistics are printed
    # by the shim at exit (REGAL_OPTIONS=stats).
    local shim=build/shim/libregal-malloc.so
    echo "== python3 under the shim"
    LD_PRELOAD=$shim REGAL_OPTIONS=stats /usr/bin/python3 -c '
import json
d = {i: [str(i)] * 4 for i in range(100000)}
print("python3: json of", len(d), "keys is", len(json.dumps(d)), "bytes")'
    echo "== sqlite3 under the shim"
    LD_PRELOAD=$shim REGAL_OPTIONS=stats sqlite3 :memory: \
        "create table t(a, b); with recursive c(x) as (select 1 union all select x + 1 from c
         where x < 100000) insert into t select x, hex(randomblob(16)) from c;
         create index i on t(b); select 'sqlite3: rows', count(*) from t;"
}

total_pass=0
total_fail=0

# count DIR [meson test options...]: runs the suites and adds up the counts.
count() {
    local log counts
    log=$(mktemp)
    run_suites "$@" | tee "$log"
    counts=$(tail -n 1 "$log")
    rm -f "$log"
    total_pass=$((total_pass + ${counts% *}))
    total_fail=$((total_fail + ${counts#* }))
}

cmd_test() {
    install_missing
    build build
    count build
    # The library under ASan+UBSan.  The shim cannot run under ASan (ASan
    # replaces malloc itself), so only the library's suites run there.
    build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dshim=false
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        count build-asan --suite api --suite unit --suite examples
    # Threads under TSan: a standalone TAP program (Criterion's runner and
    # the shim cannot run there).  history_size=7 keeps the stacks of
    # earlier accesses, so that a suppressed race (tests/tsan) is still
    # recognised when its other side is old: with the default, about one
    # run in seven lost that stack and reported a statistics read.
    build build-tsan -Db_sanitize=thread -Dshim=false
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=7:suppressions=$PWD/tests/tsan/suppressions.txt \
        count build-tsan --suite tsan
    # A 60 s libFuzzer run of the arena API, when clang is installed.
    if command -v clang >/dev/null 2>&1; then
        CC=clang build build-fz -Db_sanitize=address,undefined -Db_lundef=false -Dshim=false
        count build-fz --suite fuzz
    else
        echo "run.sh: clang not installed, fuzzing skipped"
    fi
    echo "$total_pass passed, $total_fail failed"
    [ "$total_fail" -eq 0 ]
}

case "${1:-}" in
demo) cmd_demo ;;
test) cmd_test ;;
*)
    echo "usage: ./run.sh demo|test" >&2
    exit 2
    ;;
esac
