#!/usr/bin/env python3
"""bench/profile_report.py DIR TARGET...: the tables of bench/PROFILE.md
from bench_profile's files in DIR (bench/lib.sh): per target, system calls
per request by name (strace -c over a wrk run) and CPU per request by part
and by user-space function (perf record over another), each per request of
that run (wrk's request count). perf's samples include the time the
process spent in the kernel on its own behalf (system calls, and the
network stack's work done in its context), not softirq work done for it
elsewhere."""
import glob
import os
import re
import subprocess
import sys


def requests(wrk_file):
    for line in open(wrk_file):
        m = re.match(r"\s*(\d+) requests in", line)
        if m:
            return int(m.group(1))
    raise SystemExit("no request count in " + wrk_file)


def syscalls(d, t):
    n = requests(os.path.join(d, t + ".strace.wrk"))
    calls = {}
    for f in glob.glob(os.path.join(d, t + ".strace.[0-9]*")):
        for line in open(f):
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                name = parts[-1]
                c = int(parts[3])
                calls[name] = calls.get(name, 0) + c
    return n, calls


def perf_table(d, t, sort, extra=()):
    data = os.path.join(d, t + ".perf.data")
    if not os.path.exists(data):
        return None
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                          "--stdio", "-g", "none", "-F", "sample," + sort] + list(extra),
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s+(\d+)\s+(.*\S)", line)
        if m and not line.lstrip().startswith("#"):
            rows.append((int(m.group(1)), m.group(2)))
    return rows


def main():
    d, targets = sys.argv[1], sys.argv[2:]
    for t in targets:
        n, calls = syscalls(d, t)
        total = sum(calls.values())
        print("### %s" % t)
        print()
        print("system calls per request (strace -c, %d requests): %.2f" % (n, total / n))
        print()
        print("| call | per request |")
        print("|---|---|")
        for name, c in sorted(calls.items(), key=lambda kv: -kv[1]):
            if c / n >= 0.005:
                print("| %s | %.3f |" % (name, c / n))
        print()
        freq_file = os.path.join(d, t + ".perf.freq")
        if not os.path.exists(freq_file):
            continue
        freq = int(open(freq_file).read())
        pn = requests(os.path.join(d, t + ".perf.wrk"))
        us = lambda s: s / freq / pn * 1e6
        dsos = perf_table(d, t, "dso")
        allsamples = sum(s for s, _ in dsos)
        print("CPU per request (perf, %d requests): %.2f us" % (pn, us(allsamples)))
        print()
        print("| part | us per request |")
        print("|---|---|")
        for s, name in sorted(dsos, key=lambda r: -r[0]):
            if us(s) >= 0.02:
                print("| %s | %.2f |" % (name.replace(" (deleted)", ""), us(s)))
        print()
        syms = perf_table(d, t, "symbol")
        user = [(s, name) for s, name in syms if "[k]" not in name]
        print("user-space functions, the top 15:")
        print()
        print("| function | us per request |")
        print("|---|---|")
        for s, name in sorted(user, key=lambda r: -r[0])[:15]:
            # perf pads the column and adds its srcline fields ("-  -")
            print("| %s | %.3f |" % (name.replace("[.] ", "").split("  ")[0].strip(), us(s)))
        print()


if __name__ == "__main__":
    main()
