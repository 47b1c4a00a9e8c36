#!/usr/bin/python3
"""bench/wrkstats.py: summarises raw `wrk --latency` outputs.

    wrkstats.py DIR [A/B ...] [--json=FILE]
        reads DIR/<target>.<run>.txt (targets: nginx, turnpike, keyless,
        auth, localrate, local, exact, local50, exact50, direct, alone,
        hs256, rs256, es256, basic, mw10, nginx_cache, cached, jspre, virtual,
        recorded) and
        prints the median table, then the ratios A/B of the medians (default:
        turnpike/nginx); --json writes the medians to FILE as well

Each file is one wrk run. Per target it takes the median over the runs of
requests/s, p50 and p99 (each median taken on its own), counts errors
(socket errors, non-2xx/3xx responses) and prints the ratios.

Optional lines a script appends to a run's file (bench/limits.sh):
    # redis_rtt N       Redis commands sent by clients (not run by scripts)
    # redis_scripts N   of them EVALSHA/EVAL
    # redis_by_cmd a=N b=N ...   INFO commandstats deltas by command
    # tp_stat requests=N 2xx=N 4xx=N 5xx=N rate_limited=N quota_exceeded=N
                        Turnpike's `show stat` deltas for the API under test
When tp_stat is there, the 429s Turnpike counted (rate_limited) are not
errors: they are reported in their own table, with the share of requests.
"""
import json
import os
import re
import statistics
import sys

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError("bad latency %r" % text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse(path):
    with open(path) as f:
        out = f.read()
    r = {}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if not m:
        raise ValueError("%s: no Requests/sec line" % path)
    r["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.0+)?%%\s+(\S+)" % pct, out, re.M)
        if not m:
            raise ValueError("%s: no %s%% latency line (run wrk with --latency)" % (path, pct))
        r["p" + pct] = to_ms(m.group(1))
    m = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)", out)
    r["requests"] = int(m.group(1))
    secs = to_ms(m.group(2) + m.group(3)) / 1e3
    m = re.search(r"^# server_cpu_ns (\d+)", out, re.M)
    if m:
        ns = int(m.group(1))
        r["cpu"] = 100.0 * ns / (secs * 1e9)        # % of one core
        r["cpu_req"] = ns / 1e3 / max(r["requests"], 1)  # us per request
    for k in ("proxy_cpus_busy_pct", "load_cpus_busy_pct"):
        m = re.search(r"^# %s (\d+)" % k, out, re.M)
        if m:
            r[k] = float(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    non2xx = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        non2xx = int(m.group(1))
    r["ok_rps"] = r["rps"] * (1 - non2xx / max(r["requests"], 1))
    m = re.search(r"^# tp_stat (.*)$", out, re.M)
    if m:
        tp = {k: int(v) for k, v in (x.split("=") for x in m.group(1).split())}
        r["tp"] = tp
        r["share429"] = tp["rate_limited"] / max(tp["requests"], 1)
        # wrk stops counting with responses still in flight: Turnpike may
        # have counted a few 429s more than wrk saw
        non2xx = max(0, non2xx - tp["rate_limited"])
    r["errors"] = errors + non2xx
    m = re.search(r"^# redis_cmds (\d+)", out, re.M)
    if m:
        r["redis_req"] = int(m.group(1)) / max(r["requests"], 1)
    for k in ("rtt", "scripts"):
        m = re.search(r"^# redis_%s (\d+)" % k, out, re.M)
        if m:
            r[k + "_req"] = int(m.group(1)) / max(r["requests"], 1)
    m = re.search(r"^# redis_by_cmd(.*)$", out, re.M)
    if m:
        r["by_cmd"] = {k: int(v) for k, v in (x.split("=") for x in m.group(1).split())}
    return r


def fmt_ms(ms):
    return "%.3fms" % ms if ms < 10 else "%.2fms" % ms


def main():
    d = sys.argv[1]
    json_out = None
    args = []
    for a in sys.argv[2:]:
        if a.startswith("--json="):
            json_out = a[len("--json="):]
        else:
            args.append(a)
    ratios = [a.split("/") for a in args] or [["turnpike", "nginx"]]
    runs = {}
    for name in sorted(os.listdir(d)):
        m = re.fullmatch(r"(\w+)\.(\d+)\.txt", name)
        if m:
            runs.setdefault(m.group(1), []).append((int(m.group(2)), parse(os.path.join(d, name))))
    if not runs:
        sys.exit("wrkstats: no wrk outputs in %s" % d)
    med = {}
    for t, rs in runs.items():
        rs.sort()
        vals = [r for _, r in rs]
        keys = ["rps", "p50", "p99", "ok_rps"] + [
            k for k in ("cpu", "cpu_req", "proxy_cpus_busy_pct", "load_cpus_busy_pct", "redis_req",
                        "rtt_req", "scripts_req", "share429")
            if all(k in v for v in vals)]
        med[t] = {k: statistics.median(v[k] for v in vals) for k in keys}
        med[t]["errors"] = sum(v["errors"] for v in vals)
        if all("tp" in v for v in vals):
            med[t]["tp"] = {k: sum(v["tp"][k] for v in vals) for k in vals[0]["tp"]}
        if all("by_cmd" in v for v in vals):
            reqs = sum(v["requests"] for v in vals)
            names = sorted({k for v in vals for k in v["by_cmd"]})
            med[t]["by_cmd_req"] = {k: sum(v["by_cmd"].get(k, 0) for v in vals) / max(reqs, 1)
                                    for k in names}
        med[t]["n"] = len(vals)
        med[t]["all_rps"] = [v["rps"] for v in vals]

    print("%-11s %11s %9s %9s %8s %9s %6s %6s %6s %4s   %s" % (
        "target", "rps(median)", "p50", "p99", "srv cpu", "cpu/req", "cpuP", "cpuL",
        "errors", "runs", "rps per run"))
    labels = {"nginx": "nginx", "turnpike": "turnpike", "keyless": "keyless", "auth": "auth",
              "localrate": "local-rate", "local": "local", "exact": "exact",
              "local50": "local-50%", "exact50": "exact-50%",
              "direct": "upstream*", "alone": "upstream**",
              "hs256": "jwt-hs256", "rs256": "jwt-rs256", "es256": "jwt-es256",
              "basic": "basic", "mw10": "mw10", "nginx_cache": "nginx-cache",
              "cached": "cached", "jspre": "js-pre", "virtual": "js-virtual",
              "recorded": "recorded"}
    for t in labels:
        if t not in med:
            continue
        s = med[t]
        cpu = "%.0f%%" % s["cpu"] if "cpu" in s else "-"
        cpr = "%.2fus" % s["cpu_req"] if "cpu_req" in s else "-"
        busy_p = "%.0f%%" % s["proxy_cpus_busy_pct"] if "proxy_cpus_busy_pct" in s else "-"
        busy_l = "%.0f%%" % s["load_cpus_busy_pct"] if "load_cpus_busy_pct" in s else "-"
        print("%-11s %11.0f %9s %9s %8s %9s %6s %6s %6d %4d   %s" % (
            labels[t], s["rps"], fmt_ms(s["p50"]), fmt_ms(s["p99"]), cpu, cpr, busy_p, busy_l,
            s["errors"], s["n"], " ".join("%.0f" % x for x in s["all_rps"])))
    for a, b in ratios:
        if a not in med or b not in med:
            continue
        x, y = med[a], med[b]
        line = "ratio %s/%s: rps %.2fx, p99 %.2fx (p50 %.2fx" % (
            a, b, x["rps"] / y["rps"], x["p99"] / y["p99"], x["p50"] / y["p50"])
        if "cpu_req" in x and "cpu_req" in y:
            line += ", cpu/req %.2fx" % (x["cpu_req"] / y["cpu_req"])
        print(line + ")")
    if any("rtt_req" in s or "tp" in s for s in med.values()):
        print("%-11s %9s %9s %9s %9s %9s %9s %9s" % (
            "target", "redis/req", "rtt/req", "evalsha", "2xx/s", "429s", "429 share", "others"))
        for t in labels:
            if t not in med:
                continue
            s = med[t]
            tp = s.get("tp")
            print("%-11s %9s %9s %9s %9.0f %9s %9s %9s" % (
                labels[t],
                "%.4f" % s["redis_req"] if "redis_req" in s else "-",
                "%.4f" % s["rtt_req"] if "rtt_req" in s else "-",
                "%.4f" % s["scripts_req"] if "scripts_req" in s else "-",
                s["ok_rps"],
                "%d" % tp["rate_limited"] if tp else "-",
                "%.1f%%" % (100 * s["share429"]) if "share429" in s else "-",
                "%d" % (tp["requests"] - tp["2xx"] - tp["rate_limited"]) if tp else "-"))
        print("redis/req: every command in INFO commandstats but INFO, per request, including"
              " those run inside\n  Lua scripts; rtt/req: the commands clients sent (round"
              " trips), evalsha: of them EVALSHA/EVAL;\n  2xx/s: median of the 2xx responses per"
              " second; 429s, others (non-2xx, non-429): Turnpike's\n  `show stat`, summed over"
              " the runs; 429 share: median per run")
        for t in labels:
            if t in med and med[t].get("by_cmd_req"):
                print("redis commands per request by name (%s): %s" % (labels[t], " ".join(
                    "%s %.4f" % (k, v) for k, v in med[t]["by_cmd_req"].items() if v >= 0.00005)
                    or "none"))
    else:
        for t in labels:
            if t in med and "redis_req" in med[t]:
                print("redis commands per request (%s, INFO commandstats, median of runs): %.4f"
                      % (t, med[t]["redis_req"]))
    proxies = [med[t]["rps"] for t in ("nginx", "turnpike", "keyless", "auth") if t in med]
    best = max(proxies) if proxies else 0
    print("srv cpu: on-CPU time of the server's own processes (schedstat; excludes most"
          " softirq), % of one core;\n"
          "cpu/req: that time per request; cpuP / cpuL: busy % of the proxy's CPUs / of the"
          " upstream+wrk CPUs (incl. irq, softirq)")
    if "direct" in med:
        line = ("upstream*:  wrk straight to the upstream, same CPUs as in the proxy runs"
                " (ceiling of the load side)")
        if best:
            line += "; %.2fx the faster proxy" % (med["direct"]["rps"] / best)
        print(line)
    if "alone" in med:
        line = "upstream**: the upstream alone on its CPU, wrk on the proxy's CPU (1 run)"
        if best:
            line += "; %.2fx the faster proxy" % (med["alone"]["rps"] / best)
        print(line)
    if any(s["errors"] for s in med.values()):
        print("WARNING: some runs had socket errors or non-2xx responses; see the raw outputs")
    if json_out:
        with open(json_out, "w") as f:
            json.dump(med, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
