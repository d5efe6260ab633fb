#!/usr/bin/env bash
# Valgrind (memcheck) tests of regal: planted-bug programs and correct
# programs, run under memcheck, with the findings asserted by grepping the
# memcheck log.  Prints TAP.
#
# usage: run.sh BUILD_ROOT [/path/to/libregal-malloc.so]
#
# Each case of the table below runs in up to three variants:
#   g  glibc: the shim build of the program (plain malloc/free, no regal) under
#      plain valgrind, i.e. with memcheck's own malloc.  This is the grounding
#      run: it shows the expectation is what memcheck says about the same bug
#      without regal.  It runs first.
#   s  shim: the same binary with LD_PRELOAD=libregal-malloc.so and
#      --soname-synonyms=somalloc=nouserintercepts (without it memcheck would
#      replace the preloaded malloc and regal would not run at all).
#   a  arena: the arena build of the program (links libregal, regal_* calls).
# Cases whose bug has no malloc form (arena reset/destroy, pools) have a shim
# build that frees the blocks instead; it is run only as the grounding run.
#
# The shim builds print "allocator: regal" or "allocator: libc", checked
# against the variant (g must say libc, s must say regal).  Logs stay in
# BUILD_ROOT/tests/valgrind/logs/<case>.<variant>.{log,out,err}.
set -u

# ---- The table ---------------------------------------------------------------
# name | program | arguments | variants | expectations, separated by ';'
#   text          the memcheck log contains text (a fixed string)
#   !text         it does not
#   re:RE, !re:RE the same with an extended regular expression
#   exit=N        valgrind's exit status (99: errors found, 0: clean)
#   record=HEAD=>A,B  the loss record whose first line contains HEAD has A and
#                 B in its stack
#   stderr=text   the program's stderr contains text (s and a only: regal's
#                 own report)
#   le-glibc=KIND "KIND: N bytes" is at most what the g run reported (absent = 0)
#   opt=OPTION    an extra valgrind option; env=NAME=VALUE an environment variable
#   %ALLOC%       the allocation function: malloc (g, s) or regal_alloc (a)
# Program "python3" is /usr/bin/python3 -c "$PY_CHURN".
IFS= read -r -d '' TABLE <<'EOF'
overflow-24        | overflow       | 24              | gsa | exit=99; Invalid write of size 1; 0 bytes after a block of size 24 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts
overflow-100k      | overflow       | 102400          | gsa | exit=99; Invalid write of size 1; 0 bytes after a block of size 102,400 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts
overflow-2m        | overflow       | 2097152         | gsa | exit=99; Invalid write of size 1; 0 bytes after a block of size 2,097,152 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts
uaf-24             | uaf            | 24              | gsa | exit=99; Invalid read of size 1; 0 bytes inside a block of size 24 free'd; ERROR SUMMARY: 1 errors from 1 contexts
uaf-100k           | uaf            | 102400          | gsa | exit=99; Invalid read of size 1; 0 bytes inside a block of size 102,400 free'd; ERROR SUMMARY: 1 errors from 1 contexts
uaf-2m             | uaf            | 2097152         | gsa | exit=99; Invalid read of size 1; 0 bytes inside a block of size 2,097,152 free'd; ERROR SUMMARY: 1 errors from 1 contexts
uaf-2m-now         | uaf            | 2097152 0       | gsa | exit=99; Invalid read of size 1; 0 bytes inside a block of size 2,097,152 free'd; ERROR SUMMARY: 1 errors from 1 contexts
read-after-reset   | after_reset    | reset           | ga  | exit=99; Invalid read of size 1; 0 bytes inside a block of size 24 free'd; 0 bytes inside a block of size 102,400 free'd; 0 bytes inside a block of size 2,097,152 free'd; ERROR SUMMARY: 3 errors from 3 contexts
read-after-destroy | after_reset    | destroy         | ga  | exit=99; Invalid read of size 1; 0 bytes inside a block of size 24 free'd; 0 bytes inside a block of size 102,400 free'd; 0 bytes inside a block of size 2,097,152 free'd; ERROR SUMMARY: 3 errors from 3 contexts
pool-free-read     | pool_uaf       | free            | ga  | exit=99; Invalid read of size 1; 0 bytes inside a block of size 40 free'd; ERROR SUMMARY: 1 errors from 1 contexts
pool-reset-read    | pool_uaf       | reset           | ga  | exit=99; Invalid read of size 1; 0 bytes inside a block of size 40 free'd; ERROR SUMMARY: 1 errors from 1 contexts
pool-destroy-read  | pool_uaf       | destroy         | ga  | exit=99; Invalid read of size 1; 0 bytes inside a block of size 40 free'd; ERROR SUMMARY: 1 errors from 1 contexts
double-free        | double_free    | double          | gsa | exit=99; Invalid free() / delete / delete[] / realloc(); 0 bytes inside a block of size 24 free'd; ERROR SUMMARY: 1 errors from 1 contexts; stderr=regal:
interior-free      | double_free    | interior        | gsa | exit=99; Invalid free() / delete / delete[] / realloc(); 8 bytes inside a block of size 24 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts; stderr=regal:
uninit-24          | uninit         | malloc 24       | gsa | opt=--track-origins=yes; exit=99; Conditional jump or move depends on uninitialised value(s); Uninitialised value was created by a heap allocation; ERROR SUMMARY: 1 errors from 1 contexts
uninit-100k        | uninit         | malloc 102400   | gsa | opt=--track-origins=yes; exit=99; Conditional jump or move depends on uninitialised value(s); Uninitialised value was created by a heap allocation; ERROR SUMMARY: 1 errors from 1 contexts
uninit-2m          | uninit         | malloc 2097152  | gsa | opt=--track-origins=yes; exit=99; Conditional jump or move depends on uninitialised value(s); Uninitialised value was created by a heap allocation; ERROR SUMMARY: 1 errors from 1 contexts
calloc-24          | uninit         | calloc 24       | gsa | opt=--track-origins=yes; exit=0; ERROR SUMMARY: 0 errors from 0 contexts
calloc-100k        | uninit         | calloc 102400   | gsa | opt=--track-origins=yes; exit=0; ERROR SUMMARY: 0 errors from 0 contexts
calloc-2m          | uninit         | calloc 2097152  | gsa | opt=--track-origins=yes; exit=0; ERROR SUMMARY: 0 errors from 0 contexts
realloc-shrink     | realloc_shrink | 100 40          | gsa | exit=99; Invalid read of size 1; 0 bytes after a block of size 40 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts
realloc-shrink-2m  | realloc_shrink | 2097152 1048576 | gsa | exit=99; Invalid read of size 1; 0 bytes after a block of size 1,048,576 alloc'd; ERROR SUMMARY: 1 errors from 1 contexts
leak               | leak           |                 | gsa | exit=99; definitely lost: 300 bytes in 3 blocks; record=300 bytes in 3 blocks are definitely lost=>: %ALLOC% (,: make_lost (; !48 bytes in 1 blocks are definitely lost; ERROR SUMMARY: 1 errors from 1 contexts
correct-api        | correct_api    |                 | a   | exit=0; ERROR SUMMARY: 0 errors from 0 contexts; !re:definitely lost: [1-9]; !stderr=regal:
handle-move        | handle_move    | clean           | a   | exit=0; ERROR SUMMARY: 0 errors from 0 contexts; All heap blocks were freed; !stderr=regal:
handle-move-uninit | handle_move    | uninit          | a   | exit=99; Conditional jump or move depends on uninitialised value(s); Invalid read of size 1; re:0 bytes after a (recently re-allocated )?block of size 100 alloc'd; regal_arena_compact (; ERROR SUMMARY: 2 errors from 2 contexts; All heap blocks were freed; !stderr=regal:
handle-move-stale  | handle_move    | stale           | a   | exit=99; Invalid read of size 1; 50 bytes inside a block of size 100 free'd; record=50 bytes inside a block of size 100 free'd=>regal_arena_compact (,regal_handle_alloc (; ERROR SUMMARY: 1 errors from 1 contexts; All heap blocks were freed; !stderr=regal:
correct-shim       | correct_shim   |                 | gs  | exit=0; ERROR SUMMARY: 0 errors from 0 contexts; !re:definitely lost: [1-9]; !stderr=regal:
python             | python3        |                 | gs  | opt=--errors-for-leak-kinds=none; opt=--show-leak-kinds=definite; exit=0; ERROR SUMMARY: 0 errors from 0 contexts; le-glibc=definitely lost; !stderr=regal:
python-malloc      | python3        |                 | gs  | env=PYTHONMALLOC=malloc; opt=--errors-for-leak-kinds=none; opt=--show-leak-kinds=definite; exit=0; ERROR SUMMARY: 0 errors from 0 contexts; le-glibc=definitely lost; !stderr=regal:
EOF

# Dict and JSON churn; prints which malloc served it.
PY_CHURN='import ctypes, collections, json
d = {}
for i in range(20000):
    d["k%d" % i] = {"i": i, "s": "x" * (i % 300), "l": list(range(i % 17))}
    if i % 3 == 0:
        d.pop("k%d" % (i // 2), None)
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
assert back == d
c = collections.Counter(len(v["s"]) for v in back.values())
big = [bytearray(1 << 20) for _ in range(8)]
del big
print("allocator:", "regal" if hasattr(ctypes.CDLL(None), "regal_arena_of") else "libc")
print(len(d), len(s), sum(c.values()))'

# ---- Setup ---------------------------------------------------------------------

build=${1:-}
shim=${2:-}
if [ -z "$build" ] || [ ! -d "$build" ]; then
    echo "Bail out! usage: $0 BUILD_ROOT [/path/to/libregal-malloc.so] (got '${build}')"
    exit 1
fi
if ! command -v valgrind >/dev/null 2>&1; then
    echo "1..0 # SKIP valgrind not installed"
    exit 0
fi
build=$(readlink -f "$build")
bindir=$build/tests/valgrind
logdir=$bindir/logs
mkdir -p "$logdir" || {
    echo "Bail out! cannot create $logdir"
    exit 1
}
[ -n "$shim" ] && [ -f "$shim" ] && shim=$(readlink -f "$shim") || shim=''

# Why the regal variants cannot run, if they cannot.
no_regal=''
if grep -qs 'REGAL_VALGRIND 0' "$build/regal_config.h"; then
    no_regal='regal built without Valgrind annotations (-Dvalgrind=disabled or no valgrind.h)'
fi
no_shim=''
[ -z "$shim" ] && no_shim='libregal-malloc.so not built'

tmp=$(mktemp -d "${TMPDIR:-/tmp}/regal-vg.XXXXXX") || {
    echo "Bail out! mktemp failed"
    exit 1
}
trap 'rm -rf "$tmp"' EXIT

# A quiet, predictable environment for every run.
unset LD_PRELOAD REGAL_OPTIONS VALGRIND_OPTS PYTHONMALLOC
export LC_ALL=C PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 HOME="$tmp"

trim() {
    local s=$1
    s=${s#"${s%%[![:space:]]*}"}
    s=${s%"${s##*[![:space:]]}"}
    printf '%s' "$s"
}

# ---- Checks ----------------------------------------------------------------------

# definitely_lost LOG: the bytes of "KIND: N bytes" (0 when absent).
lost_bytes() {
    local kind=$1 log=$2 n
    n=$(grep -o "$kind: [0-9,]* bytes" "$log" | tail -n 1 | sed 's/[^0-9]//g')
    printf '%s' "${n:-0}"
}

# record_has LOG HEAD NEEDLE: the loss record starting at a line containing
# HEAD has NEEDLE in its stack (the lines up to the next blank line).
record_has() {
    awk -v head="$2" -v needle="$3" '
        { sub(/^==[0-9]+== ?/, "") }
        index($0, head) { inrec = 1; next }
        inrec && $0 ~ /^[[:space:]]*$/ { inrec = 0 }
        inrec && index($0, needle) { found = 1 }
        END { exit !found }' "$1"
}

# check VARIANT LOG OUT ERR STATUS GLIBC_LOG EXPECTATIONS...: prints one
# "# failed: ..." line per unmet expectation; returns the number of them.
check() {
    local variant=$1 log=$2 out=$3 err=$4 status=$5 glog=$6
    shift 6
    local bad=0 e alloc=malloc
    [ "$variant" = a ] && alloc=regal_alloc
    for e in "$@"; do
        e=${e//%ALLOC%/$alloc}
        case $e in
        opt=* | env=*) ;;
        exit=*)
            [ "$status" = "${e#exit=}" ] || { echo "# failed: $e (valgrind exited $status)"; bad=$((bad + 1)); }
            ;;
        stderr=*)
            [ "$variant" = g ] && continue
            grep -qF -- "${e#stderr=}" "$err" || { echo "# failed: $e"; bad=$((bad + 1)); }
            ;;
        '!stderr='*)
            [ "$variant" = g ] && continue
            ! grep -qF -- "${e#!stderr=}" "$err" || { echo "# failed: $e"; bad=$((bad + 1)); }
            ;;
        le-glibc=*)
            [ "$variant" = g ] && continue
            local kind=${e#le-glibc=} mine theirs
            mine=$(lost_bytes "$kind" "$log")
            if [ -z "$glog" ] || [ ! -f "$glog" ]; then
                echo "# failed: $e (no glibc run to compare with)"
                bad=$((bad + 1))
            else
                theirs=$(lost_bytes "$kind" "$glog")
                [ "$mine" -le "$theirs" ] || { echo "# failed: $e ($kind: $mine bytes with regal, $theirs with glibc)"; bad=$((bad + 1)); }
            fi
            ;;
        record=*)
            local spec=${e#record=} head needle
            local -a needles
            head=${spec%%=>*}
            IFS=',' read -r -a needles <<<"${spec#*=>}"
            for needle in "${needles[@]}"; do
                record_has "$log" "$head" "$needle" || { echo "# failed: record '$head' names '$needle'"; bad=$((bad + 1)); }
            done
            ;;
        '!re:'*)
            ! grep -qE -- "${e#!re:}" "$log" || { echo "# failed: $e"; bad=$((bad + 1)); }
            ;;
        re:*)
            grep -qE -- "${e#re:}" "$log" || { echo "# failed: $e"; bad=$((bad + 1)); }
            ;;
        '!'*)
            ! grep -qF -- "${e#!}" "$log" || { echo "# failed: $e"; bad=$((bad + 1)); }
            ;;
        *)
            grep -qF -- "$e" "$log" || { echo "# failed: expected \"$e\""; bad=$((bad + 1)); }
            ;;
        esac
    done
    if [ "$variant" != a ]; then
        local want=libc
        [ "$variant" = s ] && want=regal
        grep -qx "allocator: $want" "$out" || {
            echo "# failed: the program did not run on $want's malloc ($(grep -m1 '^allocator:' "$out" || echo 'no allocator line'))"
            bad=$((bad + 1))
        }
    fi
    return "$bad"
}

# excerpt LOG ERR: the memcheck report without its banner, and the program's
# stderr, as TAP comments.
excerpt() {
    sed -e 's/^==[0-9]*== \{0,1\}//' -e '1,/^Parent PID/d' "$1" | grep -v '^$' | head -n 40 | sed 's/^/#   log| /'
    head -n 10 "$2" | sed 's/^/#   err| /'
}

# ---- Run -------------------------------------------------------------------------

total=0
while IFS= read -r line; do
    [ -z "$(trim "$line")" ] && continue
    IFS='|' read -r _ _ _ variants _ <<<"$line"
    variants=$(trim "$variants")
    total=$((total + ${#variants}))
done <<<"$TABLE"
echo "1..$total"

n=0
failed=0
while IFS= read -r line; do
    [ -z "$(trim "$line")" ] && continue
    IFS='|' read -r name prog args variants expect <<<"$line"
    name=$(trim "$name")
    prog=$(trim "$prog")
    args=$(trim "$args")
    variants=$(trim "$variants")
    exps=()
    IFS=';' read -r -a raw <<<"$expect"
    for e in "${raw[@]}"; do
        e=$(trim "$e")
        [ -n "$e" ] && exps+=("$e")
    done
    opts=()
    envs=()
    for e in "${exps[@]}"; do
        case $e in
        opt=*) opts+=("${e#opt=}") ;;
        env=*) envs+=("${e#env=}") ;;
        esac
    done
    glog=''
    for ((i = 0; i < ${#variants}; i++)); do
        v=${variants:i:1}
        n=$((n + 1))
        case $v in
        g) label="$name [glibc, grounding]" ;;
        s) label="$name [shim]" ;;
        a) label="$name [arena]" ;;
        esac
        if [ "$v" != g ] && [ -n "$no_regal" ]; then
            echo "ok $n - $label # SKIP $no_regal"
            continue
        fi
        if [ "$v" = s ] && [ -n "$no_shim" ]; then
            echo "ok $n - $label # SKIP $no_shim"
            continue
        fi
        if [ "$prog" = python3 ]; then
            cmd=(/usr/bin/python3 -c "$PY_CHURN")
            if [ ! -x /usr/bin/python3 ]; then
                echo "ok $n - $label # SKIP /usr/bin/python3 not installed"
                continue
            fi
        else
            exe=$bindir/vg-$prog-shim
            [ "$v" = a ] && exe=$bindir/vg-$prog-arena
            if [ ! -x "$exe" ]; then
                failed=$((failed + 1))
                echo "not ok $n - $label"
                echo "# missing program $exe"
                continue
            fi
            cmd=("$exe")
            [ -n "$args" ] && read -r -a more <<<"$args" && cmd+=("${more[@]}")
        fi
        base=$logdir/$name.$v
        rm -f "$base".log "$base".out "$base".err
        vg=(valgrind --tool=memcheck --leak-check=full --error-exitcode=99 "--log-file=$base.log")
        runenv=("${envs[@]}")
        if [ "$v" = s ]; then
            vg+=(--soname-synonyms=somalloc=nouserintercepts)
            runenv+=("LD_PRELOAD=$shim")
        fi
        vg+=("${opts[@]}")
        (cd "$tmp" && env "${runenv[@]}" timeout 600 "${vg[@]}" "${cmd[@]}" >"$base.out" 2>"$base.err")
        status=$?
        diag=$(check "$v" "$base.log" "$base.out" "$base.err" "$status" "$glog" "${exps[@]}")
        if [ -z "$diag" ]; then
            echo "ok $n - $label"
        else
            failed=$((failed + 1))
            echo "not ok $n - $label"
            printf '%s\n' "$diag"
            [ "$v" != g ] && [ -n "$glog" ] && echo "# (the glibc run of this case passed: the expectation is grounded)"
            excerpt "$base.log" "$base.err"
        fi
        [ "$v" = g ] && [ -z "$diag" ] && glog=$base.log
        [ "$v" = g ] && [ -n "$diag" ] && glog=''
    done
done <<<"$TABLE"

echo "# logs: $logdir"
[ "$failed" -eq 0 ]
