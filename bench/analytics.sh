#!/usr/bin/env bash
# bench/analytics.sh: what Tyk analytics records cost, and (with
# "metrics") what the Prometheus endpoint costs.
#
# Usage: bench/analytics.sh [analytics|metrics|all]     (default: analytics)
#
# analytics (the default)
#   Starts an upstream (nginx, "hello world\n"), nginx as a plain reverse
#   proxy (the reference), a redis-server and one Turnpike (WORKERS
#   workers, enable_analytics true, default analytics_config, storage on
#   that Redis) with three keyless APIs to the same upstream, listen paths
#   of the same length as nginx's /bench/:
#     nginx     nginx /bench/
#     off       Turnpike /notrk/  do_not_track: true (no record)
#     on        Turnpike /track/  a record per request, detail off
#     detailed  Turnpike /detal/  enable_detailed_recording: true on the API
#                                 (base64 RawRequest/RawResponse in the
#                                 record); the script says whether the
#                                 binary fills them in: when it does not,
#                                 "detailed" measures the same as "on"
#   After a WARMUP wrk run per target, the targets alternate RUNS times
#   (wrk -t THREADS -c CONNS -d DURATION --latency). Around each Turnpike
#   run: DEL of the list analytics-tyk-system-analytics (so Redis memory
#   does not grow), INFO commandstats and `show stat` (admin socket) before,
#   and after the run plus FLUSH_WAIT (the workers push every 200 ms) the
#   same again and LLEN of the list: the records of the run, one per
#   request. Then one LONG run (LONG_TARGET, default detailed) during which
#   the Turnpike workers' RSS is sampled every 5 s (and the list drained
#   each time, LLEN+DEL in one EVAL, counting the records).
#   Prints medians (requests/s, p50, p99, server CPU per request), the
#   ratios on/off, detailed/off, off/nginx, Redis commands (round trips)
#   per request, records vs requests, the RSS samples (first/last/max KiB)
#   and the targets: on >= 0.95x off, detailed >= 0.85x off, <= 0.02 Redis
#   round trips per request, one record per request, RSS flat (last - first
#   sample under load <= max(1 MiB, 3%)).
#
# metrics
#   Turnpike with "turnpike": {"metrics_port": P} and APIS (1000) keyless
#   APIs /m0000/ ... (definitions generated into a temp apps dir), analytics
#   off. Skipped, with a message, when GET /metrics does not answer 200.
#   TOUCH (3s) of wrk cycling through every API's path, then SCRAPES (20)
#   scrapes timed with curl -w %{time_total} (median and max ms, target
#   < 10 ms), then RUNS runs each of wrk on /m0000/ without ("no scrape")
#   and with ("scrape 1/s") a once-a-second scraper alongside, alternating:
#   target no measurable change (the ratio within the larger of 2% and the
#   run-to-run spread of the runs without scrape).
#
# CPU pinning as bench/run.sh: the proxy under test (master and workers) on
# cpu0, upstream + wrk + redis (+ the scrapers and samplers) on cpu1
# (WORKERS=1 on this 2-core machine). Loopback only, free ports picked by
# the kernel.
#
# Rerun
#   make && bench/analytics.sh                # ~3 min
#   bench/analytics.sh metrics                # ~1 min
#   RUNS=5 DURATION=10s LONG=120s bench/analytics.sh all
# Other settings: WORKERS (1), CONNS (50), THREADS (1), WARMUP (2s),
# FLUSH_WAIT (0.6 s), LONG_TARGET (detailed), APIS (1000), TOUCH (3s),
# SCRAPES (20), PIN=0, TURNPIKE_BIN, KEEP=0 (delete the temp dir on exit).
#
# Output: the tables on stdout; raw wrk outputs, configs and logs in a
# mktemp -d directory /tmp/turnpike-bench.XXXXXX (kept unless KEEP=0).
# Everything started is stopped on exit (trap).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODE=${1:-analytics}
case $MODE in
analytics | metrics | all) ;;
*) die "usage: bench/analytics.sh [analytics|metrics|all]" ;;
esac

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-50}
DURATION=${DURATION:-6s}
RUNS=${RUNS:-3}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-2s}
LONG=${LONG:-60s}
LONG_TARGET=${LONG_TARGET:-detailed}
FLUSH_WAIT=${FLUSH_WAIT:-0.6}
APIS=${APIS:-1000}
TOUCH=${TOUCH:-3s}
SCRAPES=${SCRAPES:-20}

for v in WORKERS CONNS RUNS THREADS APIS SCRAPES; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $LONG =~ ^[1-9][0-9]*s$ ]] || die "LONG must be seconds, e.g. 60s (got '$LONG')"
case $LONG_TARGET in on | detailed | off) ;; *) die "LONG_TARGET must be on, detailed or off" ;; esac
[ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
bench_check_tools

bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

bench_cpu_plan "$WORKERS"
STATS=("$PYTHON" "$BENCH_DIR/analytics_stats.py")
LIST=analytics-tyk-system-analytics

# rcli ARGS...: redis-cli on the benchmark's Redis.
rcli() { redis-cli -p "$RPORT" "$@"; }

# redis_snapshot FILE: INFO commandstats, "command calls" per line.
redis_snapshot() { bench_redis_cmdstats "$RPORT" | LC_ALL=C sort >"$1"; }

# The commands Turnpike runs inside scripts here: the node announcement
# (EVALSHA: TIME, ZREMRANGEBYSCORE, ZADD, PEXPIRE, ZCARD, every few seconds).
# They are no round trips of their own.
SCRIPT_CMDS="time zremrangebyscore zadd pexpire zcard"

# redis_delta A B: "# redis_rtt N" (commands clients sent: round trips at
# most) and "# redis_by_cmd ..." (all) between two snapshots, leaving out
# INFO and the EXCLUDE commands (ours).
redis_delta() {
    LC_ALL=C join -a 2 -e 0 -o 0,1.2,2.2 "$1" "$2" |
        awk -v ex=" info ${EXCLUDE:-} " -v sc=" $SCRIPT_CMDS " '
            index(ex, " " $1 " ") == 0 && $3 - $2 > 0 {
                by = by " " $1 "=" ($3 - $2)
                if (index(sc, " " $1 " ") == 0) s += $3 - $2 }
            END { print "# redis_rtt " s + 0; print "# redis_by_cmd" by }'
}

# tp_stat API: "requests recorded pushed dropped" from `show stat` (the
# API's row; the analytics line).
tp_stat() {
    bench_admin "$TP_SOCK" "show stat" | awk -F, -v api="$1" '
        function num(name) { return match($0, name " [0-9]+") ? substr($0, RSTART + length(name) + 1, RLENGTH - length(name) - 1) : 0 }
        $1 == api { req = $2 }
        /^# analytics:/ { rec = num("recorded"); pu = num("pushed"); dr = num("dropped") }
        END { print req + 0, rec + 0, pu + 0, dr + 0 }'
}

# tp_conf_redis DIR [JSON]: JSON merged into DIR/tyk.conf (one level deep), storage on our Redis, the admin socket.
tp_conf_redis() {
    "$PYTHON" - "$1" "$RPORT" "${2:-{\}}" <<'PY'
import json, sys
d, rport, extra = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
conf = json.load(open(d + "/tyk.conf"))
conf.update({"storage": {"type": "redis", "host": "127.0.0.1", "port": rport}})
conf["turnpike"]["admin_socket"] = d + "/admin.sock"
for k, v in extra.items():
    if isinstance(v, dict):
        conf.setdefault(k, {}).update(v)
    else:
        conf[k] = v
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
PY
}

declare -A SERVER URL WORKER_PIDS

# ---------------------------------------------------------------------------
run_analytics() {
    read -r UPORT NPORT TPORT RPORT < <(bench_free_ports 4)
    echo "== Analytics: records off / on / detailed vs nginx =="
    bench_machine
    echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1); $(redis-server --version | cut -d' ' -f1-3)"
    echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS runs alternating nginx/off/on/detailed,"
    echo "      warm-up $WARMUP per target; long run $LONG on $LONG_TARGET (worker RSS every 5 s)"
    if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
        echo "pinning: proxy under test on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis on cpu ${LOAD_CPUS:-any}"
    fi
    echo "raw outputs: $BENCH_TMP"
    echo

    bench_start_backends "$UPORT" "$NPORT" "$RPORT"
    local d=$BENCH_TMP/turnpike
    turnpike_conf "$d" "$TPORT" "$UPORT" "$WORKERS"
    rm -f "$d/apps/bench.json"
    tp_conf_redis "$d" '{"enable_analytics": true}'
    "$PYTHON" - "$d/apps" "$UPORT" <<'PY'
import json, sys
d, uport = sys.argv[1], int(sys.argv[2])
for api, path, extra in (("notrk", "/notrk/", {"do_not_track": True}),
                         ("track", "/track/", {}),
                         ("detal", "/detal/", {"enable_detailed_recording": True})):
    a = {"api_id": api, "name": api, "org_id": "default", "use_keyless": True, "active": True,
         "proxy": {"listen_path": path, "target_url": "http://127.0.0.1:%d/" % uport,
                   "strip_listen_path": True}}
    a.update(extra)
    json.dump(a, open("%s/%s.json" % (d, api), "w"))
PY
    TP_SOCK=$d/admin.sock
    bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$d/tyk.conf"
    local tp=$SPAWNED_PID t
    bench_wait_port "$TPORT" "$tp" turnpike
    SERVER[turnpike]=$tp SERVER[off]=$tp SERVER[on]=$tp SERVER[detailed]=$tp
    URL[nginx]="http://127.0.0.1:$NPORT/bench/"
    URL[off]="http://127.0.0.1:$TPORT/notrk/"
    URL[on]="http://127.0.0.1:$TPORT/track/"
    URL[detailed]="http://127.0.0.1:$TPORT/detal/"
    declare -A API=([off]=notrk [on]=track [detailed]=detal)
    local targets=(nginx off on detailed)
    for t in "${targets[@]}"; do
        bench_expect_200 "${URL[$t]}" "$t"
    done
    for t in nginx turnpike; do
        WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
    done
    WORKER_PIDS[off]=${WORKER_PIDS[turnpike]}

    # records at all? one request each, then the list
    sleep 0.5
    rcli del "$LIST" >/dev/null
    curl -s -o /dev/null "${URL[off]}"
    sleep 0.5
    [ "$(rcli llen "$LIST")" = 0 ] || die "off (do_not_track) wrote a record"
    curl -s -o /dev/null "${URL[on]}"
    sleep 0.5
    [ "$(rcli llen "$LIST")" = 1 ] || die "on: no record on $LIST after one request (log: $BENCH_TMP/turnpike.log)"
    rcli del "$LIST" >/dev/null
    curl -s -o /dev/null "${URL[detailed]}"
    sleep 0.5
    local raw
    raw=$("${STATS[@]}" rawrequest "$RPORT" "$LIST")
    if [ "$raw" -gt 0 ]; then
        DETAIL="detail recorded (RawRequest of $raw base64 bytes in the record)"
    else
        DETAIL="detail NOT in this binary (the record's RawRequest is empty): detailed measures the same as on"
    fi
    say "$DETAIL"
    rcli del "$LIST" >/dev/null

    mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup" "$BENCH_TMP/long"
    for t in "${targets[@]}"; do
        bench_run_wrk "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
        say "warm-up $t: $(awk '/^Requests\/sec/ { print $2 }' "$BENCH_TMP/warmup/$t.txt") req/s"
    done
    sleep "$FLUSH_WAIT"
    rcli del "$LIST" >/dev/null

    local r f s0 s1 n
    for ((r = 1; r <= RUNS; r++)); do
        for t in "${targets[@]}"; do
            f="$BENCH_TMP/wrk/$t.$r.txt"
            if [ "$t" = nginx ]; then
                bench_run_wrk "$t" "$DURATION" "$f"
            else
                rcli del "$LIST" >/dev/null
                redis_snapshot "$BENCH_TMP/r0"
                s0=$(tp_stat "${API[$t]}")
                bench_run_wrk "$t" "$DURATION" "$f"
                sleep "$FLUSH_WAIT"
                redis_snapshot "$BENCH_TMP/r1"
                s1=$(tp_stat "${API[$t]}")
                n=$(rcli llen "$LIST")
                {
                    redis_delta "$BENCH_TMP/r0" "$BENCH_TMP/r1"
                    echo "# records $n"
                    echo "$s0 $s1" | awk '{ print "# tp_requests " $5 - $1
                        print "# an_stat recorded=" $6 - $2 " pushed=" $7 - $3 " dropped=" $8 - $4 }'
                } >>"$f"
            fi
            say "run $r/$RUNS $t: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s${n:+, $n records}"
            n=
        done
    done
    rcli del "$LIST" >/dev/null

    # the long run: RSS every 5 s, the list drained at each sample
    t=$LONG_TARGET
    f="$BENCH_TMP/long/$t.txt"
    say "long run: $t for $LONG, worker RSS every 5 s"
    redis_snapshot "$BENCH_TMP/r0"
    s0=$(tp_stat "${API[$t]}")
    # shellcheck disable=SC2086 # one argument per worker pid
    bench_spawn sampler "$LOAD_CPUS" "${STATS[@]}" sampler 5 "$RPORT" "$LIST" "$BENCH_TMP/long/rss.txt" \
        ${WORKER_PIDS[turnpike]}
    local sp=$SPAWNED_PID
    bench_run_wrk "$t" "$LONG" "$f"
    sleep "$FLUSH_WAIT"
    kill -TERM "$sp"
    wait "$sp" || true
    bench_forget "$sp"
    redis_snapshot "$BENCH_TMP/r1"
    s1=$(tp_stat "${API[$t]}")
    {
        # the sampler's EVAL (LLEN, DEL inside) is ours, not Turnpike's
        EXCLUDE="eval llen del" redis_delta "$BENCH_TMP/r0" "$BENCH_TMP/r1"
        echo "# drained $(awk '{ s += $3 } END { print s + 0 }' "$BENCH_TMP/long/rss.txt")"
        echo "$s0 $s1" | awk '{ print "# tp_requests " $5 - $1
            print "# an_stat recorded=" $6 - $2 " pushed=" $7 - $3 " dropped=" $8 - $4 }'
    } >>"$f"

    bench_check_survived nginx off
    for t in "${targets[@]}"; do
        bench_expect_200 "${URL[$t]}" "$t"
    done

    echo
    {
        echo "$DETAIL"
        "${STATS[@]}" summary "$BENCH_TMP/wrk" "$BENCH_TMP/long"
        echo "Redis: $(rcli info memory | tr -d '\r' | grep '^used_memory_human:')"
    } | tee "$BENCH_TMP/summary.txt"
    bench_cleanup
}

# ---------------------------------------------------------------------------
run_metrics() {
    read -r UPORT TPORT RPORT MPORT < <(bench_free_ports 4)
    local dir=$BENCH_TMP/metrics
    mkdir -p "$dir"
    echo "== Metrics: Prometheus /metrics with $APIS keyless APIs =="
    bench_machine
    echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1))"
    echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency on one API, $RUNS runs alternating"
    echo "      without / with a scrape every second; $SCRAPES timed scrapes after $TOUCH over all APIs"
    if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
        echo "pinning: Turnpike on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis + curl on cpu ${LOAD_CPUS:-any}"
    fi
    echo "raw outputs: $dir"
    echo

    nginx_upstream_conf "$dir/upstream" "$UPORT"
    bench_spawn m-upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$dir/upstream" -c "$dir/upstream/nginx.conf"
    bench_wait_port "$UPORT" "$SPAWNED_PID" m-upstream
    mkdir -p "$dir/redis"
    bench_spawn m-redis "$LOAD_CPUS" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$dir/redis"
    bench_wait_port "$RPORT" "$SPAWNED_PID" m-redis

    local d=$dir/turnpike
    turnpike_conf "$d" "$TPORT" "$UPORT" "$WORKERS"
    rm -f "$d/apps/bench.json"
    tp_conf_redis "$d" "{\"turnpike\": {\"metrics_port\": $MPORT}}"
    "$PYTHON" - "$d/apps" "$UPORT" "$APIS" "$dir/paths.txt" <<'PY'
import json, sys
d, uport, n, paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(paths, "w") as p:
    for i in range(n):
        api = "m%04d" % i
        json.dump({"api_id": api, "name": api, "org_id": "default", "use_keyless": True,
                   "active": True,
                   "proxy": {"listen_path": "/%s/" % api,
                             "target_url": "http://127.0.0.1:%d/" % uport,
                             "strip_listen_path": True}},
                  open("%s/%s.json" % (d, api), "w"))
        p.write("/%s/\n" % api)
PY
    bench_spawn m-turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$d/tyk.conf"
    local tp=$SPAWNED_PID
    bench_wait_port "$TPORT" "$tp" m-turnpike
    SERVER[quiet]=$tp SERVER[scraped]=$tp SERVER[touch]=$tp
    URL[quiet]="http://127.0.0.1:$TPORT/m0000/"
    URL[scraped]=${URL[quiet]}
    URL[touch]="http://127.0.0.1:$TPORT/"
    local murl="http://127.0.0.1:$MPORT/metrics" code
    bench_expect_200 "${URL[quiet]}" m-turnpike
    bench_expect_200 "http://127.0.0.1:$TPORT/m$(printf %04d $((APIS - 1)))/" m-turnpike
    code=$(curl -s -o /dev/null --max-time 3 -w '%{http_code}' "$murl" 2>/dev/null || true)
    if [ "$code" != 200 ]; then
        echo "metrics: SKIPPED: GET $murl answered ${code:-nothing} (turnpike.metrics_port not implemented in this binary?)"
        bench_cleanup
        return 0
    fi
    WORKER_PIDS[quiet]=$(bench_children "$tp" | sort | tr '\n' ' ')

    # every API touched: wrk cycling through all the paths
    sed "s|@PATHS@|$dir/paths.txt|" >"$dir/paths.lua" <<'LUA'
-- every request to the next API's path, cycling through @PATHS@
local reqs = {}
local i = 0
function init(args)
    for p in io.lines("@PATHS@") do
        reqs[#reqs + 1] = wrk.format("GET", p)
    end
end
function request()
    i = i % #reqs + 1
    return reqs[i]
end
LUA
    mkdir -p "$dir/wrk" "$dir/warmup"
    WRK_SCRIPT=$dir/paths.lua bench_run_wrk touch "$TOUCH" "$dir/warmup/touch.txt"
    say "touch: $(awk '/^Requests\/sec/ { print $2 }' "$dir/warmup/touch.txt") req/s over $APIS APIs"
    curl -s "$murl" >"$dir/metrics.txt"
    local apis series
    apis=$(grep -c '^tyk_http_status{' "$dir/metrics.txt" || true)
    series=$(grep -vc '^#' "$dir/metrics.txt" || true)
    say "scrape: $(wc -c <"$dir/metrics.txt") bytes, $series samples, $apis tyk_http_status series"
    [ "$apis" -ge "$APIS" ] || die "only $apis tyk_http_status series after traffic to $APIS APIs (see $dir/metrics.txt)"

    local i
    : >"$dir/scrapes.txt"
    for ((i = 0; i < SCRAPES; i++)); do
        taskset -c "${LOAD_CPUS:-0-$(($(nproc) - 1))}" \
            curl -s -o /dev/null -w '%{time_total} %{size_download}\n' "$murl" >>"$dir/scrapes.txt"
    done

    bench_run_wrk quiet "$WARMUP" "$dir/warmup/quiet.txt"
    local r f sp
    for ((r = 1; r <= RUNS; r++)); do
        f="$dir/wrk/quiet.$r.txt"
        bench_run_wrk quiet "$DURATION" "$f"
        say "run $r/$RUNS no scrape: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
        f="$dir/wrk/scraped.$r.txt"
        bench_spawn m-scraper "$LOAD_CPUS" "${STATS[@]}" scraper 1 "$murl" "$dir/wrk/scraper.$r.txt"
        sp=$SPAWNED_PID
        bench_run_wrk scraped "$DURATION" "$f"
        kill -TERM "$sp"
        wait "$sp" || true
        bench_forget "$sp"
        say "run $r/$RUNS scrape 1/s: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
    done
    bench_check_survived quiet

    echo
    {
        echo "scrape: $(wc -c <"$dir/metrics.txt") bytes, $series samples, $apis tyk_http_status series ($APIS APIs)"
        "${STATS[@]}" metrics "$dir/wrk" "$dir/scrapes.txt"
    } | tee "$dir/summary.txt"
    bench_cleanup
}

case $MODE in
analytics) run_analytics ;;
metrics) run_metrics ;;
all)
    run_analytics
    echo
    run_metrics
    ;;
esac
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
