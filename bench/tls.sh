#!/usr/bin/env bash
# bench/tls.sh: Turnpike vs nginx with TLS, one worker each, same plain
# upstream (nginx returning "hello world\n"), same certificate.
#
# What it measures, per certificate type (ECDSA P-256, RSA-2048), as the
# median over RUNS alternating runs, with the ratio turnpike/nginx:
#   ka      keep-alive HTTPS requests/s (wrk -c CONNS, TLS terminated by the proxy)
#   close   wrk with "Connection: close": a new connection per request; wrk
#           keeps its TLS session across reconnects (SSL_clear), so these
#           are ticket-resumed handshakes plus one request each
#   full    full handshakes per second: STIME_CLIENTS parallel
#           `openssl s_time -new` (no session reuse), no request
#   resumed resumed handshakes per second: the same with -reuse
# then once (RSA-2048 upstream certificate):
#   up-ka   plain listener -> HTTPS upstream with keep-alive: Turnpike's
#           https target_url vs nginx proxy_pass https:// with keepalive
#           (verification off on both: proxy_ssl_verify off is nginx's default,
#           proxy_ssl_insecure_skip_verify on Turnpike)
# and last the resident memory per idle TLS connection:
# `TLS=ecdsa bench/idle-memory.sh` with IDLE_CONNS connections (0 skips it).
#
# Each test also gives the servers' on-CPU time per request or handshake
# (schedstat of master and workers, "us" columns) and its ratio nginx/turnpike
# (above 1: Turnpike spends less): on this 2-core machine the load side
# shares the run, so requests/s swing with it and CPU per request is the
# steadier comparison.
#
# Pinning as bench/run.sh: proxy on cpu0, upstream + load on cpu1.
# Rerun:  make && bench/tls.sh
#         RUNS=5 DURATION=10s CONNS=50 IDLE_CONNS=10000 bench/tls.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
STIME=${STIME:-4}
STIME_CLIENTS=${STIME_CLIENTS:-4}

bench_check_tools
command -v openssl >/dev/null || die "openssl not found"
bench_setup_tmp
trap bench_on_exit EXIT
bench_cpu_plan 1
declare -A SERVER URL
T=$BENCH_TMP
ulimit -n 65536 2>/dev/null || true

read -r UPORT NPORT TPORT NUPORT TUPORT TLSUP <<<"$(bench_free_ports 6)"
nginx_upstream_conf "$T/upstream" "$UPORT"
bench_spawn upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$T/upstream" -c "$T/upstream/nginx.conf"
bench_wait_port "$UPORT" "$SPAWNED_PID" upstream

rps() { grep '^Requests/sec' "$1" | awk '{print $2}'; }
cpureq() { # FILE: the server's on-CPU microseconds per request in that run
    awk '/^[ \t]*[0-9]+ requests in/ { n = $1 } /^# server_cpu_ns/ { c = $3 }
         END { printf "%.2f\n", (n > 0 ? c / n / 1000 : 0) }' "$1"
}

# wrk_pair TEST: RUNS alternating wrk runs; requests/s to R, CPU per request to C
wrk_pair() {
    local i tgt f
    for i in $(seq "$RUNS"); do
        for tgt in nginx turnpike; do
            f="$T/$1-$tgt-$i.txt"
            bench_run_wrk "$tgt" "$DURATION" "$f"
            R[$tgt]+="$(rps "$f") "
            C[$tgt]+="$(cpureq "$f") "
        done
    done
}

# stime TARGET PORT -new|-reuse: STIME_CLIENTS parallel s_time clients;
# handshakes per (wall) second to R, CPU per handshake to C
stime() {
    local c0 c1 i pids=() sum
    c0=$(bench_cpu_ns "${SERVER[$1]}")
    for ((i = 0; i < STIME_CLIENTS; i++)); do
        taskset -c "$LOAD_CPUS" openssl s_time -connect "127.0.0.1:$2" "$3" -time "$STIME" \
            >"$T/stime.$i" 2>/dev/null &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    c1=$(bench_cpu_ns "${SERVER[$1]}")
    # "N connections in S real seconds": the sum of N over the mean of S
    sum=$(cat "$T"/stime.* | awk '/connections in [0-9.]+ real seconds/ { n += $1; s += $4; k++ }
        END { printf "%d %.3f\n", n, (k > 0 ? s / k : 0) }')
    rm -f "$T"/stime.*
    R[$1]+="$(echo "$sum" | awk '{printf "%.1f", ($2 > 0 ? $1 / $2 : 0)}') "
    C[$1]+="$(echo "$sum" | awk -v c=$((c1 - c0)) '{printf "%.2f", ($1 > 0 ? c / $1 / 1000 : 0)}') "
}

# report CERT TEST: medians of R (requests/s) and C (CPU per request)
report() {
    local n t cn ct
    n=$(echo "${R[nginx]}" | bench_median)
    t=$(echo "${R[turnpike]}" | bench_median)
    cn=$(echo "${C[nginx]}" | bench_median)
    ct=$(echo "${C[turnpike]}" | bench_median)
    printf "%-8s %-8s %12.0f %12.0f %8s %10.2f %10.2f %8s\n" "$1" "$2" "$n" "$t" \
        "$(bench_ratio "$t" "$n")" "$cn" "$ct" "$(bench_ratio "$cn" "$ct")"
}

printf "%-8s %-8s %12s %12s %8s %10s %10s %8s\n" cert test nginx turnpike ratio \
    "nginx us" "tp us" "cpu n/t"
for alg in ecdsa rsa; do
    bench_mkcert "$T/$alg" "$alg"
    TLS_CERT=$T/$alg nginx_proxy_conf "$T/nginx-$alg" "$NPORT" "$UPORT" 1 20000 65536
    bench_spawn "nginx-$alg" "$PROXY_CPUS" "$NGINX_BIN" -p "$T/nginx-$alg" -c "$T/nginx-$alg/nginx.conf"
    SERVER[nginx]=$SPAWNED_PID
    bench_wait_port "$NPORT" "$SPAWNED_PID" nginx
    TLS_CERT=$T/$alg turnpike_conf "$T/tp-$alg" "$TPORT" "$UPORT" 1
    bench_spawn "tp-$alg" "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$T/tp-$alg/tyk.conf"
    SERVER[turnpike]=$SPAWNED_PID
    bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike
    URL[nginx]="https://127.0.0.1:$NPORT/bench/"
    URL[turnpike]="https://127.0.0.1:$TPORT/bench/"
    bench_expect_200 "${URL[nginx]}" "nginx-$alg"
    bench_expect_200 "${URL[turnpike]}" "tp-$alg"
    for test in ka close; do
        declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
        if [ "$test" = close ]; then
            WRK_SCRIPT="$T/close.lua"
            echo 'wrk.headers["Connection"] = "close"' >"$WRK_SCRIPT"
        fi
        wrk_pair "$alg-$test"
        unset WRK_SCRIPT
        report "$alg" "$test"
    done
    for mode in full resumed; do
        flag=-new
        [ "$mode" = resumed ] && flag=-reuse
        declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
        for i in $(seq "$RUNS"); do
            stime nginx "$NPORT" "$flag"
            stime turnpike "$TPORT" "$flag"
        done
        report "$alg" "$mode"
    done
    kill "${SERVER[nginx]}" "${SERVER[turnpike]}" 2>/dev/null || true
    sleep 1
done

# HTTPS upstream with keep-alive: a TLS nginx upstream, plain listeners
TLS_CERT=$T/rsa nginx_upstream_conf "$T/tlsup" "$TLSUP"
bench_spawn tlsup "$LOAD_CPUS" "$NGINX_BIN" -p "$T/tlsup" -c "$T/tlsup/nginx.conf"
bench_wait_port "$TLSUP" "$SPAWNED_PID" tlsup
UPSTREAM_TLS=1 nginx_proxy_conf "$T/nup" "$NUPORT" "$TLSUP" 1 4096
bench_spawn nup "$PROXY_CPUS" "$NGINX_BIN" -p "$T/nup" -c "$T/nup/nginx.conf"
SERVER[nginx]=$SPAWNED_PID
bench_wait_port "$NUPORT" "$SPAWNED_PID" nginx
UPSTREAM_TLS=1 turnpike_conf "$T/tup" "$TUPORT" "$TLSUP" 1
bench_spawn tup "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$T/tup/tyk.conf"
SERVER[turnpike]=$SPAWNED_PID
bench_wait_port "$TUPORT" "$SPAWNED_PID" turnpike
URL[nginx]="http://127.0.0.1:$NUPORT/bench/"
URL[turnpike]="http://127.0.0.1:$TUPORT/bench/"
bench_expect_200 "${URL[nginx]}" nup
bench_expect_200 "${URL[turnpike]}" tup
declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
wrk_pair up
report rsa up-ka
kill "${SERVER[nginx]}" "${SERVER[turnpike]}" 2>/dev/null || true

if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    TLS=ecdsa IDLE_CONNS=$IDLE_CONNS BENCH_TMP="$T/idle" "$(dirname "$0")/idle-memory.sh"
fi
say "raw outputs in $T"
