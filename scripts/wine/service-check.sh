#!/usr/bin/env bash
# The Windows service under Wine's service control manager (issue 6): `akvsync.exe service
# install`, `sc start`, `sc stop` (must stop within seconds), the log under %ProgramData%,
# `service uninstall`. Run after scripts/wine/setup.sh's environment is in place:
#   scripts/wine/service-check.sh target/x86_64-pc-windows-gnu/debug/akvsync.exe
set -euo pipefail
exe="${1:?usage: service-check.sh akvsync.exe}"
wine="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER:-/usr/lib/wine/wine64}"
work="$WINEPREFIX/drive_c/akvsync-service-check"
mkdir -p "$work"
cat > "$work/settings.json" <<'JSON'
{"secretsManagementSettings":{"pollingIntervalInS":"3600","observedCertificates":[
 {"url":"https://svc.vault.azure.net/secrets/x","certificateStoreName":"AkvsyncSvc"}]},
 "authenticationSettings":{"msiEndpoint":"http://127.0.0.1:9/metadata/identity/oauth2/token"}}
JSON
"$wine" "$exe" service uninstall >/dev/null 2>&1 || true
"$wine" "$exe" service install --settings 'C:\akvsync-service-check\settings.json' \
  --state-dir 'C:\akvsync-service-check\state'
"$wine" sc start akvsync >/dev/null
running=""
for _ in $(seq 1 40); do
  if "$wine" sc query akvsync | grep -q 'RUNNING'; then running=yes; break; fi
  sleep 0.25
done
[ -n "$running" ] || { echo "service did not reach RUNNING"; exit 1; }
sleep 1
start=$(date +%s%N)
"$wine" sc stop akvsync >/dev/null
stopped=""
for _ in $(seq 1 40); do
  if "$wine" sc query akvsync | grep -q 'STOPPED'; then stopped=yes; break; fi
  sleep 0.25
done
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ -n "$stopped" ] || { echo "service did not stop within 10 s"; exit 1; }
echo "service stopped ${took_ms} ms after sc stop"
log="$(find "$WINEPREFIX/drive_c" -path '*akvsync/akvsync.log' -size +0 | head -1)"
[ -n "$log" ] && grep -q 'stop requested by the service control manager' "$log" \
  || { echo "no stop request in the service log"; exit 1; }
echo "service log: ${log#"$WINEPREFIX/"}"
"$wine" "$exe" service uninstall
