#!/usr/bin/env bash
# Conformance of the emulator (crates/kvemu) with the official Python Azure SDK:
# azure-keyvault-secrets, azure-keyvault-certificates and azure-identity from PyPI,
# installed into target/py-venv, run set/import/get/list against `kvemu serve`,
# with ManagedIdentityCredential (via AZURE_POD_IDENTITY_AUTHORITY_HOST), the test
# CA passed as connection_verify, real-shaped vault hosts and challenge
# verification left on.
#
# Usage: scripts/ci-python-sdk.sh [path/to/kvemu]
#   default binary: target/release/kvemu (built with `cargo build -p kvemu --release` if missing)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KVEMU="${1:-${KVEMU_BIN:-$ROOT/target/release/kvemu}}"
VENV="$ROOT/target/py-venv"

if [ ! -x "$KVEMU" ]; then
  (cd "$ROOT" && cargo build -p kvemu --release)
  KVEMU="$ROOT/target/release/kvemu"
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian splits venv out of python3.
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV"
  fi
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  azure-keyvault-secrets azure-keyvault-certificates azure-identity
"$VENV/bin/python" -m pip list 2>/dev/null | grep -Ei '^(azure-keyvault-secrets|azure-keyvault-certificates|azure-identity|azure-core) ' || true

STATE="$(mktemp -d)"
# Page size 2 so that every list pages through nextLink.
"$KVEMU" serve --listen 127.0.0.1:0 --state-dir "$STATE" --seed --page-size 2 \
  --identity 0d2a3c41-5e6f-4a7b-8c9d-0e1f2a3b4c5d 2>"$STATE/kvemu.log" &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$STATE"
}
trap cleanup EXIT

for _ in $(seq 1 200); do
  [ -f "$STATE/endpoints.json" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$STATE/kvemu.log"; exit 1; }
  sleep 0.05
done
[ -f "$STATE/endpoints.json" ] || { echo "kvemu did not write endpoints.json"; cat "$STATE/kvemu.log"; exit 1; }

"$VENV/bin/python" "$ROOT/scripts/kvemu_python_sdk.py" "$STATE/endpoints.json"
