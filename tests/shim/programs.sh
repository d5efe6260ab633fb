#!/usr/bin/env bash
# Real programs with and without the malloc shim preloaded; their outputs
# must be identical byte for byte.  Prints TAP (one line per program) and the
# wall times as TAP comments.  A missing program is a TAP skip.
#
# usage: programs.sh /path/to/libregal-malloc.so
#
# Each program command runs under `timeout 300`.  The shim run also fails when
# the program writes a "regal:" line on stderr (regal found misuse or
# corruption) or the loader could not preload the library.
set -u

shim=${1:-}
if [ -z "$shim" ] || [ ! -f "$shim" ]; then
    echo "Bail out! usage: $0 /path/to/libregal-malloc.so (got '${shim}')"
    exit 1
fi
shim=$(readlink -f "$shim")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/regal-programs.XXXXXX") || {
    echo "Bail out! mktemp failed"
    exit 1
}
trap 'rm -rf "$tmp"' EXIT
trap 'exit 143' TERM INT HUP # exit through the EXIT trap
cd "$tmp" || exit 1

# The same environment for both runs; nothing from the caller's preload.
unset LD_PRELOAD
export LC_ALL=C TZ=UTC HOME="$tmp/home" PYTHONHASHSEED=0 PERL_HASH_SEED=0 \
       PYTHONDONTWRITEBYTECODE=1
mkdir -p "$HOME"

tests=8
echo "1..$tests"
n=0
failed=0

# run MODE CMD...: runs CMD (with the shim when MODE is shim) under timeout
# 300, appending its stderr to $errfile and a timeout to $errfile.timeout.
run() {
    local mode=$1 rc
    shift
    if [ "$mode" = shim ]; then
        LD_PRELOAD=$shim timeout 300 "$@" 2>>"$errfile"
    else
        timeout 300 "$@" 2>>"$errfile"
    fi
    rc=$?
    [ "$rc" != 124 ] || echo "$*" >>"$errfile.timeout"
    return "$rc"
}

now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# compare NAME TOOL FUNC: runs FUNC plain then with the shim, each in its own
# directory (FUNC MODE writes its result to ./out), and compares ./out.
compare() {
    local name=$1 tool=$2 func=$3
    if ! command -v "$tool" >/dev/null 2>&1; then
        skip "$name" "not installed"
        return
    fi
    local mode t0 t1 why=""
    declare -A secs status
    for mode in plain shim; do
        mkdir -p "$tmp/$name/$mode"
        errfile="$tmp/$name/$mode.err"
        : >"$errfile"
        rm -f "$errfile.timeout"
        t0=$(now)
        (cd "$tmp/$name/$mode" && "$func" "$mode")
        status[$mode]=$?
        t1=$(now)
        secs[$mode]=$(elapsed "$t0" "$t1")
    done
    echo "# $name: ${secs[plain]} s without the shim, ${secs[shim]} s with it"
    local plain_out="$tmp/$name/plain/out" shim_out="$tmp/$name/shim/out"
    if [ -f "$tmp/$name/shim.err.timeout" ]; then
        why="timed out (300 s) with the shim: $(head -n 1 "$tmp/$name/shim.err.timeout")"
    elif [ -f "$tmp/$name/plain.err.timeout" ]; then
        why="timed out (300 s) without the shim: $(head -n 1 "$tmp/$name/plain.err.timeout")"
    elif [ "${status[plain]}" != 0 ]; then
        why="failed without the shim (status ${status[plain]}): the test itself is broken"
    elif [ "${status[shim]}" != 0 ]; then
        why="failed with the shim (status ${status[shim]})"
    elif [ ! -s "$plain_out" ]; then
        why="no output without the shim: the test itself is broken"
    elif ! cmp -s "$plain_out" "$shim_out"; then
        why="outputs differ"
    elif grep -q '^regal:' "$tmp/$name/shim.err"; then
        why="regal reported errors"
    elif grep -q 'ld\.so' "$tmp/$name/shim.err"; then
        why="the loader did not preload the shim"
    fi
    if [ -z "$why" ]; then
        ok "$name: same output with and without the shim"
        return
    fi
    not_ok "$name: $why"
    if [ -f "$plain_out" ] && [ -f "$shim_out" ] && ! cmp -s "$plain_out" "$shim_out"; then
        diff "$plain_out" "$shim_out" | head -n 10 | sed 's/^/#   /'
    fi
    grep -h -v '^$' "$tmp/$name/shim.err" 2>/dev/null | head -n 10 | sed 's/^/#   shim stderr: /'
    if [ "${status[plain]}" != 0 ]; then
        grep -h -v '^$' "$tmp/$name/plain.err" 2>/dev/null | head -n 10 |
            sed 's/^/#   plain stderr: /'
    fi
}

# ---- 1. The preload works at all ---------------------------------------------
maps=$(LD_PRELOAD=$shim cat /proc/self/maps 2>"$tmp/preload.err")
if grep -qF "$shim" <<<"$maps" && ! grep -q . "$tmp/preload.err"; then
    ok "the shim preloads into a program (it is mapped, the loader is silent)"
else
    not_ok "the shim preloads into a program (it is mapped, the loader is silent)"
    sed 's/^/#   /' "$tmp/preload.err" | head -n 5
fi

# ---- 2. python3: dict/list/json churn ----------------------------------------
python=""
if command -v python3 >/dev/null 2>&1; then
    # The real interpreter, not a wrapper script (pyenv), so the times mean
    # something; both runs use the same binary.
    python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || python=""
fi
cat >"$tmp/churn.py" <<'EOF'
import hashlib, json, random

rng = random.Random(42)
h = hashlib.sha256()
d = {}
for rnd in range(10):
    for i in range(20000):
        k = "k%d" % rng.randrange(60000)
        d[k] = [rng.random(), k * (1 + i % 7), {"i": i, "r": rnd, "t": (i, k)}]
        if i % 3 == 0:
            d.pop("k%d" % rng.randrange(60000), None)
    s = json.dumps(d, sort_keys=True)
    back = json.loads(s)
    assert json.dumps(back, sort_keys=True) == s
    h.update(s.encode())
    top = sorted(d.items(), key=lambda kv: (kv[1][0], kv[0]))[:2000]
    h.update(repr(top).encode())
    chunks = [list(range(j, j + 50)) for j in range(0, 100000, 50)]
    h.update(str(sum(map(sum, chunks[rnd::7]))).encode())
    words = " ".join(sorted(d)).split()
    h.update(("%d %d" % (len(words), len({w[:4] for w in words}))).encode())
print(len(d), h.hexdigest())
EOF
prog_python() {
    run "$1" "$python" "$tmp/churn.py" >out
}
if [ -n "$python" ]; then
    compare python3 "$python" prog_python
else
    skip python3 "not installed"
fi

# ---- 3. perl: hash churn and sort ----------------------------------------------
cat >"$tmp/churn.pl" <<'EOF'
use strict;
use warnings;
my $x = 42;
sub rnd { $x = ($x * 1103515245 + 12345) % 2147483648; return $x; }
my (%h, $sum);
$sum = 0;
for my $round (1 .. 8) {
    for my $i (1 .. 40000) {
        my $k = "k" . (rnd() % 80000);
        $h{$k} .= "v$i,";
        delete $h{$k} if length($h{$k}) > 120;
        my @list = (1 .. ($i % 40));
        $h{"l$k"} = join(":", reverse @list) if $i % 5 == 0;
    }
    my @keys = sort { length($h{$a}) <=> length($h{$b}) or $a cmp $b } keys %h;
    $sum = ($sum * 31 + unpack("%32C*", join("|", @keys[0 .. 999]))) % 4294967296;
    $sum = ($sum * 31 + scalar(@keys)) % 4294967296;
    my %copy = map { $_ => scalar reverse($h{$_}) } grep { /7/ } @keys;
    $sum = ($sum + unpack("%32C*", join("", map { $copy{$_} } sort keys %copy))) % 4294967296;
}
print scalar(keys %h), " $sum\n";
EOF
prog_perl() {
    run "$1" perl "$tmp/churn.pl" >out
}
compare perl perl prog_perl

# ---- 4. sqlite3: 200k inserts in a transaction, an index, queries --------------
awk 'BEGIN {
    print "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val INTEGER, note TEXT);"
    print "BEGIN;"
    x = 12345
    for (i = 0; i < 200000; i++) {
        x = (x * 1103515245 + 12345) % 2147483648
        y = int(x / 65536)
        printf "INSERT INTO t(name, grp, val, note) VALUES(%cname-%d%c, %d, %d, %c%s%c);\n", \
            39, y % 50000, 39, y % 97, x % 100003, 39, substr("abcdefghijklmnopqrstuvwxyz", 1 + y % 26), 39
    }
    print "COMMIT;"
    print "CREATE INDEX t_grp ON t(grp, name);"
    print "CREATE INDEX t_name ON t(name);"
    print "SELECT count(*), sum(grp), sum(val), count(DISTINCT name) FROM t;"
    print "SELECT grp, count(*), min(name), max(name), sum(val) FROM t GROUP BY grp ORDER BY grp;"
    print "SELECT name, val FROM t WHERE grp = 42 ORDER BY name, id LIMIT 25;"
    print "SELECT a.grp, count(*) FROM t a JOIN t b ON b.id = a.id - 1 AND a.grp = b.grp GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 10;"
    print "SELECT substr(group_concat(note, \",\"), 1, 200) FROM (SELECT note FROM t ORDER BY val DESC, id LIMIT 500);"
    print "PRAGMA integrity_check;"
}' >"$tmp/load.sql"
prog_sqlite() {
    run "$1" sqlite3 db.sqlite <"$tmp/load.sql" >out
}
compare sqlite3 sqlite3 prog_sqlite

# ---- 5. git: 3000 small files, commit, gc, fsck --------------------------------
mkdir -p "$tmp/files"
awk -v dir="$tmp/files" 'BEGIN {
    for (i = 0; i < 3000; i++) {
        d = dir "/d" (i % 30)
        if (i < 30) system("mkdir -p " d)
        f = d "/file" i ".txt"
        for (j = 0; j <= i % 20; j++) print "line " j " of file " i " " (i * 7919 + j) % 10007 > f
        close(f)
    }
}'
export GIT_AUTHOR_NAME=regal GIT_AUTHOR_EMAIL=regal@example.invalid \
       GIT_COMMITTER_NAME=regal GIT_COMMITTER_EMAIL=regal@example.invalid \
       GIT_AUTHOR_DATE='2024-01-01T00:00:00Z' GIT_COMMITTER_DATE='2024-01-01T00:00:00Z' \
       GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
prog_git() {
    local mode=$1 rc
    cp -R "$tmp/files" repo || return 1
    cd repo || return 1
    run "$mode" git init -q -b main . || return 1
    run "$mode" git add -A || return 1
    run "$mode" git commit -q -m "3000 files" || return 1
    run "$mode" git gc -q --aggressive || return 1
    run "$mode" git fsck --full --strict >/dev/null
    rc=$?
    {
        run "$mode" git log --format=%T
        echo "fsck status $rc"
        run "$mode" git count-objects -v | grep -E '^(count|in-pack|packs):'
    } >../out
}
compare git git prog_git

# ---- 6. gcc: one large generated C file -----------------------------------------
awk 'BEGIN {
    print "#include <string.h>"
    for (i = 0; i < 20000; i++) {
        printf "static int t%d[%d] = {%d, %d};\n", i, 2 + i % 5, i, i % 17
        printf "int f%d(int x, const char *s) {\n", i
        printf "    int acc = x * %d + t%d[x & 1];\n", i % 13 + 1, i
        printf "    if (s && s[0] == %d) acc += (int)strlen(s);\n", 32 + i % 90
        printf "    return (acc & 3) ? acc ^ %d : acc + %d;\n", i, i % 101
        print "}"
    }
}' >"$tmp/big.c"
prog_gcc() {
    local mode=$1
    cp "$tmp/big.c" big.c || return 1
    run "$mode" gcc -O0 -c big.c -o big.o || return 1
    {
        run "$mode" size big.o
        run "$mode" nm big.o | cksum
    } >out
}
compare gcc gcc prog_gcc

# ---- 7. sort: ~30 MB of generated lines ---------------------------------------------
awk 'BEGIN {
    x = 7
    for (i = 0; i < 1000000; i++) {
        x = (x * 1103515245 + 12345) % 2147483648
        printf "%08x %s %d\n", x, substr("qwertyuiopasdfghjklzxcvbnm", 1 + x % 20, 1 + x % 7), i
    }
}' >"$tmp/lines.txt"
prog_sort() {
    local mode=$1
    run "$mode" sort -k2,2 -k1,1r "$tmp/lines.txt" >sorted || return 1
    run "$mode" sort -n -k3,3 sorted >resorted || return 1
    { cksum <sorted; cmp "$tmp/lines.txt" resorted && echo "round trip ok"; } >out
}
compare sort sort prog_sort

# ---- 8. tar + gzip of a generated tree ------------------------------------------------
mkdir -p "$tmp/tree"
awk -v dir="$tmp/tree" 'BEGIN {
    x = 3
    for (i = 0; i < 1500; i++) {
        d = dir "/a" (i % 10) "/b" (i % 37)
        if (i < 370) system("mkdir -p " d)
        f = d "/f" i ".dat"
        lines = 1 + i % 200
        for (j = 0; j < lines; j++) {
            x = (x * 1103515245 + 12345) % 2147483648
            print i, j, x, (x % 3 ? "repeated text repeated text" : "") > f
        }
        close(f)
    }
}'
find "$tmp/tree" -exec touch -h -d '2024-01-01 00:00:00' {} +
prog_tar() {
    local mode=$1
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    run "$mode" bash -c 'tar --sort=name --owner=0 --group=0 --numeric-owner -C "$1" -cf - tree |
                         gzip -6 >tree.tar.gz' _ "$tmp" || return 1
    {
        run "$mode" tar -tvzf tree.tar.gz
        run "$mode" gzip -dc tree.tar.gz | cksum
        cksum <tree.tar.gz
    } >out
}
if command -v gzip >/dev/null 2>&1; then
    compare tar+gzip tar prog_tar
else
    skip tar+gzip "not installed"
fi

[ "$n" = "$tests" ] || echo "# planned $tests tests, ran $n"
[ "$failed" = 0 ]
