#!/usr/bin/env bash
# Packaging check: regal used from outside its tree, the two ways the README
# promises.  TAP on stdout, details of a failure as "# " lines.
#
#   1  meson install into a temporary prefix; an outside program built with
#      `cc $(pkg-config --cflags --libs regal)` runs against the installed
#      library, and linked with each static library; regal-malloc's .pc
#      works; headers, shared and static libraries installed; sonames carry
#      the major version.
#   2  an outside meson project with regal in subprojects/ (a copy of the
#      source tree) finds it with dependency('regal', fallback: ...), builds
#      the same program and runs it.
#
# usage: check.sh SOURCE_DIR
set -uo pipefail

src=$(cd "${1:?usage: check.sh SOURCE_DIR}" && pwd)
cc=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/regal-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log
failed=

# step DESCRIPTION COMMAND...: runs COMMAND with its output in the log; on
# failure, says what failed and shows the end of the log.
step() {
    local what=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "# failed: $what"
        tail -n 25 "$log" | sed 's/^/#   /'
        failed=1
        return 1
    fi
}

# check DESCRIPTION TEST-COMMAND...: a check without a log.
check() {
    local what=$1
    shift
    "$@" || {
        echo "# failed: $what"
        failed=1
    }
}

# The outside program: arena API and version macros, nothing else.
cat >"$tmp/outside.c" <<'C'
#include <regal.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    regal_arena_config cfg = {.name = "outside", .limit = 0, .flags = 0};
    regal_arena *a = regal_arena_create(&cfg);
    if (a == NULL)
        return 1;
    char *s = regal_alloc(a, 64);
    if (s == NULL)
        return 1;
    snprintf(s, 64, "regal %d.%d.%d", REGAL_VERSION_MAJOR, REGAL_VERSION_MINOR,
             REGAL_VERSION_PATCH);
    int owned = regal_arena_of(s) == a;
    printf("outside: %s, block owned by its arena: %s\n", s, owned ? "yes" : "no");
    regal_free(s);
    regal_arena_destroy(a);
    return owned ? 0 : 1;
}
C

echo "1..2"

# ---- 1: meson install, then pkg-config --------------------------------
prefix=$tmp/prefix
export PKG_CONFIG_PATH=$prefix/lib/x86_64-linux-gnu/pkgconfig:$prefix/lib/pkgconfig
bdir=$tmp/build-pkg-install
test1() {
    step "meson setup (install build)" meson setup "$bdir" "$src" --prefix="$prefix" \
        -Dtests=false -Dexamples=false || return
    step "meson install" meson install -C "$bdir" || return
    step "pkg-config regal" pkg-config --exists --print-errors regal || return
    local libdir
    libdir=$(pkg-config --variable=libdir regal)
    echo "# libdir $libdir"
    check "regal.h installed" test -f "$(pkg-config --variable=includedir regal)/regal.h"
    for f in libregal.so libregal.a libregal-malloc.so libregal-malloc.a; do
        check "$f installed in $libdir" test -e "$libdir/$f"
    done
    for lib in libregal libregal-malloc; do
        local soname
        soname=$(readelf -d "$libdir/$lib.so" 2>/dev/null | grep SONAME)
        echo "# $lib.so: ${soname##*Library soname: }"
        check "$lib.so soname carries the major version" \
            grep -Eq "\[$lib\.so\.[0-9]+\]" <<<"$soname"
    done
    local flags
    flags=$(pkg-config --libs regal-malloc)
    check "pkg-config --libs regal-malloc gives -lregal-malloc (got '$flags')" \
        grep -q -- '-lregal-malloc' <<<"$flags"
    # shellcheck disable=SC2046 # pkg-config's words are separate arguments
    step "cc outside.c \$(pkg-config --cflags --libs regal)" \
        "$cc" -std=gnu11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/outside" "$tmp/outside.c" \
        $(pkg-config --cflags --libs regal) || return
    check "outside program loads the installed libregal" \
        grep -q "=> $libdir/libregal.so" <<<"$(LD_LIBRARY_PATH=$libdir ldd "$tmp/outside")"
    step "outside program runs" env LD_LIBRARY_PATH="$libdir" "$tmp/outside" || return
    echo "# $(cat "$log")"
    # The static libraries: the program with libregal.a, and with
    # libregal-malloc.a (which also makes regal the program's malloc).
    local a
    for a in libregal libregal-malloc; do
        [ -e "$libdir/$a.a" ] || continue
        # shellcheck disable=SC2046
        step "cc outside.c $a.a" "$cc" -std=gnu11 -o "$tmp/outside-$a" "$tmp/outside.c" \
            $(pkg-config --cflags regal) "$libdir/$a.a" -pthread &&
            step "outside program linked with $a.a runs" "$tmp/outside-$a" &&
            echo "# $a.a: $(cat "$log")"
    done
}
test1
if [ -z "$failed" ]; then
    echo "ok 1 - installed + pkg-config"
else
    echo "not ok 1 - installed + pkg-config"
fi
unset PKG_CONFIG_PATH

# ---- 2: meson subproject ----------------------------------------------
failed=
proj=$tmp/outside-project
test2() {
    mkdir -p "$proj/subprojects/regal"
    cp "$tmp/outside.c" "$proj/"
    # The source tree without build directories and git metadata.
    if ! tar -C "$src" --exclude='./build*' --exclude='./.git' -cf - . |
        tar -C "$proj/subprojects/regal" -xf -; then
        check "copy of the source tree into subprojects/regal" false
        return
    fi
    cat >"$proj/meson.build" <<'MESON'
project('outside', 'c', default_options: ['c_std=gnu11', 'warning_level=3', 'werror=true'])
regal = dependency('regal', fallback: ['regal', 'regal_dep'])
executable('outside', 'outside.c', dependencies: regal)
MESON
    # --force-fallback-for: an installed regal must not stand in for the
    # subproject.
    step "meson setup (outside project)" \
        meson setup "$proj/build-pkg" "$proj" --force-fallback-for=regal || return
    step "ninja (outside project)" ninja -C "$proj/build-pkg" || return
    check "outside program loads the subproject's libregal" \
        grep -q "=> $proj/build-pkg/subprojects/regal/libregal.so" \
        <<<"$(ldd "$proj/build-pkg/outside")"
    step "outside program runs" "$proj/build-pkg/outside" || return
    echo "# $(cat "$log")"
}
test2
if [ -z "$failed" ]; then
    echo "ok 2 - meson subproject"
else
    echo "not ok 2 - meson subproject"
fi
