#!/usr/bin/env bash
# Build the XDP program ebpf/xdp_tapwatch.o from ebpf/xdp_tapwatch.c, reproducibly.
#
#   scripts/build-ebpf.sh           rebuild ebpf/xdp_tapwatch.o (the committed object)
#   scripts/build-ebpf.sh --check   rebuild into a temporary file and compare it byte
#                                   for byte with ebpf/xdp_tapwatch.o; exit 1 if they
#                                   differ, ebpf/xdp_tapwatch.o untouched
#
# Installs clang and libbpf-dev (and linux-libc-dev, the kernel's UAPI headers) from
# Debian's packages when they are missing; needs root for that only.
#
# Reproducible: clang runs from the repository root on relative file names, with
# -fdebug-compilation-dir=. (DW_AT_comp_dir is "."), so neither the BTF nor the DWARF
# holds the checkout's path; the only absolute paths in the object are the system
# headers' (/usr/include/...), the same on every Debian machine. The object depends
# on the compiler and header versions: the committed one was built with the versions
# that ebpf/README.md lists (Debian 12: clang 14.0.6, libbpf-dev 1.1.2,
# linux-libc-dev 6.1); another clang gives another object, and --check says so.
set -euo pipefail

ME=build-ebpf
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SRC=ebpf/xdp_tapwatch.c
OBJ=ebpf/xdp_tapwatch.o

check=0
case "${1-}" in
    "") ;;
    --check) check=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "$ME: unknown argument $1 (usage: $0 [--check])" >&2; exit 2 ;;
esac

# Debian multiarch directory of the kernel's asm/ headers (x86_64-linux-gnu here).
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine 2>/dev/null \
    || echo "$(uname -m)-linux-gnu")

install_deps() {
    local missing=()
    command -v clang >/dev/null 2>&1 || missing+=(clang)
    [ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
    [ -f /usr/include/linux/bpf.h ] && [ -f "/usr/include/$MULTIARCH/asm/types.h" ] \
        || missing+=(linux-libc-dev)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "$ME: missing ${missing[*]}; run as root to install them with apt-get" >&2
        exit 1
    fi
    echo "$ME: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
install_deps

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
TOOLCHAIN="$(clang --version | head -n1); libbpf-dev $(pkg_version libbpf-dev);\
 linux-libc-dev $(pkg_version linux-libc-dev)"

# -target bpfel: little-endian BPF whatever the build host (what "-target bpf" means
# on x86_64 and arm64). -mcpu=v3: 32-bit jumps and ALU (kernel 5.1 and later; the
# program needs 5.3 for bpf_redirect_map's fallback action anyway). -g: the BTF
# (.BTF, .BTF.ext) that aya and libbpf need for the BTF-defined maps.
CFLAGS=(-O2 -g -target bpfel -mcpu=v3
    -Wall -Wextra -Werror
    -fdebug-compilation-dir=. "-fdebug-prefix-map=$ROOT=."
    -I "/usr/include/$MULTIARCH")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twebpf.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

clang "${CFLAGS[@]}" -c "$SRC" -o "$TMP/xdp_tapwatch.o"

# The build directory must leave no trace in the object.
if grep -aqF "$ROOT" "$TMP/xdp_tapwatch.o" || grep -aqF "$TMP" "$TMP/xdp_tapwatch.o"; then
    echo "$ME: the object holds a machine path ($ROOT or $TMP); not reproducible" >&2
    exit 1
fi

new_sum=$(sha256sum "$TMP/xdp_tapwatch.o" | cut -d' ' -f1)
if [ "$check" -eq 1 ]; then
    if [ ! -f "$OBJ" ]; then
        echo "$ME: --check: $OBJ is missing; run $0 and commit it" >&2
        exit 1
    fi
    if cmp -s "$TMP/xdp_tapwatch.o" "$OBJ"; then
        echo "$ME: $OBJ matches a rebuild from $SRC (sha256 $new_sum; $TOOLCHAIN)"
        exit 0
    fi
    old_sum=$(sha256sum "$OBJ" | cut -d' ' -f1)
    {
        echo "$ME: $OBJ differs from a rebuild of $SRC."
        echo "  committed: sha256 $old_sum"
        echo "  rebuilt:   sha256 $new_sum ($TOOLCHAIN)"
        echo "  Either the source or ebpf/xdp_tapwatch.h changed without rebuilding the"
        echo "  object (run $0 and commit $OBJ), or this toolchain is not the one in"
        echo "  ebpf/README.md (the object is reproducible only with the same clang and"
        echo "  headers)."
    } >&2
    exit 1
fi

mv "$TMP/xdp_tapwatch.o" "$OBJ"
chmod 0644 "$OBJ"
echo "$ME: built $OBJ ($(stat -c %s "$OBJ") bytes, sha256 $new_sum; $TOOLCHAIN)"
