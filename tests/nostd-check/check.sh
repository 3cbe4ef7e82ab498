#!/usr/bin/env bash
# Proves that pvm-core builds and links without std.
#
# 1. Checks that no dependency has a `std` feature enabled (hashbrown is
#    used with default-features = false), then builds tests/nostd-check, a
#    #![no_std] staticlib over pvm-core with its own panic handler and a
#    static bump allocator, with the `nostd` profile (panic = "abort").
# 2. Checks the archive holds no object of the std crate family and no symbol
#    from `std` (mangled legacy `_ZN3std…`/`…std..…`, v0 `…C…3std…`, or
#    `std::` once demangled).
# 3. Links it into a C program with the C compiler alone (no Rust linker, no
#    libstd) and runs it: pvm_nostd_run(10) must return 55, computed by the
#    PVM interpreter.
#
# Usage: tests/nostd-check/check.sh   (from anywhere; needs cargo, cc, binutils)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cc="${CC:-cc}"

say() { printf 'nostd-check: %s\n' "$*"; }
fail() {
    printf 'nostd-check: FAIL: %s\n' "$*" >&2
    exit 1
}

for tool in cargo "$cc" readelf ar awk timeout; do
    command -v "$tool" >/dev/null || fail "missing tool: $tool"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$root"

# --- 1. Features: no dependency may have a `std` feature turned on -----------
cargo tree -p pvm-nostd-check -e normal,features --target all --locked \
    -f '{p} [{f}]' --prefix none | sort -u >"$tmp/tree"
say "dependency graph (package [enabled features]):"
grep -v '^[a-z0-9_-]* feature ' "$tmp/tree" | sed 's/^/    /'
if grep -E '(feature "std")|[[,]std[],]' "$tmp/tree" >"$tmp/bad"; then
    fail "a dependency has its std feature enabled: $(tr '\n' ' ' <"$tmp/bad")"
fi
grep -q '^hashbrown ' "$tmp/tree" || fail "hashbrown not in the dependency graph: cannot check it"

say "building pvm-nostd-check (profile nostd, panic=abort) in $root"
cargo build -p pvm-nostd-check --profile nostd --locked

target_dir="${CARGO_TARGET_DIR:-$root/target}"
lib="$target_dir/nostd/libpvm_nostd_check.a"
[[ -f "$lib" ]] || fail "no staticlib at $lib"

# --- 2. The archive ----------------------------------------------------------
# 2a. Which Rust crates are in the archive.
# rustc names the members of a staticlib `<crate>-<hash>.<crate>.<cgu>.rcgu.o`.
ar t "$lib" >"$tmp/members"
sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)-[0-9a-f]\{16\}\..*\.rcgu\.o$/\1/p' "$tmp/members" \
    | sort -u >"$tmp/crates"
[[ -s "$tmp/crates" ]] || fail "could not read the crate list of $lib"
say "Rust crates linked into the staticlib: $(tr '\n' ' ' <"$tmp/crates")"
grep -qx pvm_core "$tmp/crates" || fail "pvm_core is not in the archive"
# The std facade and the crates only std pulls in.
forbidden='^(std|panic_unwind|panic_abort|unwind|std_detect|libc|addr2line|gimli|object|miniz_oxide|rustc_demangle|proc_macro|test)$'
if grep -Eq "$forbidden" "$tmp/crates"; then
    fail "std-only crates in the archive: $(grep -E "$forbidden" "$tmp/crates" | tr '\n' ' ')"
fi

# 2b. No symbol of std, defined or referenced.
# readelf, not nm: the precompiled core/alloc objects embed LLVM bitcode, and a
# GNU nm built with an older LLVM plugin reports "no symbols" for them.
# Legacy mangling: a path starting at std (`_ZN3std…`) or naming a std type
# inside generics (`…$LT$std..io..Error$GT$…`). v0 mangling: the crate root
# `C<disambiguator>_3std` / `C3std`, also as the instantiating crate at the
# end of a symbol. Demangled: a path element `std::`.
mangled_std='(_ZN3std[0-9])|([^A-Za-z0-9_]std\.\.)|(C(s[0-9A-Za-z]*_)?3std([0-9A-Z_.]|$))'
demangled_std='(^|[^A-Za-z0-9_:])std::'
# Self-test of the patterns, so a broken regex cannot pass silently.
for sym in _ZN3std2io5stdio6_print17h0123456789abcdefE \
    '_ZN4core3ptr46drop_in_place$LT$std..io..error..Error$GT$17h0123456789abcdefE' \
    _RNvNtCs1234abcd_3std2io6_print _RNvNtC3std2io6_print \
    _RINvMNtCsgEmfK2I1SDS_4core3stre12trim_matchesNvMNtNtB5_4char7methodsc13is_whitespaceECsjrHSEGnQ3l9_3std; do
    grep -Eq "$mangled_std" <<<"$sym" || fail "self-test: pattern misses $sym"
done
for sym in _ZN4core3fmt5write17h0123456789abcdefE _RNvNtCsgEmfK2I1SDS_4core3fmt5write \
    _ZN15pvm_nostd_check3run17h0123456789abcdefE _RNvCs1_13stdout_helper3foo \
    _RNvCs1_24rustc_std_workspace_core3foo; do
    if grep -Eq "$mangled_std" <<<"$sym"; then fail "self-test: pattern matches $sym"; fi
done
grep -Eq "$demangled_std" <<<'std::io::stdio::_print' || fail "self-test: demangled pattern"
grep -Eq "$demangled_std" <<<'core::ptr::drop_in_place<std::io::Error>' \
    || fail "self-test: demangled pattern (generic)"
if grep -Eq "$demangled_std" <<<'pvm_nostd_check::run'; then fail "self-test: demangled pattern"; fi

readelf -Ws -W "$lib" >"$tmp/syms" 2>"$tmp/readelf.err" || fail "readelf failed: $(head -3 "$tmp/readelf.err")"
readelf -Ws -W -C "$lib" >"$tmp/syms-demangled" 2>/dev/null || fail "readelf -C failed"
# The symbol tables must really have been read, core's and pvm-core's included.
grep -q 'core::' "$tmp/syms-demangled" || fail "readelf shows no symbol of core: cannot check"
grep -q 'pvm_core::' "$tmp/syms-demangled" || fail "readelf shows no symbol of pvm_core: cannot check"
if grep -E "$mangled_std" "$tmp/syms" >"$tmp/bad"; then
    head -20 "$tmp/bad" >&2
    fail "the staticlib has std symbols ($(wc -l <"$tmp/bad") lines, first 20 above)"
fi
if grep -E "$demangled_std" "$tmp/syms-demangled" >"$tmp/bad"; then
    head -20 "$tmp/bad" >&2
    fail "the staticlib has std symbols once demangled ($(wc -l <"$tmp/bad") lines)"
fi
# Symbols the archive needs from outside: they must all be C-level (libc
# mem*/str*, the C toolchain's unwinder stub); a Rust-mangled or __rust_*
# symbol here would be a missing Rust crate such as std.
awk '$1 ~ /^[0-9]+:$/ && NF >= 8 {
        if ($7 == "UND") und[$8] = 1
        else if ($5 == "GLOBAL" || $5 == "WEAK") def[$8] = 1
    }
    END { for (n in und) if (!(n in def)) print n }' "$tmp/syms" | sort >"$tmp/external"
grep -Eq '^pvm_nostd_run$' <(awk '$1 ~ /^[0-9]+:$/ && $4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" {print $8}' "$tmp/syms") \
    || fail "pvm_nostd_run is not exported"
if grep -E '^(_ZN|_R[A-Z]|__rust|__rdl|__rg_|rust_)' "$tmp/external" >"$tmp/bad"; then
    fail "the staticlib needs Rust symbols it does not define: $(tr '\n' ' ' <"$tmp/bad")"
fi
say "no std crate and no std symbol in $(basename "$lib") ($(grep -c '^ *[0-9]*:' "$tmp/syms") symbols checked)"
say "external symbols it needs (all C-level): $(tr '\n' ' ' <"$tmp/external")"

# --- 3. Link with the C compiler and run --------------------------------------
# Only the C runtime is on the link line: any std symbol the archive needed
# would be an undefined reference here.
"$cc" "$here/main.c" "$lib" -o "$tmp/nostd-check" \
    || fail "linking the staticlib into a C program failed"
say "linked $(basename "$lib") into a C program with $cc (no libstd on the link line)"
# The panic handler spins, so a panic would hang: bound the run.
if ! timeout 120 "$tmp/nostd-check"; then
    fail "the C program failed (wrong result, or a panic/timeout inside the staticlib)"
fi

say "PROVED: pvm-core (with hashbrown/foldhash) builds as #![no_std] + alloc with panic=abort,"
say "        links into a C program without libstd, and its interpreter computes"
say "        sum(1..=10) = 55 over PagedMemory in a static 1 MiB heap."
