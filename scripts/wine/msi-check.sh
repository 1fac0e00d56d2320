#!/usr/bin/env bash
# The Windows Installer package (issue 17) under Wine's msiexec. Prints the package's size and
# tables, writes a small settings file at C:\ProgramData\akvsync\settings.json, installs an
# older release (the same .wxs at version 0.0.0 around the package's own binary), then
# upgrades it with `msiexec /i <package> /qn` and checks: the older product gone, akvsync.exe
# under Program Files, the `akvsync` service registered to run `service run --settings ...`
# as LocalSystem with automatic start and started again by the package, the event log
# source. Then `msiexec /x <package> /qn`: binary, service and event log source gone, the
# settings left alone. Needs wixl and msitools (msiinfo, msiextract). Run after
# scripts/wine/setup.sh's environment is in place:
#   scripts/wine/msi-check.sh dist/akvsync-<version>-x64.msi
set -euo pipefail
msi="$(realpath "${1:?usage: msi-check.sh akvsync-<version>-x64.msi}")"
wine="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER:-/usr/lib/wine/wine64}"
wxs="$(cd "$(dirname "$0")/../.." && pwd)/packaging/windows/akvsync.wxs"
c="$WINEPREFIX/drive_c"
work="$c/akvsync-msi-check"
exe="$c/Program Files/akvsync/akvsync.exe"
settings="$c/ProgramData/akvsync/settings.json"
products='HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall'
service_key='HKLM\SYSTEM\CurrentControlSet\Services\akvsync'
eventlog_key='HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\akvsync'

fail() {
  echo "msi-check: $*" >&2
  if [ -f "$work/msiexec.log" ]; then
    grep -aiE 'error|fail|return value 3' "$work/msiexec.log" | tail -20 >&2 || true
  fi
  exit 1
}
# reg.exe and sc.exe print CRLF lines (reg.exe its errors too, on stdout).
reg_query() { "$wine" reg query "$@" 2>/dev/null | tr -d '\r'; }
reg_exists() { "$wine" reg query "$1" >/dev/null 2>&1; }
service_state() { "$wine" sc query akvsync 2>/dev/null | tr -d '\r' | sed -n 's/.*STATE *: *[0-9]* *//p'; }
# Polls (every 0.25 s, up to 10 s) until the command succeeds.
eventually() {
  local _
  for _ in $(seq 1 40); do
    "$@" && return 0
    sleep 0.25
  done
  return 1
}
is_running() { [ "$(service_state)" = RUNNING ]; }
property() { msiinfo export "$1" Property | tr -d '\r' | sed -n "s/^$2\t//p"; }
# Whether the service's log shows $1 starts (sets $log).
started() {
  log="$(find "$c" -path '*/akvsync/akvsync.log' -size +0 | head -1)"
  [ -n "$log" ] && [ "$(grep -c 'akvsync started' "$log")" -eq "$1" ]
}
service_gone() { ! reg_exists "$service_key" && [ -z "$(service_state)" ]; }

echo "$(basename "$msi"): $(stat -c %s "$msi") bytes"
for table in File Component ServiceInstall ServiceControl Registry; do
  echo "  $table:"
  msiinfo export "$msi" "$table" | tail -n +4 | sed 's/^/    /'
done

rm -rf "$work"
# The service logs under its %ProgramData% (C:\users\Public in Wine's service environment,
# C:\ProgramData on Windows): drop earlier checks' logs so that the one found below is ours.
find "$c" -path '*/akvsync/akvsync.log*' -delete
mkdir -p "$work" "$(dirname "$settings")"
cp "$msi" "$work/akvsync.msi"
# The identity endpoint refuses connections: the service keeps running and retries.
cat > "$settings" <<'JSON'
{"secretsManagementSettings":{"pollingIntervalInS":"3600","observedCertificates":[
 {"url":"https://msi.vault.azure.net/secrets/x","certificateStoreName":"AkvsyncMsi"}]},
 "authenticationSettings":{"msiEndpoint":"http://127.0.0.1:9/metadata/identity/oauth2/token"}}
JSON

# Wine ends services.exe and every service a few seconds after its last ordinary process
# exits, and a new session's services.exe starts automatic services itself. A cmd.exe
# reading a pipe that a `sleep` holds open keeps one session for the whole check, so that a
# RUNNING service below is the one the package's StartServices started, still running. (Our
# shell must not hold the pipe: the Wine processes it starts would inherit it.)
mkfifo "$work/keepalive"
"$wine" cmd <"$work/keepalive" >/dev/null 2>&1 &
keepalive=$!
sleep 3600 >"$work/keepalive" &
holder=$!
code="" older_code="" passed=""
finish() {
  if [ -z "$passed" ]; then # leave no product behind for the next run
    for product in $code $older_code; do "$wine" msiexec /x "$product" /qn >/dev/null 2>&1 || true; done
  fi
  kill "$holder" 2>/dev/null || true
  wait "$keepalive" 2>/dev/null || true
  rm -rf "$work"
}
trap finish EXIT

# An older release to upgrade from: the same .wxs (same UpgradeCode) at version 0.0.0 with
# the binary extracted from the package under test.
version="$(property "$msi" ProductVersion)"
code="$(property "$msi" ProductCode)"
[ "$version" != 0.0.0 ] || fail "version 0.0.0 leaves no older version to upgrade from"
msiextract -C "$work/older" "$msi" >/dev/null
(cd "$work/older/akvsync" && wixl -a x64 -D Version=0.0.0 -D Exe=akvsync.exe -o "$work/older.msi" "$wxs")
older_code="$(property "$work/older.msi" ProductCode)"
"$wine" msiexec /i 'C:\akvsync-msi-check\older.msi' /qn /l*v 'C:\akvsync-msi-check\msiexec.log' \
  || fail "msiexec /i (older, 0.0.0) failed"
eventually is_running || fail "the older package did not start the service ($(service_state))"
eventually started 1 || fail "the service logged no start"
echo "installed 0.0.0 $older_code: service RUNNING"

started=$SECONDS
"$wine" msiexec /i 'C:\akvsync-msi-check\akvsync.msi' /qn /l*v 'C:\akvsync-msi-check\msiexec.log' \
  || fail "msiexec /i failed"
echo "upgraded to $version $code in $((SECONDS - started))s"
! reg_exists "$products\\$older_code" || fail "the older product is still installed"
reg_exists "$products\\$code" || fail "the product is not registered"
[ -s "$exe" ] || fail "akvsync.exe is not under Program Files"
echo "binary: ${exe#"$c/"} ($(stat -c %s "$exe") bytes)"

config="$(reg_query "$service_key")"
echo "$config" | grep -E 'ImagePath|ObjectName|Start|DisplayName' | sed 's/^ */  /'
image_path="$(echo "$config" | sed -n 's/^ *ImagePath *REG[A-Z_]* *//p')"
# Windows Installer quotes the key file's path in ImagePath; Wine 8.0's msi does not.
case "$image_path" in
  *'\Program Files\akvsync\akvsync.exe'*' service run --settings "C:\ProgramData\akvsync\settings.json"') ;;
  *) fail "ImagePath is not akvsync.exe service run --settings ...: $image_path" ;;
esac
echo "$config" | grep -Eq 'ObjectName +REG_SZ +LocalSystem$' || fail "the service does not run as LocalSystem"
echo "$config" | grep -Eq 'Start +REG_DWORD +0x2$' || fail "the service does not start automatically"
echo "$config" | grep -Fq 'akvsync (Azure Key Vault certificates)' || fail "wrong display name"

eventually is_running || fail "the package did not start the service ($(service_state))"
sleep 2
is_running || fail "the service stopped after starting ($(service_state))"
# Once by each package: the upgrade stopped the older one's and started its own.
started 2 || fail "the service did not start once per package: $(cat "$log")"
echo "service: RUNNING, started again by the package (log: ${log#"$c/"})"

events="$(reg_query "$eventlog_key")"
echo "$events" | grep -E 'EventMessageFile|TypesSupported' | sed 's/^ */  /'
echo "$events" | grep -Eiq 'EventMessageFile +REG_SZ +C:\\windows\\system32\\EventCreate.exe$' \
  || fail "no event log source with EventCreate.exe as its message file"
echo "$events" | grep -Eq 'TypesSupported +REG_DWORD +0x7$' || fail "TypesSupported is not 7"

started=$SECONDS
"$wine" msiexec /x 'C:\akvsync-msi-check\akvsync.msi' /qn /l*v 'C:\akvsync-msi-check\msiexec.log' \
  || fail "msiexec /x failed"
echo "uninstalled in $((SECONDS - started))s"
[ "$(grep -c 'stop requested by the service control manager' "$log")" -eq 2 ] \
  || fail "the uninstall did not stop the service"
[ ! -e "$exe" ] || fail "akvsync.exe is still installed"
[ ! -e "$c/Program Files/akvsync" ] || fail "the install directory is still there"
# DeleteServices marks the service for deletion; the SCM drops it once its process has ended.
eventually service_gone || fail "the service is still registered"
! reg_exists "$eventlog_key" || fail "the event log source is still there"
! reg_exists "$products\\$code" || fail "the product is still registered"
[ -s "$settings" ] || fail "the uninstall removed the settings"
echo "after uninstall: no product, binary, service or event log source; settings kept"
passed=yes
rm -rf "$(dirname "$settings")" "$(dirname "$log")"
