#!/usr/bin/env bash
# bench/idle-memory.sh: resident memory per idle keep-alive client connection,
# Turnpike (1 worker) and nginx (1 worker) side by side.
#
# What it measures
#   For each proxy (same setup as bench/run.sh: upstream nginx returning
#   "hello world\n", nginx reverse proxy, Turnpike with a keyless /bench/
#   API), the worker process's VmRSS (/proc/<pid>/status) before, then
#   IDLE_CONNS (default 10000) client connections are opened by
#   bench/holdconns.py, each completes one GET /bench/ with keep-alive and
#   stays open and idle; with all of them held, VmRSS again. Prints
#   (after - before) in total and divided by the connections held.
#   Only the worker's user-space memory counts: kernel socket buffers are
#   not in RSS, for either server. nginx preallocates its connection and
#   event structures for all worker_connections at start-up, so they are in
#   its "before" figure (shown), not in the per-connection delta.
#   Turnpike target: <= 4 KB (4096 bytes) per idle connection.
#   TLS=ecdsa or TLS=rsa: both proxies terminate TLS 1.2 with the same
#   certificate (ECDSA P-256 or RSA-2048, made here), the holder does a TLS
#   handshake on each connection before its GET (bench/holdconns.py --tls);
#   target then <= 48 KB (49152 bytes) per idle TLS connection.
#
# Limits: raises `ulimit -n` to 65536 if it may, else to the hard limit
# (needs at least IDLE_CONNS + 256); nginx gets worker_rlimit_nofile and
# worker_connections of min(that, 20000); Turnpike has no connection cap.
# Pinning as in run.sh: proxy on cpu0, upstream and the client on cpu1.
#
# Rerun
#   make && bench/idle-memory.sh
#   IDLE_CONNS=10000 bench/idle-memory.sh
#   TLS=ecdsa bench/idle-memory.sh
# Files (configs, logs) go to a mktemp -d directory (printed), or to
# $BENCH_TMP when run.sh calls it; everything started is stopped on exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

IDLE_CONNS=${IDLE_CONNS:-10000}
INFLIGHT=${INFLIGHT:-100}
SETTLE=${SETTLE:-2}
TLS=${TLS:-}
[[ $TLS =~ ^(|ecdsa|rsa)$ ]] || die "TLS must be ecdsa, rsa or empty"
[[ $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be a positive integer"
bench_check_tools
bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

# ---- file descriptor limit ----
want=65536
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || true
fi
if [ "$(ulimit -Hn)" = unlimited ] || [ "$(ulimit -Hn)" -ge "$want" ]; then
    ulimit -Sn "$want"
else
    ulimit -Sn "$(ulimit -Hn)"
fi
NOFILE=$(ulimit -Sn)
[ "$NOFILE" -ge $((IDLE_CONNS + 256)) ] ||
    die "ulimit -n is $NOFILE (hard $(ulimit -Hn)); need $((IDLE_CONNS + 256)) for $IDLE_CONNS connections: run as root"
NGX_CONNS=$((NOFILE < 20000 ? NOFILE : 20000))

bench_cpu_plan 1
read -r UPORT NPORT TPORT SPORT < <(bench_free_ports 4)

SCHEME=http HOLD_FLAGS=() LIMIT=4096
if [ -n "$TLS" ]; then
    bench_mkcert "$BENCH_TMP/cert" "$TLS"
    export TLS_CERT=$BENCH_TMP/cert
    SCHEME=https HOLD_FLAGS=(--tls) LIMIT=49152
fi
echo "== Idle keep-alive ${TLS:+TLS ($TLS) }connection memory ($IDLE_CONNS connections, 1 worker each) =="
bench_machine
echo "ulimit -n $NOFILE; nginx worker_connections $NGX_CONNS, worker_rlimit_nofile $NOFILE"
if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
    echo "pinning: proxy on cpu ${PROXY_CPUS:-any}; upstream + client on cpu ${LOAD_CPUS:-any}"
fi
echo "files: $BENCH_TMP"

TLS_CERT='' nginx_upstream_conf "$BENCH_TMP/upstream" "$UPORT"
bench_spawn upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/upstream" -c "$BENCH_TMP/upstream/nginx.conf"
bench_wait_port "$UPORT" "$SPAWNED_PID" upstream
bench_expect_200 "http://127.0.0.1:$UPORT/" upstream

nginx_proxy_conf "$BENCH_TMP/nginx" "$NPORT" "$UPORT" 1 "$NGX_CONNS" "$NOFILE"
bench_spawn nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/nginx" -c "$BENCH_TMP/nginx/nginx.conf"
NGINX_MASTER=$SPAWNED_PID
bench_wait_port "$NPORT" "$NGINX_MASTER" nginx
bench_expect_200 "$SCHEME://127.0.0.1:$NPORT/bench/" nginx

# The same nginx with only 1024 worker_connections: the difference in idle
# worker RSS is what nginx preallocates per worker_connections slot.
nginx_proxy_conf "$BENCH_TMP/nginx-small" "$SPORT" "$UPORT" 1 1024 "$NOFILE"
bench_spawn nginx-small "$PROXY_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/nginx-small" -c "$BENCH_TMP/nginx-small/nginx.conf"
NGINX_SMALL_MASTER=$SPAWNED_PID
bench_wait_port "$SPORT" "$NGINX_SMALL_MASTER" nginx-small
bench_expect_200 "$SCHEME://127.0.0.1:$SPORT/bench/" nginx-small

turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" 1
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
TURNPIKE_MASTER=$SPAWNED_PID
bench_wait_port "$TPORT" "$TURNPIKE_MASTER" turnpike
bench_expect_200 "$SCHEME://127.0.0.1:$TPORT/bench/" turnpike

# only_child MASTER NAME: the single worker of MASTER.
only_child() {
    local kids
    kids=$(bench_children "$1")
    [ "$(echo "$kids" | wc -w)" = 1 ] || die "$2: expected one worker process under pid $1, found: $kids"
    echo "$kids"
}

declare -A BEFORE AFTER HELD ALIVE WPID
measure() { # measure NAME MASTER PORT
    local name=$1 master=$2 port=$3 pid line held
    pid=$(only_child "$master" "$name")
    WPID[$name]=$pid
    sleep 1
    BEFORE[$name]=$(bench_rss "$pid")
    say "$name worker pid $pid: VmRSS before $((BEFORE[$name] / 1024)) KiB; opening $IDLE_CONNS connections"
    local cmd=("$PYTHON" "$BENCH_DIR/holdconns.py" "${HOLD_FLAGS[@]}" "$port" /bench/ "$IDLE_CONNS"
        "$INFLIGHT")
    [ -n "$LOAD_CPUS" ] && cmd=(taskset -c "$LOAD_CPUS" "${cmd[@]}")
    coproc HOLD { exec "${cmd[@]}" 2>>"$BENCH_TMP/holdconns-$name.log"; }
    local hold_pid=$HOLD_PID hold_in=${HOLD[1]} hold_out=${HOLD[0]}
    BENCH_PIDS+=("$hold_pid")
    if ! read -r -t 300 line <&"$hold_out"; then
        cat "$BENCH_TMP/holdconns-$name.log" >&2 || true
        die "$name: the connection holder did not finish opening connections"
    fi
    say "$name: $line"
    held=${line#*held=}
    held=${held%% *}
    HELD[$name]=$held
    [[ $line == *" failed=0 "* ]] ||
        say "WARNING: $name: some connections failed (see $BENCH_TMP/holdconns-$name.log)"
    sleep "$SETTLE"
    kill -0 "$pid" 2>/dev/null || die "$name worker (pid $pid) died while holding connections"
    AFTER[$name]=$(bench_rss "$pid")
    echo check >&"$hold_in"
    read -r -t 60 line <&"$hold_out" || die "$name: the holder did not answer"
    ALIVE[$name]=${line#ALIVE }
    # close the holder's stdin: it closes its connections and exits
    exec {hold_in}>&-
    wait "$hold_pid" 2>/dev/null || true
    bench_forget "$hold_pid"
    [ "${ALIVE[$name]}" = "$held" ] ||
        say "WARNING: $name closed $((held - ALIVE[$name])) of the $held idle connections during the measurement"
    (( held > 0 )) || die "$name: no connection could be held"
}

SMALL_RSS=$(bench_rss "$(only_child "$NGINX_SMALL_MASTER" nginx-small)")
measure turnpike "$TURNPIKE_MASTER" "$TPORT"
sleep 1
measure nginx "$NGINX_MASTER" "$NPORT"

echo
printf '%-10s %8s %12s %12s %14s %14s\n' target conns "rss before" "rss after" "total delta" "per conn"
for t in turnpike nginx; do
    d=$((AFTER[$t] - BEFORE[$t]))
    printf '%-10s %8s %10s K %10s K %12s K %10s bytes\n' "$t" "${ALIVE[$t]}" \
        $((BEFORE[$t] / 1024)) $((AFTER[$t] / 1024)) $((d / 1024)) $((d / HELD[$t]))
done
tp=$(((AFTER[turnpike] - BEFORE[turnpike]) / HELD[turnpike]))
ng=$(((AFTER[nginx] - BEFORE[nginx]) / HELD[nginx]))
if [ "$ng" -gt 0 ]; then
    ratio=$(awk -v a="$tp" -v b="$ng" 'BEGIN { printf "%.2f", a / b }')
else
    ratio=n/a
fi
verdict=$([ "$tp" -le "$LIMIT" ] && echo "meets" || echo "MISSES")
echo "ratio turnpike/nginx per connection: ${ratio}x; turnpike $tp bytes/conn $verdict the <= $LIMIT target"
slot=$(((BEFORE[nginx] - SMALL_RSS) / (NGX_CONNS - 1024)))
echo "nginx preallocates ~$slot bytes per worker_connections slot (idle worker: $((BEFORE[nginx] / 1024)) K with $NGX_CONNS slots,"
echo "  $((SMALL_RSS / 1024)) K with 1024), in its 'before' above; counting one slot per connection: ~$((ng + slot)) bytes/conn"
echo "(worker VmRSS delta = user-space memory; kernel socket memory is not included, for either)"
