#!/usr/bin/env bash
# The extension handler on Windows under Wine's service control manager (issue 7): plays the
# guest agent in a handler directory inside the prefix — `handler install`, `handler enable`
# (registers and starts the `akvsync` service running `akvsync handler service`; the service,
# not enable, writes 0.status), a second enable with new settings (a restart: Windows has no
# SIGHUP; the service writes 1.status), `handler disable` (service stopped), `handler
# uninstall` (service gone). The identity endpoint is a local stub that refuses every token
# request at once (400): the certificate's failure must show in the service's substatus. Run after scripts/wine/setup.sh's environment is in place:
#   scripts/wine/handler-check.sh target/x86_64-pc-windows-gnu/debug/akvsync.exe
set -euo pipefail
exe="$(realpath "${1:?usage: handler-check.sh akvsync.exe}")"
wine="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER:-/usr/lib/wine/wine64}"
name="Akvsync.KeyVault"
work="$WINEPREFIX/drive_c/akvsync-handler-check"
win_work='C:\akvsync-handler-check'
handler="$work/$name-1.0.0"
win_handler="$win_work\\$name-1.0.0"
rm -rf "$work"
# An identity endpoint that answers every request with 400 (a final error, not retried).
port_file="$(mktemp)"
python3 - "$port_file" <<'PY' &
import http.server, sys
class Refuse(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"error":"invalid_request","error_description":"handler-check refuses tokens"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
open(sys.argv[1], "w").write(str(server.server_port))
server.serve_forever()
PY
stub=$!
trap 'kill $stub 2>/dev/null || true; rm -f "$port_file"' EXIT
for _ in $(seq 1 40); do [ -s "$port_file" ] && break; sleep 0.25; done
port="$(cat "$port_file")"
mkdir -p "$handler/config" "$handler/status" "$work/log"
cat > "$handler/HandlerEnvironment.json" <<JSON
[{"name":"$name","version":1.0,"handlerEnvironment":{
  "logFolder":"${win_work//\\/\\\\}\\\\log",
  "configFolder":"${win_handler//\\/\\\\}\\\\config",
  "statusFolder":"${win_handler//\\/\\\\}\\\\status",
  "heartbeatFile":"${win_handler//\\/\\\\}\\\\heartbeat.log"}}]
JSON
settings() { # $1: sequence number, $2: secret name
  cat > "$handler/config/$1.settings" <<JSON
{"runtimeSettings":[{"handlerSettings":{"protectedSettings":null,"publicSettings":{
 "secretsManagementSettings":{"pollingIntervalInS":"3600","certificateStoreName":"AkvsyncHandler",
  "certificateStoreLocation":"LocalMachine","observedCertificates":["https://handlerkv.vault.azure.net/secrets/$2"]},
 "authenticationSettings":{"msiEndpoint":"http://127.0.0.1:$port/metadata/identity/oauth2/token"}}}}]}
JSON
}
handler_cmd() { # $1: operation, $2: sequence number
  ( cd "$handler" && AZURE_GUEST_AGENT_EXTENSION_PATH="$win_handler" \
      AZURE_GUEST_AGENT_EXTENSION_VERSION=1.0.0 ConfigSequenceNumber="$2" \
      "$wine" "$exe" handler "$1" --state-dir "$win_work\\state" )
}
service_state() { "$wine" sc query akvsync 2>/dev/null | grep -oE 'RUNNING|STOPPED|PENDING' | head -1 || true; }
wait_for_text() { # $1: path the service writes, $2: text it must come to contain
  for _ in $(seq 1 240); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.25; done
  echo "$1 did not come to mention $2 within 60 s:"; cat "$1" 2>/dev/null || true; return 1
}

"$wine" "$exe" service uninstall >/dev/null 2>&1 || true
settings 0 first-cert
handler_cmd install 0
handler_cmd enable 0
[ "$(service_state)" = RUNNING ] || { echo "enable did not leave the service RUNNING"; exit 1; }
wait_for_text "$handler/status/0.status" 'first-cert'
echo "0.status written by the service: $(grep -oE '"status": *"[a-z]+"' "$handler/status/0.status" | head -1)"

settings 1 second-cert
handler_cmd enable 1
[ "$(service_state)" = RUNNING ] || { echo "the second enable did not leave the service RUNNING"; exit 1; }
wait_for_text "$handler/status/1.status" 'second-cert'
echo "1.status written by the restarted service"

handler_cmd disable 1
[ "$(service_state)" = STOPPED ] || { echo "disable did not stop the service"; exit 1; }
echo "disable stopped the service"
handler_cmd uninstall 1
if "$wine" sc query akvsync >/dev/null 2>&1; then echo "uninstall left the service registered"; exit 1; fi
echo "uninstall removed the service"
