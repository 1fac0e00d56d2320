#!/usr/bin/env python3
"""Footprint of the agent (issue 5 budgets): stripped binary size and the resident memory of
`akvsync run` with N observed certificates, measured 2 s after its initial sync, against
`kvemu serve` on loopback. Standard library only.

Usage: scripts/footprint.py [N ...]   (default: 1 100 1000)
Needs target/release/akvsync and target/release/kvemu (cargo build --release -p akvsync -p kvemu).
"""
import http.client, json, os, signal, ssl, subprocess, sys, tempfile, time, urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AKVSYNC = os.path.join(ROOT, "target/release/akvsync")
KVEMU = os.path.join(ROOT, "target/release/kvemu")
PEM = open(os.path.join(ROOT, "crates/akvsync/tests/data/rsa-key-first-shuffled.pem")).read()
VAULT = "footprint"


def start_emulator(state):
    proc = subprocess.Popen([KVEMU, "serve", "--state-dir", state], stderr=subprocess.DEVNULL)
    for _ in range(400):
        path = os.path.join(state, "endpoints.json")
        if os.path.exists(path):
            return proc, json.load(open(path))
        time.sleep(0.05)
    raise SystemExit("kvemu did not start")


def token(endpoints):
    url = urllib.parse.urlparse(endpoints["identity_endpoint"])
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.request("GET", url.path + "?api-version=2018-02-01&resource=https://vault.azure.net", headers={"Metadata": "true"})
    return json.loads(conn.getresponse().read())["access_token"]


def put_secrets(endpoints, count):
    host, port = endpoints["vault_addr"].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=endpoints["ca_file"])
    conn = http.client.HTTPSConnection(host, int(port), context=ctx)
    headers = {"Host": f"{VAULT}.vault.azure.net", "Authorization": f"Bearer {token(endpoints)}",
               "Content-Type": "application/json"}
    body = json.dumps({"value": PEM, "contentType": "application/x-pem-file"})
    for i in range(count):
        conn.request("PUT", f"/secrets/cert{i}?api-version=7.4", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def measure(count, endpoints, work):
    store = os.path.join(work, f"store{count}")
    settings = {
        "secretsManagementSettings": {
            "pollingIntervalInS": "3600", "requireInitialSync": True, "certificateStoreLocation": store,
            "observedCertificates": [f"https://{VAULT}.vault.azure.net/secrets/cert{i}" for i in range(count)],
        },
        "authenticationSettings": {"msiEndpoint": endpoints["identity_endpoint"]},
        "akvsync": {"testing": {"caFile": endpoints["ca_file"],
                                "connectTo": {f"{VAULT}.vault.azure.net": endpoints["vault_addr"]}}},
    }
    path = os.path.join(work, f"settings{count}.json")
    json.dump(settings, open(path, "w"))
    started = time.monotonic()
    proc = subprocess.Popen([AKVSYNC, "run", "--settings", path, "--state-dir", os.path.join(work, f"state{count}")],
                            stderr=subprocess.DEVNULL, env={**os.environ, "AKVSYNC_LOG": "warn"})
    while sum(1 for n in os.listdir(store) if n.count(".") == 1) < count if os.path.isdir(store) else True:
        if proc.poll() is not None:
            raise SystemExit(f"akvsync exited with {proc.returncode}")
        time.sleep(0.02)
    synced = time.monotonic() - started
    time.sleep(2)
    rss = rss_kib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    return synced, rss


def main():
    counts = [int(a) for a in sys.argv[1:]] or [1, 100, 1000]
    with tempfile.TemporaryDirectory() as work:
        emulator, endpoints = start_emulator(os.path.join(work, "kvemu"))
        try:
            put_secrets(endpoints, max(counts))
            print(f"binary: {AKVSYNC}: {os.path.getsize(AKVSYNC)} bytes ({os.path.getsize(AKVSYNC) / 1048576:.2f} MiB)")
            print(f"{'certificates':>12}  {'initial sync (s)':>16}  {'RSS 2 s later (KiB)':>20}")
            for count in counts:
                synced, rss = measure(count, endpoints, work)
                print(f"{count:>12}  {synced:>16.2f}  {rss:>20}")
        finally:
            emulator.terminate()
            emulator.wait()


if __name__ == "__main__":
    main()
