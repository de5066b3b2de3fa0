#!/usr/bin/env bash
# Build every Ferry guest program and conformance test, reproducibly.
#   bash guest-programs/build.sh [OUTDIR]      (default: guest-programs/build)
# Produces OUTDIR/<name>.elf for guest-programs/*.c and OUTDIR/tests/<name>.elf
# for guest-programs/tests/*.S. Same bytes on every run, from any checkout path.
set -euo pipefail
export LC_ALL=C
export TZ=UTC
export SOURCE_DATE_EPOCH=0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE/build}"

CC="${CC:-clang}"
LD="${LD:-ld.lld}"
for tool in "$CC" "$LD"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build.sh: '$tool' not found on PATH; install clang and lld (Debian: apt-get install -y clang lld)" >&2
    exit 1
  fi
done

mkdir -p "$OUT/tests"
OUT="$(cd "$OUT" && pwd)"
# start clean so a renamed or deleted source leaves no stale ELF behind
rm -f "$OUT"/*.elf "$OUT"/tests/*.elf
# the bytes depend on the toolchain version: record it next to the ELFs
{ "$CC" --version | head -n 1; "$LD" --version | head -n 1; } > "$OUT/toolchain.txt"
OBJ="$(mktemp -d)"
trap 'rm -rf "$OBJ"' EXIT

# Sources are passed relative to $HERE and the build runs inside $HERE, and
# the prefix map hides any absolute path that still slips through.
cd "$HERE"
# clang 14 predates the separate Zicsr/Zifencei names: rv32im includes csr* and fence.i.
ARCH=(--target=riscv32-unknown-elf -march=rv32im -mabi=ilp32 -mno-relax)
CFLAGS=("${ARCH[@]}" -O2 -g0 -ffreestanding -fno-builtin -nostdlib -fno-pic -mcmodel=medany
  -fno-common -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables
  -fno-unwind-tables -fno-ident -Wall -Wextra -Werror -std=c11
  "-ffile-prefix-map=$HERE=." "-fdebug-prefix-map=$HERE=." -Icommon)
ASFLAGS=("${ARCH[@]}" -g0 "-ffile-prefix-map=$HERE=." "-fdebug-prefix-map=$HERE=." -Icommon -Itests)
LDFLAGS=(-m elf32lriscv -nostdlib -static --build-id=none --no-relax --gc-sections -T common/link.ld)

# common runtime
"$CC" "${ASFLAGS[@]}" -c common/start.S -o "$OBJ/start.o"
"$CC" "${CFLAGS[@]}" -c common/libc.c -o "$OBJ/libc.o"

n=0
# programs: one .c each, sorted
while IFS= read -r src; do
  name="$(basename "$src" .c)"
  "$CC" "${CFLAGS[@]}" -c "$src" -o "$OBJ/$name.o"
  "$LD" "${LDFLAGS[@]}" "$OBJ/start.o" "$OBJ/$name.o" "$OBJ/libc.o" -o "$OUT/$name.elf"
  n=$((n + 1))
done < <(find . -maxdepth 1 -name '*.c' -printf '%P\n' | sort)

# conformance tests: one .S each, self-contained (tests/macros.h), sorted
while IFS= read -r src; do
  name="$(basename "$src" .S)"
  "$CC" "${ASFLAGS[@]}" -c "tests/$src" -o "$OBJ/test-$name.o"
  "$LD" "${LDFLAGS[@]}" "$OBJ/test-$name.o" -o "$OUT/tests/$name.elf"
  n=$((n + 1))
done < <(find tests -maxdepth 1 -name '*.S' -printf '%P\n' | sort)

echo "build.sh: built $n ELF files into $OUT"
