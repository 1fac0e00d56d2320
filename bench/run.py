#!/usr/bin/env python3
"""The benchmarks of issue 9, side by side in one run; results go to docs/benchmarks.md.

    python3 bench/run.py            # full: 1, 100, 200, 1000 certificates, 3 repetitions
    python3 bench/run.py --quick    # CI: 1 and 20 certificates, 1 repetition, fleet of 1000

Builds the release binaries (`cargo build --release -p akvsync --no-default-features
--target x86_64-unknown-linux-musl`, the static agent the Linux extension package ships, and
the same without `--target`, the glibc build a plain `cargo build --release` gives; then
`cargo build --release -p kvemu -p fleetsim`; one target directory), starts
`kvemu serve` (its throttle raised out of the way: this measures the agent, not Key
Vault's limits), imports N PKCS#12 certificates (Key Vault's default content type) and
measures:

1. cold sync: `akvsync once` versus bench/python_reference.py (official Python SDK) into
   empty Linux stores, interleaved, median of the repetitions, wall and CPU time;
2. steady-state poll with nothing changed, in `akvsync run` (2 s polling interval through
   the testing floor): requests per certificate per poll and token requests from the
   emulator's counters, files written (mtimes), CPU per poll (/proc); and CPU instructions
   per poll from `valgrind --tool=callgrind` of `akvsync once` with everything current at
   100 and at 1 certificate (the difference is what 99 more certificates cost a one-shot
   process, TLS handshakes of its concurrent connections included), and of `akvsync run`
   through 2 and through 7 rounds (the difference is 5 steady polls on kept-alive
   connections);
3. RSS of `akvsync run` idle (scripts/footprint.py) and the stripped binary size, for both
   builds;
4. the fleet simulation (`target/release/fleetsim`).

Prints a markdown report and writes it to target/bench/results.md. Standard library only;
the Python side runs in target/py-venv (created as scripts/ci-python-sdk.sh does, plus
`cryptography`). The musl build needs `rustup target add x86_64-unknown-linux-musl` and
Debian's `musl-tools`; `--agent gnu` measures the glibc build instead.
"""
import argparse
import base64
import http.client
import json
import os
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import footprint  # noqa: E402

RELEASE = os.path.join(ROOT, "target", "release")
MUSL = "x86_64-unknown-linux-musl"
AGENTS = {
    "musl": os.path.join(ROOT, "target", MUSL, "release", "akvsync"),
    "gnu": os.path.join(RELEASE, "akvsync"),
}
AKVSYNC = AGENTS["musl"]
KVEMU = os.path.join(RELEASE, "kvemu")
FLEETSIM = os.path.join(RELEASE, "fleetsim")
VENV = os.path.join(ROOT, "target", "py-venv")
PYTHON = os.path.join(VENV, "bin", "python")
REFERENCE = os.path.join(ROOT, "bench", "python_reference.py")
PFX = os.path.join(ROOT, "crates", "akvsync", "tests", "data", "rsa-3des-sha1-empty.p12")
VAULT = "bench"


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def build():
    # Two cargo commands: built together, the agent would get the emulator's features of
    # shared dependencies (tokio, rustls…) unified in, and a larger binary than it ships.
    for argv in (["-p", "akvsync", "--no-default-features", "--target", MUSL],
                 ["-p", "akvsync", "--no-default-features"], ["-p", "kvemu", "-p", "fleetsim"]):
        log("cargo build --release " + " ".join(argv))
        subprocess.run(["cargo", "build", "--release", *argv], cwd=ROOT, check=True)


def ensure_venv():
    if not os.path.exists(PYTHON):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "azure-keyvault-secrets", "azure-identity", "cryptography"],
        check=True,
    )


def start_emulator(state):
    proc = subprocess.Popen([KVEMU, "serve", "--state-dir", state, "--throttle", "4000000"],
                            stderr=subprocess.DEVNULL)
    for _ in range(400):
        path = os.path.join(state, "endpoints.json")
        if os.path.exists(path):
            return proc, path, json.load(open(path))
        time.sleep(0.05)
    raise SystemExit("kvemu did not start")


def vault_connection(endpoints):
    host, port = endpoints["vault_addr"].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=endpoints["ca_file"])
    return http.client.HTTPSConnection(host, int(port), context=ctx)


def import_certificates(endpoints, count):
    conn = vault_connection(endpoints)
    headers = {"Host": f"{VAULT}.vault.azure.net", "Authorization": f"Bearer {footprint.token(endpoints)}",
               "Content-Type": "application/json"}
    body = json.dumps({"value": base64.b64encode(open(PFX, "rb").read()).decode()})
    for i in range(count):
        conn.request("POST", f"/certificates/cert{i}/import?api-version=7.4", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status


def control(endpoints, method, path):
    url = urllib.parse.urlparse(endpoints["control_endpoint"])
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.request(method, url.path.rstrip("/") + path)
    response = conn.getresponse()
    data = response.read()
    return json.loads(data) if data else None


def counters(endpoints):
    c = control(endpoints, "GET", "/counters")
    return c["vault"].get(VAULT, 0), c["identity"], c["throttled"]


def write_settings(path, count, store, endpoints, interval=3600, floor=None, outputs=None):
    testing = {"caFile": endpoints["ca_file"], "connectTo": {f"{VAULT}.vault.azure.net": endpoints["vault_addr"]}}
    if floor:
        testing["minPollingIntervalInS"] = floor
    settings = {
        "secretsManagementSettings": {
            "pollingIntervalInS": str(interval), "requireInitialSync": True, "certificateStoreLocation": store,
            "observedCertificates": [f"https://{VAULT}.vault.azure.net/secrets/cert{i}" for i in range(count)],
        },
        "authenticationSettings": {"msiEndpoint": endpoints["identity_endpoint"]},
        "akvsync": {"testing": testing},
    }
    if outputs:
        # Three output kinds per certificate, in their own directory (issue 14's benchmark).
        settings["akvsync"]["outputs"] = [{
            "directory": outputs,
            "files": {"cert": "{secret}.crt", "key": "{secret}.key", "fullchain": "{secret}.fullchain.pem"},
        }]
    with open(path, "w") as f:
        json.dump(settings, f)


def timed(argv, env=None):
    """Wall and CPU (user + system) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def check_store(store, count, linked):
    names = [n for n in os.listdir(store) if n.count(".") == 1 and not n.startswith(".")]
    assert len(names) == count, (store, len(names))
    sample = os.path.join(store, f"{VAULT}.cert0")
    text = open(sample).read()
    assert "BEGIN CERTIFICATE" in text and "PRIVATE KEY" in text, sample
    assert os.stat(sample).st_mode & 0o777 == 0o600, oct(os.stat(sample).st_mode)
    assert os.path.islink(sample) == linked, sample


def cold_sync(count, reps, endpoints, endpoints_path, work):
    env = {**os.environ, "AKVSYNC_LOG": "warn"}
    rows = {"akvsync": [], "python": []}
    done = []
    for rep in range(reps):
        order = ["akvsync", "python"] if rep % 2 == 0 else ["python", "akvsync"]
        for side in order:
            run_dir = tempfile.mkdtemp(dir=work, prefix=f"cold{count}-{side}-")
            store = os.path.join(run_dir, "store")
            settings = os.path.join(run_dir, "settings.json")
            write_settings(settings, count, store, endpoints)
            if side == "akvsync":
                argv = [AKVSYNC, "once", "--settings", settings, "--state-dir", os.path.join(run_dir, "state")]
            else:
                argv = [PYTHON, REFERENCE, settings, endpoints_path]
            rows[side].append(timed(argv, env))
            check_store(store, count, linked=side == "akvsync")
            # Removed after all the runs: deleting thousands of files between runs slowed
            # every later run on this machine's disk (1.4 s → 2.8 s for the same job).
            done.append(run_dir)
    for run_dir in done:
        shutil.rmtree(run_dir)
    med = {side: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for side, r in rows.items()}
    return med


def cold_sync_outputs(count, reps, endpoints, work):
    """`akvsync once` into an empty store, without and with three output kinds per certificate."""
    env = {**os.environ, "AKVSYNC_LOG": "warn"}
    rows = {"plain": [], "outputs": []}
    done = []
    # One discarded round of each first: the first syncs after the import pay for the
    # emulator's and the page cache's warm-up (seen: 3.3 s, then 1.8 s, for the same job).
    for rep in range(-1, reps):
        order = ["plain", "outputs"] if rep % 2 == 0 else ["outputs", "plain"]
        for side in order:
            run_dir = tempfile.mkdtemp(dir=work, prefix=f"outputs{count}-{side}-")
            store = os.path.join(run_dir, "store")
            out = os.path.join(run_dir, "out") if side == "outputs" else None
            settings = os.path.join(run_dir, "settings.json")
            write_settings(settings, count, store, endpoints, outputs=out)
            argv = [AKVSYNC, "once", "--settings", settings, "--state-dir", os.path.join(run_dir, "state")]
            measured = timed(argv, env)
            if rep >= 0:
                rows[side].append(measured)
            check_store(store, count, linked=True)
            if out:
                key = os.path.join(out, "cert0.key")
                assert "PRIVATE KEY" in open(key).read(), key
                assert len([n for n in os.listdir(out) if not n.startswith(".")]) == 3 * count
            # Removed after all the runs: deleting thousands of files between runs slowed
            # every later run on this machine's disk (1.4 s → 2.8 s for the same job).
            done.append(run_dir)
    for run_dir in done:
        shutil.rmtree(run_dir)
    return {side: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r)) for side, r in rows.items()}


def snapshot(*dirs):
    out = {}
    for d in dirs:
        for root, _, files in os.walk(d):
            for name in files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                out[path] = (st.st_mtime_ns, st.st_ino)
    return out


def proc_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady_run(count, endpoints, work, polls):
    """`akvsync run` polling every ~2 s with nothing changed."""
    run_dir = tempfile.mkdtemp(dir=work, prefix=f"steady{count}-")
    store, state = os.path.join(run_dir, "store"), os.path.join(run_dir, "state")
    settings = os.path.join(run_dir, "settings.json")
    write_settings(settings, count, store, endpoints, interval=2, floor=1)
    proc = subprocess.Popen([AKVSYNC, "run", "--settings", settings, "--state-dir", state],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "AKVSYNC_LOG": "debug"})
    rounds = []
    cond = threading.Condition()

    def reader():
        for line in proc.stderr:
            if "next sync" in line:
                with cond:
                    rounds.append(time.monotonic())
                    cond.notify_all()

    threading.Thread(target=reader, daemon=True).start()

    def wait_rounds(n):
        with cond:
            if not cond.wait_for(lambda: len(rounds) >= n, timeout=120):
                raise SystemExit("akvsync run did not poll")

    try:
        wait_rounds(2)  # the initial sync and one poll
        check_store(store, count, linked=True)
        before = snapshot(store, state)
        control(endpoints, "DELETE", "/counters")
        cpu0, first = proc_cpu(proc.pid), len(rounds)
        wait_rounds(first + polls)
        cpu1 = proc_cpu(proc.pid)
        gets, identity, _ = counters(endpoints)
        after = snapshot(store, state)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    def changed(prefix):
        paths = {p for p in list(before) + list(after) if p.startswith(prefix + os.sep)}
        return sum(1 for p in paths if before.get(p) != after.get(p))

    shutil.rmtree(run_dir)
    return {"gets_per_cert_poll": gets / (count * polls), "identity": identity,
            "store_changed": changed(store), "state_changed": changed(state),
            "cpu_per_poll": (cpu1 - cpu0) / polls, "polls": polls}


def callgrind_once(count, endpoints, work):
    """Instructions (Ir) of `akvsync once` with every certificate already current."""
    run_dir = tempfile.mkdtemp(dir=work, prefix=f"cg{count}-")
    store, state = os.path.join(run_dir, "store"), os.path.join(run_dir, "state")
    settings = os.path.join(run_dir, "settings.json")
    write_settings(settings, count, store, endpoints)
    env = {**os.environ, "AKVSYNC_LOG": "warn"}
    timed([AKVSYNC, "once", "--settings", settings, "--state-dir", state], env)
    before = snapshot(store)
    out = os.path.join(run_dir, "callgrind.out")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=no",
                    AKVSYNC, "once", "--settings", settings, "--state-dir", state],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert snapshot(store) == before, "a poll with nothing changed wrote to the store"
    total = callgrind_total(run_dir)
    shutil.rmtree(run_dir)
    return total


def callgrind_run(count, endpoints, work, polls):
    """Instructions (Ir) of `akvsync run` (polling every ~2 s, nothing changed) through its
    initial round and `polls` more, stopped between rounds. The difference of two such runs
    is what the extra polls cost on kept-alive connections (the pool keeps them 90 s)."""
    run_dir = tempfile.mkdtemp(dir=work, prefix=f"cgrun{count}-")
    store, state = os.path.join(run_dir, "store"), os.path.join(run_dir, "state")
    settings = os.path.join(run_dir, "settings.json")
    write_settings(settings, count, store, endpoints, interval=2, floor=1)
    env = {**os.environ, "AKVSYNC_LOG": "info"}
    timed([AKVSYNC, "once", "--settings", settings, "--state-dir", state], env)
    before = snapshot(store)
    out = os.path.join(run_dir, "callgrind.out")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                             AKVSYNC, "run", "--settings", settings, "--state-dir", state],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Rounds are counted from the emulator's GETs (info level logs nothing per round);
        # the stop comes 1 s after the last round's GETs, inside the 2 s interval.
        control(endpoints, "DELETE", "/counters")
        deadline = time.monotonic() + 600
        while counters(endpoints)[0] < (1 + polls) * count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("akvsync run under callgrind did not poll")
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert snapshot(store) == before, "a poll with nothing changed wrote to the store"
    total = callgrind_total(run_dir)
    shutil.rmtree(run_dir)
    return total


def callgrind_total(run_dir):
    total = 0
    for name in os.listdir(run_dir):
        if name.startswith("callgrind.out"):
            for line in open(os.path.join(run_dir, name)):
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
    return total


def fmt_ms(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 1 and 20 certificates, 1 repetition")
    parser.add_argument("--sizes", help="comma-separated certificate counts (default 1,100,200,1000)")
    parser.add_argument("--reps", type=int, help="repetitions of each cold sync (default 3)")
    parser.add_argument("--no-build", action="store_true", help="use the binaries in target/release as they are")
    parser.add_argument("--no-venv", action="store_true", help="do not pip install into target/py-venv")
    parser.add_argument("--agent", choices=sorted(AGENTS), default="musl",
                        help="the agent build for the cold-sync, steady-state and callgrind figures "
                             "(default musl: the binary the Linux package ships)")
    parser.add_argument("--only-outputs", action="store_true",
                        help="only the cold sync with and without outputs (issue 14's comparison)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "results.md"))
    args = parser.parse_args()
    # The agents measured are production builds, which refuse `akvsync.testing` (how the
    # benchmark points them at the emulator) unless the environment allows it (issue 16).
    os.environ["AKVSYNC_ALLOW_TESTING_OVERRIDES"] = "1"
    global AKVSYNC
    AKVSYNC = AGENTS[args.agent]
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1, 20] if args.quick else [1, 100, 200, 1000])
    reps = args.reps or (1 if args.quick else 3)
    steady_n = 20 if args.quick else 100
    rss_sizes = [1, 20] if args.quick else [1, 100, 1000]

    if not args.no_build:
        build()
    if not args.no_venv:
        ensure_venv()
    report = []
    say = report.append
    load = os.getloadavg()
    say(f"Machine: `nproc` = {os.cpu_count()}, load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: `python3 bench/run.py{' --quick' if args.quick else ''}`; "
        f"agent: the {args.agent} build (`{os.path.relpath(AKVSYNC, ROOT)}`).\n")

    with tempfile.TemporaryDirectory() as work:
        emulator, endpoints_path, endpoints = start_emulator(os.path.join(work, "kvemu"))
        try:
            log(f"importing {max(sizes + [steady_n])} PKCS#12 certificates")
            import_certificates(endpoints, max(sizes + [steady_n]))

            if args.only_outputs:
                sizes_for_python = []
            else:
                sizes_for_python = sizes
            if sizes_for_python:
                say(f"### Cold sync (empty store; median of {reps}, interleaved)\n")
                say("| certificates | akvsync once: wall | CPU | Python SDK script: wall | CPU | ratio (wall) | ratio (CPU) |")
                say("|---:|---:|---:|---:|---:|---:|---:|")
            for count in sizes_for_python:
                log(f"cold sync of {count}")
                med = cold_sync(count, reps, endpoints, endpoints_path, work)
                (aw, ac), (pw, pc) = med["akvsync"], med["python"]
                say(f"| {count} | {fmt_ms(aw)} | {fmt_ms(ac)} | {fmt_ms(pw)} | {fmt_ms(pc)} | {pw / aw:.1f}× | {pc / ac:.1f}× |")

            n = max(sizes)
            log(f"cold sync of {n} with outputs")
            med = cold_sync_outputs(n, reps, endpoints, work)
            (bw, bc), (ow, oc) = med["plain"], med["outputs"]
            say(f"\n### Cold sync with outputs ({n} certificates; cert, key and fullchain each; median of {reps}, interleaved)\n")
            say("| without outputs: wall | CPU | with 3 output kinds: wall | CPU | ratio (wall) | ratio (CPU) |")
            say("|---:|---:|---:|---:|---:|---:|")
            say(f"| {fmt_ms(bw)} | {fmt_ms(bc)} | {fmt_ms(ow)} | {fmt_ms(oc)} | {ow / bw:.2f}× | {oc / bc:.2f}× |")
            if args.only_outputs:
                return finish(report, args)

            log(f"steady-state polls of {steady_n}")
            polls = 3 if args.quick else 5
            steady = steady_run(steady_n, endpoints, work, polls)
            say(f"\n### Steady-state poll, nothing changed (`akvsync run`, {steady_n} certificates, {polls} polls)\n")
            say("| GETs per certificate per poll | token requests | store files changed (mtime or inode) | state files changed | CPU per poll (/proc, 10 ms ticks) |")
            say("|---:|---:|---:|---:|---:|")
            say(f"| {steady['gets_per_cert_poll']:.2f} | {steady['identity']} | {steady['store_changed']} | "
                f"{steady['state_changed']} | {fmt_ms(steady['cpu_per_poll'])} |")

            if shutil.which("valgrind"):
                log("callgrind")
                small, big = callgrind_once(1, endpoints, work), callgrind_once(steady_n, endpoints, work)
                per = (big - small) / (steady_n - 1)
                say(f"\n### Instructions per poll (callgrind, `akvsync once` with everything current)\n")
                say(f"| `once`, 1 certificate | `once`, {steady_n} certificates | difference = {steady_n - 1} more certificates | per certificate | poll of 100 (per certificate × 100) |")
                say("|---:|---:|---:|---:|---:|")
                say(f"| {small / 1e6:.1f} M | {big / 1e6:.1f} M | {(big - small) / 1e6:.1f} M | {per / 1e3:.0f} k | {per * 100 / 1e6:.1f} M |")
                log("callgrind of run")
                extra = 5
                one, more = callgrind_run(steady_n, endpoints, work, 1), callgrind_run(steady_n, endpoints, work, 1 + extra)
                per_poll = (more - one) / extra / steady_n
                say(f"\n### Instructions per steady poll (callgrind, `akvsync run` with {steady_n} certificates, nothing changed, kept-alive connections)\n")
                say(f"| `run`, initial round + 1 poll | `run`, initial round + {1 + extra} polls | difference = {extra} polls | per certificate per poll |")
                say("|---:|---:|---:|---:|")
                say(f"| {one / 1e6:.1f} M | {more / 1e6:.1f} M | {(more - one) / 1e6:.1f} M | {per_poll / 1e3:.0f} k |")

            log("footprint")
            footprint.put_secrets(endpoints, max(rss_sizes))
            say("\n### Footprint (`akvsync run` idle, 2 s after its initial sync; scripts/footprint.py)\n")
            builds = [(name, path) for name, path in sorted(AGENTS.items()) if os.path.exists(path)]
            say("| build | certificates | initial sync | RSS |")
            say("|---|---:|---:|---:|")
            for name, path in builds:
                footprint.AKVSYNC = path
                build_work = os.path.join(work, f"footprint-{name}")  # a cold store per build
                os.makedirs(build_work, exist_ok=True)
                for count in rss_sizes:
                    synced, rss = footprint.measure(count, endpoints, build_work)
                    say(f"| {name} | {count} | {fmt_ms(synced)} | {rss / 1024:.1f} MiB ({rss} KiB) |")
            say("")
            for name, path in builds:
                size = os.path.getsize(path)
                say(f"Stripped binary, {name} build (`{os.path.relpath(path, ROOT)}`, production features): "
                    f"{size} bytes ({size / 1048576:.2f} MiB).  ")
            _, _, throttled = counters(endpoints)
            assert throttled == 0, f"the emulator throttled {throttled} requests during the benchmark"
        finally:
            emulator.terminate()
            emulator.wait()

    log("fleet simulation")
    fleet = subprocess.run([FLEETSIM] + (["--quick"] if args.quick else []), check=True,
                           stdout=subprocess.PIPE, text=True).stdout
    say("\n### Fleet simulation (`target/release/fleetsim" + (" --quick" if args.quick else "") + "`)\n")
    say(fleet.strip())

    finish(report, args)


def finish(report, args):
    text = "\n".join(report) + "\n"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
