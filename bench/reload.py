#!/usr/bin/python3
"""bench/reload.py: what reloads cost (run through bench/reload.sh).

1. Reload latency: for 10, 1,000 and 10,000 API definitions, the time from
   sending `reload` on the admin socket to its `Success=1` answer, which the
   master sends once every worker serves the new generation (files read,
   parsed and validated, generation published in shared memory, every worker
   switched). RUNS reloads per size; median, p90 and max.
2. Throughput during a reload storm: wrk on one API while a reload is
   triggered every 100 ms (alternating two sets of 50 other APIs), against
   the same wrk run without reloads; runs alternate, STORM_RUNS each, and the
   ratio of the medians is reported. Every run must have zero non-2xx
   responses and zero socket errors.
3. Memory: resident memory (VmRSS, and its anonymous and shared parts) of
   the master and each worker after start-up, after 10 reloads, and after
   1,000 more reloads (alternating two sets of 100 APIs).

Turnpike runs WORKERS workers (default 1) pinned to cpu0 with its master;
the upstream (nginx, "hello world") and wrk share cpu1, as in bench/run.sh.
A local redis-server is started for the gateway's storage.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.environ.get("TURNPIKE_BIN", os.path.join(ROOT, "build", "turnpike"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WORKERS = int(os.environ.get("WORKERS", "1"))
RUNS = int(os.environ.get("RUNS", "11"))
STORM_RUNS = int(os.environ.get("STORM_RUNS", "3"))
STORM_SECONDS = int(os.environ.get("STORM_SECONDS", "10"))
MEM_RELOADS = int(os.environ.get("MEM_RELOADS", "1000"))
SIZES = [int(x) for x in os.environ.get("SIZES", "10,1000,10000").split(",")]
CONNS = int(os.environ.get("CONNS", "50"))
PIN = os.environ.get("PIN", "1") == "1" and os.cpu_count() >= 2
PROXY_CPUS, LOAD_CPUS = ("0", "1") if PIN else (None, None)

procs = []


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pinned(cmd, cpus):
    return (["taskset", "-c", cpus] if cpus else []) + cmd


def spawn(name, cmd, cpus, tmp):
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen(pinned(cmd, cpus), stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(5)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if p in procs:
        procs.remove(p)


def wait_port(port, p, name, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if p.poll() is not None:
            sys.exit("bench: %s exited during start-up (status %s)" % (name, p.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("bench: %s did not listen on %d" % (name, port))


def admin(path, line, timeout=120):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(line.encode() + b"\n")
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()


def children(pid):
    out = []
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, t)) as f:
            out += [int(x) for x in f.read().split()]
    return sorted(out)


def mem(pid):
    """(VmRSS, RssAnon, RssShmem) in KiB."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssShmem"):
                vals[k] = int(v.split()[0])
    return vals["VmRSS"], vals["RssAnon"], vals["RssShmem"]


def api(api_id, path, uport):
    return ('{"api_id":"%s","name":"%s","use_keyless":true,"active":true,'
            '"proxy":{"listen_path":"%s","target_url":"http://127.0.0.1:%d/","strip_listen_path":true}}'
            % (api_id, api_id, path, uport))


def write_set(apps, prefix, n, uport, remove_prefix=None):
    """Atomically (per file) writes n APIs named <prefix>-<i>; removes the
    files of <remove_prefix>."""
    if remove_prefix:
        for f in os.listdir(apps):
            if f.startswith(remove_prefix + "-"):
                os.unlink(os.path.join(apps, f))
    for i in range(n):
        name = "%s-%d" % (prefix, i)
        tmp = os.path.join(apps, ".%s.tmp" % name)
        with open(tmp, "w") as f:
            f.write(api(name, "/%s/" % name, uport))
        os.rename(tmp, os.path.join(apps, name + ".json"))


class Gateway:
    def __init__(self, tmp, name, uport, rport):
        self.dir = os.path.join(tmp, name)
        self.apps = os.path.join(self.dir, "apps")
        os.makedirs(self.apps)
        self.port, = free_ports(1)
        self.sock = os.path.join(self.dir, "admin.sock")
        with open(os.path.join(self.dir, "tyk.conf"), "w") as f:
            f.write('{"listen_address":"127.0.0.1","listen_port":%d,"app_path":"%s",'
                    '"max_idle_connections_per_host":500,"log_level":"warn",'
                    '"storage":{"type":"redis","host":"127.0.0.1","port":%d},'
                    '"turnpike":{"workers":%d,"admin_socket":"%s"}}'
                    % (self.port, self.apps, rport, WORKERS, self.sock))
        with open(os.path.join(self.apps, "bench.json"), "w") as f:
            f.write(api("bench", "/bench/", uport))
        self.tmp = tmp
        self.name = name

    def start(self):
        self.proc = spawn(self.name, [BIN, "--conf", os.path.join(self.dir, "tyk.conf")], PROXY_CPUS,
                          self.tmp)
        wait_port(self.port, self.proc, self.name, 120)
        end = time.time() + 60
        while not os.path.exists(self.sock) or len(children(self.proc.pid)) < WORKERS:
            if time.time() > end:
                sys.exit("bench: %s: no admin socket or workers" % self.name)
            time.sleep(0.05)
        return self

    def reload(self):
        t0 = time.perf_counter()
        out = admin(self.sock, "reload")
        dt = time.perf_counter() - t0
        if not out.startswith("Success=1"):
            sys.exit("bench: %s: reload failed: %s" % (self.name, out))
        return dt


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def bench_latency(tmp, uport, rport):
    print("1. reload latency: admin `reload` sent -> `Success=1` (every worker serves the new generation)")
    print("   %8s %10s %10s %10s %12s" % ("APIs", "median", "p90", "max", "start-up"))
    res = {}
    for n in SIZES:
        g = Gateway(tmp, "lat%d" % n, uport, rport)
        write_set(g.apps, "a", n - 1, uport)
        t0 = time.perf_counter()
        g.start()
        startup = time.perf_counter() - t0
        g.reload()  # warm-up
        times = [g.reload() for _ in range(RUNS)]
        res[n] = times
        print("   %8d %8.1fms %8.1fms %8.1fms %10.0fms" % (
            n, 1000 * statistics.median(times), 1000 * pct(times, 90), 1000 * max(times), 1000 * startup),
            flush=True)
        stop(g.proc)
    return res


def wrk(url, seconds, out):
    cmd = pinned(["wrk", "-t1", "-c%d" % CONNS, "-d%ds" % seconds, "--latency", url], LOAD_CPUS)
    p = subprocess.run(cmd, capture_output=True, text=True)
    with open(out, "w") as f:
        f.write(p.stdout + p.stderr)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    if not m:
        sys.exit("bench: wrk printed no result (%s)" % out)
    errs = 0
    m2 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", p.stdout)
    if m2:
        errs += sum(int(x) for x in m2.groups())
    m3 = re.search(r"Non-2xx or 3xx responses: (\d+)", p.stdout)
    if m3:
        errs += int(m3.group(1))
    total = int(re.search(r"(\d+) requests in", p.stdout).group(1))
    return float(m.group(1)), total, errs


def bench_storm(tmp, uport, rport):
    print()
    print("2. throughput during a reload storm (a reload every 100 ms, 50-API sets alternating), "
          "wrk -t1 -c%d -d%ds, %d runs each" % (CONNS, STORM_SECONDS, STORM_RUNS))
    g = Gateway(tmp, "storm", uport, rport)
    write_set(g.apps, "x", 50, uport)
    g.start()
    url = "http://127.0.0.1:%d/bench/" % g.port
    wrk(url, 2, os.path.join(tmp, "storm-warmup.txt"))
    calm, storm, triggers = [], [], []
    for r in range(STORM_RUNS):
        rps, total, errs = wrk(url, STORM_SECONDS, os.path.join(tmp, "calm.%d.txt" % r))
        calm.append(rps)
        say("run %d calm: %.0f req/s, %d errors" % (r + 1, rps, errs))
        if errs:
            sys.exit("bench: errors without reloads")
        # the storm: a thread of admin reloads every 100 ms during wrk
        import threading
        stop_flag = threading.Event()
        count = [0]

        def storm_loop():
            k = 0
            while not stop_flag.is_set():
                k ^= 1
                write_set(g.apps, "xy"[k], 50, uport, remove_prefix="xy"[k ^ 1])
                threading.Thread(target=g.reload, daemon=True).start()
                count[0] += 1
                stop_flag.wait(0.1)

        t = threading.Thread(target=storm_loop)
        t.start()
        rps, total, errs = wrk(url, STORM_SECONDS, os.path.join(tmp, "storm.%d.txt" % r))
        stop_flag.set()
        t.join()
        storm.append(rps)
        triggers.append(count[0])
        say("run %d storm: %.0f req/s, %d reloads, %d errors of %d" % (r + 1, rps, count[0], errs, total))
        if errs:
            sys.exit("bench: %d failed requests during the storm (see %s)" % (errs, tmp))
    info = admin(g.sock, "show info")
    gen = re.search(r"generation: (\d+)", info).group(1)
    mc, ms = statistics.median(calm), statistics.median(storm)
    print("   without reloads: %.0f req/s (median; runs %s)" % (mc, ", ".join("%.0f" % x for x in calm)))
    print("   reload storm:    %.0f req/s (median; runs %s), %s reloads per run, 0 failed requests"
          % (ms, ", ".join("%.0f" % x for x in storm), "/".join(str(x) for x in triggers)))
    print("   ratio storm/calm: %.2fx (generation reached: %s)" % (ms / mc, gen))
    stop(g.proc)


def bench_memory(tmp, uport, rport):
    print()
    print("3. resident memory before/after %d reloads (100-API sets alternating), KiB: "
          "VmRSS (anon + shared)" % MEM_RELOADS)
    g = Gateway(tmp, "mem", uport, rport)
    write_set(g.apps, "m", 100, uport)
    g.start()
    pids = [g.proc.pid] + children(g.proc.pid)
    # load some traffic so the workers' pools and buffers exist
    wrk("http://127.0.0.1:%d/bench/" % g.port, 2, os.path.join(tmp, "mem-warmup.txt"))
    names = ["master"] + ["worker%d" % i for i in range(len(pids) - 1)]
    snaps = [("after start-up", [mem(p) for p in pids])]
    k = 0

    def swap():
        nonlocal k
        k ^= 1
        write_set(g.apps, "mn"[k], 100, uport, remove_prefix="mn"[k ^ 1])
        g.reload()

    for _ in range(10):
        swap()
    snaps.append(("after 10 reloads", [mem(p) for p in pids]))
    t0 = time.time()
    for _ in range(MEM_RELOADS):
        swap()
    took = time.time() - t0
    snaps.append(("after %d more" % MEM_RELOADS, [mem(p) for p in pids]))
    if sorted([g.proc.pid] + children(g.proc.pid)) != sorted(pids):
        sys.exit("bench: a process was replaced during the reloads")
    print("   %-22s" % "" + "".join("%26s" % n for n in names))
    for label, vals in snaps:
        print("   %-22s" % label + "".join("%26s" % ("%d (%d + %d)" % v) for v in vals))
    base = snaps[1][1]
    last = snaps[2][1]
    print("   change over the %d reloads (VmRSS): " % MEM_RELOADS + ", ".join(
        "%s %+.1f%%" % (n, 100.0 * (b[0] - a[0]) / a[0]) for n, a, b in zip(names, base, last)))
    print("   change from start-up (VmRSS): " + ", ".join(
        "%s %+.1f%%" % (n, 100.0 * (b[0] - a[0]) / a[0]) for n, a, b in zip(names, snaps[0][1], last)))
    print("   (%d reloads took %.1f s)" % (MEM_RELOADS, took))
    stop(g.proc)


def main():
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            sys.exit("bench: %s not found" % tool)
    if not os.access(BIN, os.X_OK):
        sys.exit("bench: %s not found: run make first" % BIN)
    tmp = tempfile.mkdtemp(prefix="turnpike-reload.")
    uport, rport = free_ports(2)
    os.makedirs(os.path.join(tmp, "upstream"))
    subprocess.run(["bash", "-c", 'source "%s/lib.sh"; nginx_upstream_conf "$1" "$2"' % HERE, "-",
                    os.path.join(tmp, "upstream"), str(uport)], check=True)
    up = spawn("upstream", [NGINX, "-p", os.path.join(tmp, "upstream"), "-c",
                            os.path.join(tmp, "upstream", "nginx.conf")], LOAD_CPUS, tmp)
    wait_port(uport, up, "upstream")
    rd = spawn("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], LOAD_CPUS, tmp)
    wait_port(rport, rd, "redis")
    print("== Turnpike reload benchmark ==")
    print("turnpike: %s, %d worker(s)%s; raw outputs: %s" % (
        BIN, WORKERS, ", pinned to cpu0 (upstream, redis and wrk on cpu1)" if PIN else "", tmp))
    print()
    try:
        if "latency" in sys.argv[1:] or len(sys.argv) == 1:
            bench_latency(tmp, uport, rport)
        if "storm" in sys.argv[1:] or len(sys.argv) == 1:
            bench_storm(tmp, uport, rport)
        if "memory" in sys.argv[1:] or len(sys.argv) == 1:
            bench_memory(tmp, uport, rport)
    finally:
        for p in list(procs):
            stop(p)


if __name__ == "__main__":
    main()
