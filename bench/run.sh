#!/usr/bin/env bash
# bench/run.sh: Turnpike vs nginx as a reverse proxy, same upstream, same load.
#
# What it measures
#   1. Throughput and latency. Starts an upstream (nginx, 1 worker, returns
#      "hello world\n"), nginx as a plain reverse proxy to it (keepalive pool
#      of 500, proxy_http_version 1.1, Connection "", access_log off,
#      WORKERS workers) and Turnpike with one keyless API on /bench/ to the
#      same upstream (WORKERS workers, max_idle_connections_per_host 500).
#      After a WARMUP wrk run per target, it alternates nginx and turnpike
#      RUNS times with `wrk -t THREADS -c CONNS -d DURATION --latency`, then
#      prints per target the medians over the runs of requests/s, p50 and
#      p99, and the ratios turnpike/nginx. Each round also drives the
#      upstream directly (the "upstream*" line): the load side (upstream +
#      wrk on their CPUs) must reach well above the proxy rates, or the
#      proxies are not what is being measured.
#      Extra columns: "srv cpu" is the on-CPU time of the server's processes
#      (schedstat, all threads) as % of one core and "cpu/req" that time per
#      request, a CPU-cost comparison that holds even when the load side is
#      saturated; "cpuP"/"cpuL" are the busy % (incl. irq/softirq) of the
#      proxy's CPUs and of the upstream+wrk CPUs during the run.
#      A second reference line ("upstream**", one run) drives the upstream
#      alone on its CPU with wrk on the proxy's CPU: the upstream's own
#      capacity.
#      On a 2-core machine the load side (wrk + upstream sharing cpu1) costs
#      about as much CPU per request as the proxy, so with the default
#      pinning both CPUs run near 100%: compare cpuP/cpuL and upstream*
#      against the proxy rates before reading much into small rps ratios.
#   2. Resident memory per idle keep-alive connection (bench/idle-memory.sh,
#      run at the end unless IDLE=0): see that script.
#
# CPU pinning (taskset), on this 2-core machine with WORKERS=1: the proxy
# under test (nginx or Turnpike, master and workers) on cpu0; the upstream
# and wrk on cpu1. In general: proxy on cpus 0..WORKERS-1, upstream + wrk on
# the others; no pinning when WORKERS >= cores. PIN=0 disables it;
# PROXY_CPUS=... LOAD_CPUS=... (taskset -c lists) override it.
#
# Rerun
#   make && bench/run.sh                      # defaults: ~3 min + idle test
#   WORKERS=1 CONNS=50 DURATION=10s RUNS=5 bench/run.sh
#   IDLE=0 RUNS=3 DURATION=5s bench/run.sh    # quick, throughput only
# Other settings: THREADS (wrk -t, 1), WARMUP (2s), DIRECT=0 (skip the
# upstream reference runs), IDLE_CONNS (10000), TURNPIKE_BIN, KEEP=0 (delete
# the temp dir on exit instead of keeping it).
#
# Output: the table on stdout; raw wrk outputs, configs and logs in a
# mktemp -d directory /tmp/turnpike-bench.XXXXXX whose path is printed (left
# in place so the raw outputs can be read, unless KEEP=0). Everything started is
# stopped on exit (trap).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-50}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-5}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2s}
DIRECT=${DIRECT:-1}
IDLE=${IDLE:-1}

for v in WORKERS CONNS RUNS THREADS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
bench_check_tools

bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

bench_cpu_plan "$WORKERS"
read -r UPORT NPORT TPORT < <(bench_free_ports 3)

echo "== Turnpike vs nginx reverse proxy =="
bench_machine
echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1); $("$WRK_BIN" -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS runs alternating nginx/turnpike, warm-up $WARMUP per target"
echo "proxies: $WORKERS worker(s) each; upstream: nginx, 1 worker, 'hello world\\n'"
if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
    echo "pinning: proxy under test on cpu ${PROXY_CPUS:-any}; upstream + wrk on cpu ${LOAD_CPUS:-any}"
else
    echo "pinning: none"
fi
echo "ports: upstream $UPORT, nginx $NPORT, turnpike $TPORT (127.0.0.1)"
echo "raw outputs: $BENCH_TMP"
echo

# ---- start the three servers ----
nginx_upstream_conf "$BENCH_TMP/upstream" "$UPORT"
bench_spawn upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/upstream" -c "$BENCH_TMP/upstream/nginx.conf"
declare -A SERVER=([direct]=$SPAWNED_PID [alone]=$SPAWNED_PID)
bench_wait_port "$UPORT" "$SPAWNED_PID" upstream
bench_expect_200 "http://127.0.0.1:$UPORT/" upstream

nginx_proxy_conf "$BENCH_TMP/nginx" "$NPORT" "$UPORT" "$WORKERS" 4096
bench_spawn nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/nginx" -c "$BENCH_TMP/nginx/nginx.conf"
SERVER[nginx]=$SPAWNED_PID
bench_wait_port "$NPORT" "$SPAWNED_PID" nginx
bench_expect_200 "http://127.0.0.1:$NPORT/bench/" nginx

turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" "$WORKERS"
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
SERVER[turnpike]=$SPAWNED_PID
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike
bench_expect_200 "http://127.0.0.1:$TPORT/bench/" turnpike

# Worker pids now, to notice a worker that crashed and was replaced.
declare -A WORKER_PIDS
for t in nginx turnpike; do
    WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
done

declare -A URL=(
    [direct]="http://127.0.0.1:$UPORT/"
    [alone]="http://127.0.0.1:$UPORT/"
    [nginx]="http://127.0.0.1:$NPORT/bench/"
    [turnpike]="http://127.0.0.1:$TPORT/bench/"
)
TARGETS=(nginx turnpike)
[ "$DIRECT" = 1 ] && TARGETS+=(direct)

mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup"
for t in "${TARGETS[@]}"; do
    say "warm-up $t ($WARMUP)"
    bench_run_wrk "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
done
# Reference: the upstream by itself, wrk on the proxy's CPUs (once).
if [ "$DIRECT" = 1 ] && [ -n "$PROXY_CPUS" ] && [ -n "$LOAD_CPUS" ]; then
    bench_run_wrk alone "$DURATION" "$BENCH_TMP/wrk/alone.1.txt" "$PROXY_CPUS"
    say "upstream alone (wrk on cpu $PROXY_CPUS): $(awk '/^Requests\/sec/ { print $2 }' "$BENCH_TMP/wrk/alone.1.txt") req/s"
fi
for ((r = 1; r <= RUNS; r++)); do
    for t in "${TARGETS[@]}"; do
        f="$BENCH_TMP/wrk/$t.$r.txt"
        bench_run_wrk "$t" "$DURATION" "$f"
        say "run $r/$RUNS $t: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
    done
done

bench_check_survived nginx turnpike
bench_expect_200 "${URL[turnpike]}" turnpike

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" | tee "$BENCH_TMP/summary.txt"
bench_cleanup

if [ "$IDLE" = 1 ]; then
    echo
    BENCH_TMP="$BENCH_TMP/idle" bash "$BENCH_DIR/idle-memory.sh" | tee -a "$BENCH_TMP/summary.txt"
fi
echo
if [ "${KEEP:-1}" = 0 ]; then
    echo "(KEEP=0: $BENCH_TMP is removed on exit)"
else
    echo "raw outputs and logs: $BENCH_TMP (summary.txt, wrk/*.txt, warmup/*.txt, *.log)"
fi
