#!/usr/bin/env bash
# Creates a private, headless Wine prefix for the Windows-target tests (issue 6) and prints
# the environment to use it: `eval "$(scripts/wine/setup.sh target/wine)"`.
# Builds the ProcessPrng shim (Debian 12's Wine 8.0 lacks bcryptprimitives.dll, which Rust's
# std imports) with mingw and copies it into the prefix's system32. Idempotent.
set -euo pipefail
prefix="$(realpath -m "${1:?usage: setup.sh WINEPREFIX}")"
here="$(cd "$(dirname "$0")" && pwd)"
export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
if [ ! -f "$prefix/system.reg" ]; then
  mkdir -p "$prefix"
  wineboot --init >/dev/null 2>&1 || wine64 wineboot --init >/dev/null 2>&1
  wineserver -w
fi
dll="$prefix/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$dll" ] || [ "$here/processprng-shim.c" -nt "$dll" ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -o "$dll" "$here/processprng-shim.c" -lbcrypt >&2
fi
runner=/usr/lib/wine/wine64
[ -x "$runner" ] || runner="$(command -v wine64 || command -v wine)"
echo "export WINEPREFIX='$prefix' WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml=' DISPLAY="
echo "export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER='$runner'"
