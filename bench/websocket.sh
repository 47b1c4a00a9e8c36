#!/usr/bin/env bash
# bench/websocket.sh: websocket echo through Turnpike vs nginx, one worker each.
#
# The upstream is build/tp_ws_bench serve (answers the upgrade with 101,
# then echoes every byte); nginx passes upgrades with proxy_set_header
# Upgrade $http_upgrade and Connection "Upgrade", Turnpike with
# http_server_options.enable_websockets. The load is build/tp_ws_bench echo:
# CONNS websockets, each sending one SIZE-byte masked binary frame and
# waiting for its echo, again and again for DURATION seconds.
#
# Prints per message size the medians over RUNS alternating runs of round
# trips per second and the servers' on-CPU time per round trip (schedstat,
# master and workers), with the ratios turnpike/nginx (rate) and
# nginx/turnpike (CPU: above 1, Turnpike spends less); then the resident
# memory per idle websocket (IDLE websockets held open, worker VmRSS delta
# over the count), both proxies; 0 skips it.
#
# Pinning as bench/run.sh: proxy on cpu0, upstream + load on cpu1.
# Rerun:  make && make tools && bench/websocket.sh
#         RUNS=5 DURATION=5 CONNS=50 SIZES="32 4096 65536" IDLE=10000 bench/websocket.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
SIZES=${SIZES:-32 4096}
IDLE=${IDLE:-10000}
WSB=${WSB:-$(dirname "$0")/../build/tp_ws_bench}
[ -x "$WSB" ] || die "$WSB not found: run make tools"

bench_check_tools
bench_setup_tmp
trap bench_on_exit EXIT
bench_cpu_plan 1
declare -A SERVER PORT
T=$BENCH_TMP
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

read -r UPORT NPORT TPORT <<<"$(bench_free_ports 3)"
bench_spawn wsup "$LOAD_CPUS" "$WSB" serve "$UPORT"
bench_wait_port "$UPORT" "$SPAWNED_PID" wsup

WEBSOCKETS=1 nginx_proxy_conf "$T/nginx" "$NPORT" "$UPORT" 1 "$(ulimit -n)" "$(ulimit -n)"
bench_spawn nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$T/nginx" -c "$T/nginx/nginx.conf"
SERVER[nginx]=$SPAWNED_PID
PORT[nginx]=$NPORT
bench_wait_port "$NPORT" "$SPAWNED_PID" nginx
WEBSOCKETS=1 turnpike_conf "$T/turnpike" "$TPORT" "$UPORT" 1
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$T/turnpike/tyk.conf"
SERVER[turnpike]=$SPAWNED_PID
PORT[turnpike]=$TPORT
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike


printf "%-8s %12s %12s %8s %10s %10s %8s\n" size "nginx msg/s" "tp msg/s" ratio "nginx us" "tp us" \
    "cpu n/t"
for size in $SIZES; do
    declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
    for i in $(seq "$RUNS"); do
        for tgt in nginx turnpike; do
            c0=$(bench_cpu_ns "${SERVER[$tgt]}")
            out=$(taskset -c "$LOAD_CPUS" "$WSB" echo "${PORT[$tgt]}" /bench/ws "$CONNS" "$DURATION" \
                "$size")
            c1=$(bench_cpu_ns "${SERVER[$tgt]}")
            echo "$tgt size=$size run=$i: $out" >>"$T/runs.txt"
            R[$tgt]+="$(echo "$out" | awk '{print $6}') "
            C[$tgt]+="$(echo "$out" | awk -v c=$((c1 - c0)) '{printf "%.2f", ($2 > 0 ? c / $2 / 1000 : 0)}') "
        done
    done
    n=$(echo "${R[nginx]}" | bench_median)
    t=$(echo "${R[turnpike]}" | bench_median)
    cn=$(echo "${C[nginx]}" | bench_median)
    ct=$(echo "${C[turnpike]}" | bench_median)
    printf "%-8s %12.0f %12.0f %8s %10.2f %10.2f %8s\n" "$size" "$n" "$t" "$(bench_ratio "$t" "$n")" \
        "$cn" "$ct" "$(bench_ratio "$cn" "$ct")"
done

# each websocket holds two sockets in the proxy's worker (client, upstream)
max_idle=$((($(ulimit -n) - 2000) / 2))
if [ "$IDLE" -gt "$max_idle" ]; then
    say "ulimit -n $(ulimit -n) allows $max_idle idle websockets (2 sockets each), not $IDLE"
    IDLE=$max_idle
fi
if [ "$IDLE" -gt 0 ]; then
    for tgt in turnpike nginx; do
        w=$(bench_children "${SERVER[$tgt]}" | tail -1)
        r0=$(bench_rss "$w")
        coproc HOLD { exec taskset -c "$LOAD_CPUS" "$WSB" idle "${PORT[$tgt]}" /bench/ws "$IDLE"; }
        hold_pid=$HOLD_PID
        read -r -t 300 line <&"${HOLD[0]}" || die "$tgt: the idle websockets did not open"
        sleep 2
        r1=$(bench_rss "$w")
        open=$(ls /proc/"$w"/fd | wc -l)
        exec {HOLD[1]}>&-
        wait "$hold_pid" 2>/dev/null || true
        printf "idle     %s: %s, worker fds %s: %.0f bytes per idle websocket (client + upstream sockets)\n" \
            "$tgt" "$line" "$open" "$(awk -v a="$r0" -v b="$r1" -v n="$IDLE" 'BEGIN {print (b - a) / n}')"
        sleep 1
    done
fi
say "raw outputs in $T"
