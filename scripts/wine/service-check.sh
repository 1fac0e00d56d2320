#!/usr/bin/env bash
# The Windows service under Wine's service control manager (issue 6): `akvsync.exe service
# install` (with the event log source, issue 15), `sc start`, `sc stop` (must stop within
# seconds), the log under %ProgramData%, `service uninstall` (source removed too); then the
# event log reports of `akvsync.exe run` (Wine's ReportEventW stores nothing but prints each
# call and its text on its debug channels). Run after scripts/wine/setup.sh's environment is in place:
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
source_key='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\akvsync'
"$wine" reg query "$source_key" 2>/dev/null \
  | grep -Eq 'EventMessageFile +REG_EXPAND_SZ +%SystemRoot%\\System32\\EventCreate.exe' \
  || { echo "service install registered no event log source"; "$wine" reg query "$source_key" || true; exit 1; }
echo "event log source registered (EventCreate.exe renders its events)"
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
if "$wine" reg query "$source_key" >/dev/null 2>&1 \
  && "$wine" reg query "$source_key" 2>/dev/null | grep -q EventMessageFile; then
  echo "service uninstall left the event log source"; exit 1
fi
echo "service uninstall removed the event log source"

# Warnings and errors of the service go to the event log: the certificate cannot get a token
# (nothing listens at the identity endpoint), so event 100 (a certificate is not current).
events="$work/events.log"
WINEDEBUG="-all,warn+eventlog,err+eventlog,fixme+advapi" AKVSYNC_LOG=warn \
  "$wine" "$exe" run --settings 'C:\akvsync-service-check\settings.json' \
  --state-dir 'C:\akvsync-service-check\run-state' 2>"$events" &
runner=$!
reported=""
for _ in $(seq 1 240); do
  if grep -q 'ReportEventW.*,0x00000064,' "$events" 2>/dev/null; then reported=yes; break; fi
  sleep 0.25
done
kill "$runner" 2>/dev/null || true
wait "$runner" 2>/dev/null || true
[ -n "$reported" ] || { echo "no event 100 reported within 60 s:"; tail -20 "$events"; exit 1; }
grep -m1 'ReportEventW.*,0x00000064,' "$events"
grep -m1 'eventlog:ReportEventW L"not current' "$events" \
  || { echo "event 100 without its text"; exit 1; }
