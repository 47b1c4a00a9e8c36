#!/usr/bin/env bash
# bench/uptime.sh: what the host checker costs: CPU of the master process
# (where the uptime tests run) while it probes HOSTS check URLs every
# TIME_WAIT seconds.
#
# What it measures
#   An nginx upstream (answering every path with 200) and a redis-server
#   without persistence; Turnpike (1 worker) with one API whose
#   uptime_tests.check_list has HOSTS entries (http://127.0.0.1:<port>/health/<i>,
#   all distinct URLs, so HOSTS probes per round), enable_uptime_analytics
#   on (one RPUSH per probe, as Tyk). After WARMUP seconds, the master's
#   on-CPU time (/proc/<pid>/task/*/schedstat, the master alone, not its
#   workers) over WINDOW seconds, RUNS times; prints each run's share of
#   one core, the probes done (admin `show hosts`), the CPU per probe, and
#   that per-probe cost scaled to HOSTS probes every TIME_WAIT seconds
#   (the interval itself is random around TIME_WAIT, as Tyk's), with the
#   median of that figure.
#   Target: < 1% of one core for 1,000 hosts every 10 s.
#
# Rerun
#   make && bench/uptime.sh
#   HOSTS=1000 TIME_WAIT=10 WINDOW=30 RUNS=3 bench/uptime.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HOSTS=${HOSTS:-1000}
TIME_WAIT=${TIME_WAIT:-10}
WINDOW=${WINDOW:-30}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-$((TIME_WAIT + 2))}
bench_check_tools
bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

read -r UPORT PORT RPORT <<<"$(bench_free_ports 3)"
nginx_upstream_conf "$BENCH_TMP/upstream" "$UPORT"
bench_spawn upstream "" "$NGINX_BIN" -p "$BENCH_TMP/upstream" -c "$BENCH_TMP/upstream/nginx.conf"
bench_wait_port "$UPORT" "$SPAWNED_PID" upstream
mkdir -p "$BENCH_TMP/redis"
bench_spawn redis "" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$BENCH_TMP/redis"
bench_wait_port "$RPORT" "$SPAWNED_PID" redis

dir=$BENCH_TMP/turnpike
mkdir -p "$dir/apps"
cat >"$dir/tyk.conf" <<JSON
{
  "listen_address": "127.0.0.1",
  "listen_port": $PORT,
  "app_path": "$dir/apps",
  "log_level": "warn",
  "storage": {"type": "redis", "host": "127.0.0.1", "port": $RPORT},
  "uptime_tests": {"config": {"time_wait": $TIME_WAIT, "failure_trigger_sample_size": 3,
                              "enable_uptime_analytics": true, "checker_pool_size": 50}},
  "turnpike": {"workers": 1, "admin_socket": "$dir/admin.sock"}
}
JSON
"$PYTHON" - "$HOSTS" "$UPORT" >"$dir/apps/up.json" <<'PY'
import json, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"api_id": "up", "name": "up", "use_keyless": True,
                  "proxy": {"listen_path": "/up/", "target_url": "http://127.0.0.1:%d/" % port},
                  "uptime_tests": {"check_list": [{"url": "http://127.0.0.1:%d/health/%d" % (port, i)}
                                                  for i in range(n)]}}))
PY
bench_spawn turnpike "" "$TURNPIKE_BIN" --conf "$dir/tyk.conf"
MASTER=$SPAWNED_PID
bench_wait_port "$PORT" "$MASTER" turnpike

master_ns() { cat /proc/"$MASTER"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
probes() { bench_admin "$dir/admin.sock" "show hosts" | awk '!/^#/ { s += $8 } END { print s + 0 }'; }

bench_machine
echo "uptime tests: $HOSTS check URLs every ${TIME_WAIT}s, analytics on; master CPU over ${WINDOW}s, $RUNS runs"
sleep "$WARMUP"
pcts=()
for r in $(seq "$RUNS"); do
    c0=$(master_ns) p0=$(probes) t0=$(date +%s%N)
    sleep "$WINDOW"
    c1=$(master_ns) p1=$(probes) t1=$(date +%s%N)
    pct=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.3f", 100 * c / t }')
    n=$((p1 - p0))
    [ "$n" -gt 0 ] || die "no probes in ${WINDOW}s"
    per=$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN { printf "%.1f", c / n / 1000 }')
    # Tyk's interval is random in [time_wait-3, time_wait+3): normalise to HOSTS every TIME_WAIT
    norm=$(awk -v u="$per" -v h="$HOSTS" -v w="$TIME_WAIT" 'BEGIN { printf "%.3f", u * h / w / 1e4 }')
    pcts+=("$norm")
    echo "run $r: master ${pct}% of one core, $n probes ($(awk -v p="$n" -v w="$WINDOW" 'BEGIN { printf "%.0f", p / w }')/s), ${per} us per probe -> ${norm}% for $HOSTS every ${TIME_WAIT}s"
done
echo "median: $(echo "${pcts[*]}" | bench_median)% of one core for $HOSTS hosts every ${TIME_WAIT}s (target < 1%)"
down=$(bench_admin "$dir/admin.sock" "show hosts" | awk '!/^#/ && $2 == "down"' | wc -l)
echo "hosts down at the end: $down (expected 0)"
