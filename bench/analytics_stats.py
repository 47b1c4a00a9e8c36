#!/usr/bin/python3
"""bench/analytics_stats.py: helpers of bench/analytics.sh.

    analytics_stats.py summary DIR LONGDIR
        the table of the analytics runs: DIR/<target>.<run>.txt (targets
        nginx, off, on, detailed; raw `wrk --latency` outputs parsed by
        bench/wrkstats.py, plus the lines below), LONGDIR/<target>.txt (the
        long run) and LONGDIR/rss.txt (the sampler's output)
    analytics_stats.py metrics DIR SCRAPES
        the table of `bench/analytics.sh metrics`: DIR/<target>.<run>.txt
        (targets quiet, scraped), SCRAPES (one "seconds bytes" line per
        timed scrape), DIR/scraper.*.txt (the background scraper's times)
    analytics_stats.py rawrequest PORT KEY
        prints the length of the RawRequest field of the last record on the
        Redis list KEY (0 when empty, -1 when the list is empty)
    analytics_stats.py sampler INTERVAL PORT KEY OUT PID...
        until SIGTERM: every INTERVAL s (and once at start and at the end)
        appends "t_seconds rss_kib drained" to OUT, rss_kib the sum of
        VmRSS of the PIDs, drained the records taken off KEY (LLEN and DEL
        in one EVAL, so none is lost between the two)
    analytics_stats.py scraper INTERVAL URL OUT
        until SIGTERM: GET URL with curl every INTERVAL s, appends
        "seconds bytes" (curl's time_total, size_download)

Lines analytics.sh appends to a run's file:
    # redis_rtt N         Redis commands clients sent during the run and
                          the flush after it (all but INFO)
    # redis_by_cmd a=N .. the same by command
    # records N           LLEN of the analytics list after the run (it is
                          deleted before the run)
    # tp_requests N       requests Turnpike counted for the API (show stat)
    # an_stat recorded=N pushed=N dropped=N   show stat's analytics deltas
"""
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wrkstats  # noqa: E402

LABELS = {"nginx": "nginx", "off": "off", "on": "on", "detailed": "detailed",
          "quiet": "no scrape", "scraped": "scrape 1/s"}


def extra(path):
    with open(path) as f:
        out = f.read()
    r = {}
    for k in ("records", "tp_requests", "drained"):
        m = re.search(r"^# %s (\d+)" % k, out, re.M)
        if m:
            r[k] = int(m.group(1))
    m = re.search(r"^# an_stat (.*)$", out, re.M)
    if m:
        r["an"] = {k: int(v) for k, v in (x.split("=") for x in m.group(1).split())}
    return r


def load(d):
    runs = {}
    for name in sorted(os.listdir(d)):
        m = re.fullmatch(r"(\w+)\.(\d+)\.txt", name)
        if m and m.group(1) in LABELS:
            p = os.path.join(d, name)
            r = wrkstats.parse(p)
            r.update(extra(p))
            runs.setdefault(m.group(1), []).append((int(m.group(2)), r))
    med = {}
    for t, rs in runs.items():
        rs.sort()
        vals = [r for _, r in rs]
        s = {k: statistics.median(v[k] for v in vals)
             for k in ("rps", "p50", "p99", "cpu", "cpu_req", "proxy_cpus_busy_pct",
                       "load_cpus_busy_pct", "rtt_req")
             if all(k in v for v in vals)}
        s["errors"] = sum(v["errors"] for v in vals)
        s["n"] = len(vals)
        s["all_rps"] = [v["rps"] for v in vals]
        s["requests"] = sum(v["requests"] for v in vals)
        for k in ("records", "tp_requests"):
            if all(k in v for v in vals):
                s[k] = sum(v[k] for v in vals)
        if all("an" in v for v in vals):
            s["an"] = {k: sum(v["an"][k] for v in vals) for k in vals[0]["an"]}
        if all("by_cmd" in v for v in vals):
            names = sorted({k for v in vals for k in v["by_cmd"]})
            s["by_cmd"] = {k: sum(v["by_cmd"].get(k, 0) for v in vals) for k in names}
        med[t] = s
    return med


def table(med, order):
    print("%-11s %11s %9s %9s %8s %9s %6s %6s %6s %4s   %s" % (
        "target", "rps(median)", "p50", "p99", "srv cpu", "cpu/req", "cpuP", "cpuL",
        "errors", "runs", "rps per run"))
    for t in order:
        if t not in med:
            continue
        s = med[t]
        print("%-11s %11.0f %9s %9s %8s %9s %6s %6s %6d %4d   %s" % (
            LABELS[t], s["rps"], wrkstats.fmt_ms(s["p50"]), wrkstats.fmt_ms(s["p99"]),
            "%.0f%%" % s["cpu"] if "cpu" in s else "-",
            "%.2fus" % s["cpu_req"] if "cpu_req" in s else "-",
            "%.0f%%" % s["proxy_cpus_busy_pct"] if "proxy_cpus_busy_pct" in s else "-",
            "%.0f%%" % s["load_cpus_busy_pct"] if "load_cpus_busy_pct" in s else "-",
            s["errors"], s["n"], " ".join("%.0f" % x for x in s["all_rps"])))


def ratio(med, a, b):
    if a not in med or b not in med:
        return None
    x, y = med[a], med[b]
    line = "ratio %s/%s: rps %.3fx, p99 %.2fx (p50 %.2fx" % (
        a, b, x["rps"] / y["rps"], x["p99"] / y["p99"], x["p50"] / y["p50"])
    if "cpu_req" in x and "cpu_req" in y:
        line += ", cpu/req %.2fx" % (x["cpu_req"] / y["cpu_req"])
    print(line + ")")
    return x["rps"] / y["rps"]


def verdict(ok):
    return "PASS" if ok else "FAIL"


def summary(d, longdir):
    med = load(d)
    table(med, ("nginx", "off", "on", "detailed"))
    r_on = ratio(med, "on", "off")
    r_det = ratio(med, "detailed", "off")
    ratio(med, "off", "nginx")
    ratio(med, "on", "nginx")
    ratio(med, "detailed", "nginx")
    print()
    print("%-9s %8s %10s %10s %8s %11s %8s %8s   %s" % (
        "target", "rtt/req", "records", "requests", "rec/req", "tp requests", "rec/tp",
        "dropped", "Redis commands (all runs)"))
    rec_ratio = {}
    for t in ("off", "on", "detailed"):
        if t not in med:
            continue
        s = med[t]
        rec = s.get("records", 0)
        tpr = s.get("tp_requests", 0)
        rec_ratio[t] = rec / max(s["requests"], 1)
        print("%-9s %8s %10d %10d %8.4f %11d %8s %8s   %s" % (
            t, "%.5f" % s["rtt_req"] if "rtt_req" in s else "-", rec, s["requests"],
            rec_ratio[t], tpr, "%.4f" % (rec / tpr) if tpr else "-",
            s["an"]["dropped"] if "an" in s else "-",
            " ".join("%s=%d" % kv for kv in s.get("by_cmd", {}).items()) or "none"))
    print("rtt/req: Redis commands clients sent (INFO commandstats, all but INFO and the"
          " commands run inside the\n  node-announcement script; each one round trip at most),"
          " per request, median of runs;"
          " records: LLEN of the list after each run\n  (DEL before it), summed; requests:"
          " wrk's; tp requests: Turnpike's count for the API (show stat);\n  dropped:"
          " show stat's analytics drops (buffer full)")

    # the long run
    lt = None
    lr = None
    for name in sorted(os.listdir(longdir)):
        m = re.fullmatch(r"(\w+)\.txt", name)
        if m and m.group(1) in LABELS:
            lt = m.group(1)
            p = os.path.join(longdir, name)
            lr = wrkstats.parse(p)
            lr.update(extra(p))
    samples = []
    rss_path = os.path.join(longdir, "rss.txt")
    if os.path.exists(rss_path):
        for line in open(rss_path):
            f = line.split()
            if len(f) == 3:
                samples.append((float(f[0]), int(f[1]), int(f[2])))
    flat = None
    if lr is not None and samples:
        drained = lr.get("drained", 0)
        print()
        print("long run (%s, %.0f s): %.0f req/s, p99 %s, %d requests, records %d (%.4f per"
              " request, %s per Turnpike request), rtt/req %s" % (
                  lt, lr["requests"] / lr["rps"] if lr["rps"] else 0, lr["rps"],
                  wrkstats.fmt_ms(lr["p99"]), lr["requests"], drained,
                  drained / max(lr["requests"], 1),
                  "%.4f" % (drained / lr["tp_requests"]) if lr.get("tp_requests") else "-",
                  "%.5f" % lr["rtt_req"] if "rtt_req" in lr else "-"))
        # t=0 is before the load: the samples under load are the others
        before = samples[0]
        load_s = [s for s in samples[1:]] or samples
        first, last = load_s[0][1], load_s[-1][1]
        mx = max(s[1] for s in load_s)
        growth = last - first
        flat = growth <= max(1024, 0.03 * first)
        print("worker RSS (KiB) every 5 s: %s" % " ".join("%d" % s[1] for s in samples))
        print("worker RSS: before %d, first %d (t=%.0fs), last %d (t=%.0fs), max %d KiB;"
              " last-first %+d KiB (%+.1f%%): %s" % (
                  before[1], first, load_s[0][0], last, load_s[-1][0], mx, growth,
                  100.0 * growth / max(first, 1), "flat" if flat else "GROWING"))
        if lr.get("an"):
            an = lr["an"]
            print("long run show stat: recorded %d, pushed %d, dropped %d" % (
                an.get("recorded", 0), an.get("pushed", 0), an.get("dropped", 0)))
        rec_ratio["long"] = drained / max(lr["requests"], 1)

    print()
    print("targets:")
    if r_on is not None:
        print("  on >= 0.95x off            %.3fx   %s" % (r_on, verdict(r_on >= 0.95)))
    if r_det is not None:
        print("  detailed >= 0.85x off      %.3fx   %s" % (r_det, verdict(r_det >= 0.85)))
    rtts = {t: med[t]["rtt_req"] for t in ("on", "detailed") if t in med and "rtt_req" in med[t]}
    if lr is not None and "rtt_req" in lr:
        rtts["long"] = lr["rtt_req"]
    if rtts:
        print("  rtt/request <= 0.02        %s   %s" % (
            ", ".join("%s %.5f" % kv for kv in rtts.items()),
            verdict(all(v <= 0.02 for v in rtts.values()))))
    recs = {t: v for t, v in rec_ratio.items() if t != "off"}
    if recs:
        # wrk does not count the responses still in flight when it stops
        # (at most CONNS per run): a few records more than requests is exact
        ok = all(0.999 <= v <= 1.002 for v in recs.values()) and rec_ratio.get("off", 0) == 0
        print("  one record per request     %s; off %.4f   %s" % (
            ", ".join("%s %.4f" % kv for kv in recs.items()), rec_ratio.get("off", 0),
            verdict(ok)))
    if flat is not None:
        print("  worker RSS flat            %+d KiB over the long run   %s" % (
            growth, verdict(flat)))


def metrics(d, scrapes_path):
    med = load(d)
    table(med, ("quiet", "scraped"))
    r = ratio(med, "scraped", "quiet")
    times = []
    size = 0
    for line in open(scrapes_path):
        f = line.split()
        if len(f) >= 2:
            times.append(float(f[0]) * 1e3)
            size = int(float(f[1]))
    bg = []
    for name in sorted(os.listdir(d)):
        if name.startswith("scraper."):
            for line in open(os.path.join(d, name)):
                f = line.split()
                if len(f) >= 2:
                    bg.append(float(f[0]) * 1e3)
    print()
    med_ms = statistics.median(times)
    print("scrape (idle, curl, %d scrapes of %d bytes): median %.2f ms, max %.2f ms" % (
        len(times), size, med_ms, max(times)))
    if bg:
        print("scrape under load (the 1/s scraper, curl, %d scrapes): median %.2f ms, max %.2f ms" % (
            len(bg), statistics.median(bg), max(bg)))
    print()
    print("targets:")
    print("  scrape < 10 ms             median %.2f ms, max %.2f ms   %s" % (
        med_ms, max(times), verdict(max(times) < 10)))
    if r is not None:
        q = med["quiet"]["all_rps"]
        spread = (max(q) - min(q)) / statistics.median(q) if len(q) > 1 else 0
        tol = max(0.02, spread)
        print("  1/s scrape: no measurable change   %.3fx (run-to-run spread without scrape"
              " %.1f%%, tolerance %.1f%%)   %s" % (
                  r, 100 * spread, 100 * tol, verdict(abs(1 - r) <= tol)))


# ---- small Redis client (RESP), for the sampler and rawrequest ---------------------------

class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.reply()

    def reply(self):
        line = self.f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            if t == b"-":
                raise RuntimeError(rest.decode())
            return rest
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:n]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("bad reply %r" % line)


def rawrequest(port, key):
    rec = Redis(port).cmd("LINDEX", key, "-1")
    if rec is None:
        print(-1)
        return
    i = rec.find(b"\xaaRawRequest")
    if i < 0:
        print(0)
        return
    j = i + 11
    b = rec[j]
    if 0xa0 <= b <= 0xbf:
        n = b - 0xa0
    elif b == 0xd9:
        n = rec[j + 1]
    elif b == 0xda:
        n = int.from_bytes(rec[j + 1:j + 3], "big")
    elif b == 0xdb:
        n = int.from_bytes(rec[j + 1:j + 5], "big")
    else:
        n = 0
    print(n)


DRAIN = "local n = redis.call('LLEN', KEYS[1]) redis.call('DEL', KEYS[1]) return n"


def sampler(interval, port, key, out, pids):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    r = Redis(port)
    t0 = time.monotonic()
    k = 0
    with open(out, "a") as f:
        while True:
            rss = 0
            for p in pids:
                try:
                    for line in open("/proc/%s/status" % p):
                        if line.startswith("VmRSS:"):
                            rss += int(line.split()[1])
                except OSError:
                    pass
            n = r.cmd("EVAL", DRAIN, "1", key)
            f.write("%.1f %d %d\n" % (time.monotonic() - t0, rss, n))
            f.flush()
            if stop:
                return
            k += 1
            while not stop and time.monotonic() < t0 + k * interval:
                time.sleep(min(0.05, max(0.0, t0 + k * interval - time.monotonic())))


def scraper(interval, url, out):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    k = 0
    with open(out, "a") as f:
        while not stop:
            # curl, as the timed scrapes: the client's own cost stays small
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "10",
                                "-w", "%{time_total} %{size_download}\n", url],
                               stdout=subprocess.PIPE, universal_newlines=True)
            f.write(r.stdout)
            f.flush()
            k += 1
            while not stop and time.monotonic() < t0 + k * interval:
                time.sleep(0.05)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "summary":
        summary(args[0], args[1])
    elif cmd == "metrics":
        metrics(args[0], args[1])
    elif cmd == "rawrequest":
        rawrequest(int(args[0]), args[1])
    elif cmd == "sampler":
        sampler(float(args[0]), int(args[1]), args[2], args[3], args[4:])
    elif cmd == "scraper":
        scraper(float(args[0]), args[1], args[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
