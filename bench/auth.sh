#!/usr/bin/env bash
# bench/auth.sh: the cost of authentication. One Turnpike serves two APIs to
# the same upstream: /bench/ keyless and /auth/ with token auth (hashed keys,
# a policy applied to every key, sessions in Redis). nginx as a plain
# reverse proxy is the reference.
#
# What it does
#   Starts an upstream (nginx, "hello world\n"), nginx as a reverse proxy,
#   a redis-server and Turnpike (WORKERS workers, hash_keys true, the
#   default hash function, a policy file with one policy granting /auth/).
#   Creates KEYS keys through POST /tyk/keys (each with
#   apply_policies ["bench-policy"]), then drives three targets with the
#   same wrk script (bench/auth.lua), which sends every request with
#   "Authorization: <key>", cycling through all the keys, so every
#   connection uses thousands of keys and every target gets the same bytes:
#     nginx    nginx /bench/  (the header is just forwarded)
#     keyless  Turnpike /bench/ (use_keyless: the header is forwarded)
#     auth     Turnpike /auth/  (key checked, policy applied, every request)
#   After a warm-up per target (which also fills the session cache: one
#   Redis GET per key), the targets alternate RUNS times. The session cache
#   keeps an entry local_session_cache.cached_session_timeout (10 s), less
#   than the other two targets' runs take, so every auth run is preceded by
#   an unmeasured REWARM (2 s) run that fills the cache again: the measured
#   run is steady state. The Redis commands per request are counted for
#   every measured run from INFO commandstats (all commands except the INFO
#   calls themselves); in steady state they are the background refreshes of
#   the keys in use (one GET per key every ~7.5 s), which no request waits
#   for. Prints medians (requests/s, p50, p99, server CPU per request)
#   and the ratios auth/keyless, auth/nginx and keyless/nginx.
#
# CPU pinning as bench/run.sh: the proxy under test on cpu0, upstream +
# wrk + redis on cpu1 (WORKERS=1 on this 2-core machine).
#
# Rerun
#   make && bench/auth.sh                     # ~2.5 min
#   KEYS=5000 RUNS=5 DURATION=10s bench/auth.sh
# Other settings: WORKERS (1), CONNS (50), THREADS (1), WARMUP (3s), PIN=0,
# TURNPIKE_BIN, KEEP=0.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-50}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-5}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-3s}
REWARM=${REWARM:-2s}
KEYS=${KEYS:-3000}

for v in WORKERS CONNS RUNS THREADS KEYS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
bench_check_tools

bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

bench_cpu_plan "$WORKERS"
read -r UPORT NPORT TPORT RPORT < <(bench_free_ports 4)
SECRET=bench-secret

echo "== Authenticated traffic: Turnpike keyed vs keyless vs nginx =="
bench_machine
echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1); $(redis-server --version | cut -d' ' -f1-3)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s auth.lua ($KEYS keys, one per request, cycling),"
echo "      $RUNS runs alternating nginx/keyless/auth, warm-up $WARMUP per target"
if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
    echo "pinning: proxy under test on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis on cpu ${LOAD_CPUS:-any}"
fi
echo "raw outputs: $BENCH_TMP"
echo

# ---- servers ----
bench_start_backends "$UPORT" "$NPORT" "$RPORT"

turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" "$WORKERS"
"$PYTHON" - "$BENCH_TMP/turnpike" "$RPORT" "$UPORT" "$SECRET" <<'PY'
import json, sys
d, rport, uport, secret = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conf = json.load(open(d + "/tyk.conf"))
conf.update({"secret": secret, "hash_keys": True,
             "storage": {"type": "redis", "host": "127.0.0.1", "port": rport},
             "policies": {"policy_source": "file", "policy_record_name": d + "/policies.json"}})
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
json.dump({"bench-policy": {"id": "bench-policy", "name": "bench", "org_id": "default", "active": True,
                            "rate": 1000000, "per": 1, "quota_max": -1,
                            "access_rights": {"auth": {"api_id": "auth", "api_name": "auth",
                                                       "versions": ["Default"]}}}},
          open(d + "/policies.json", "w"))
json.dump({"api_id": "auth", "name": "auth", "org_id": "default", "use_keyless": False,
           "auth": {"auth_header_name": "Authorization"},
           "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}},
           "proxy": {"listen_path": "/auth/", "target_url": "http://127.0.0.1:%d/" % uport,
                     "strip_listen_path": True}, "active": True},
          open(d + "/apps/auth.json", "w"))
PY
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
SERVER[keyless]=$SPAWNED_PID
SERVER[auth]=$SPAWNED_PID
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike

# ---- keys, through the Gateway API ----
say "creating $KEYS keys"
"$PYTHON" - "$TPORT" "$SECRET" "$KEYS" "$BENCH_TMP/keys.txt" <<'PY'
import http.client, json, sys
port, secret, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
body = json.dumps({"org_id": "default", "apply_policies": ["bench-policy"], "access_rights": {}})
keys = []
for _ in range(n):
    c.request("POST", "/tyk/keys", body, {"X-Tyk-Authorization": secret})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("POST /tyk/keys: %d %s" % (r.status, data[:200]))
    keys.append(json.loads(data)["key"])
open(out, "w").write("\n".join(keys) + "\n")
PY
KEY1=$(head -1 "$BENCH_TMP/keys.txt")

declare -A URL=(
    [nginx]="http://127.0.0.1:$NPORT/bench/"
    [keyless]="http://127.0.0.1:$TPORT/bench/"
    [auth]="http://127.0.0.1:$TPORT/auth/"
)
for t in nginx keyless; do
    bench_expect_200 "${URL[$t]}" "$t"
done
code=$(curl -s -o /dev/null -w '%{http_code}' "${URL[auth]}")
[ "$code" = 401 ] || die "auth without a key answered $code, not 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $KEY1" "${URL[auth]}")
[ "$code" = 200 ] || die "auth with a key answered $code, not 200 (log: $BENCH_TMP/turnpike.log)"

WRK_SCRIPT=$BENCH_TMP/auth.lua
sed "s|@KEYS@|$BENCH_TMP/keys.txt|" "$BENCH_DIR/auth.lua" >"$WRK_SCRIPT"

# redis_calls: total calls of every command but INFO, from INFO commandstats.
redis_calls() {
    redis-cli -p "$RPORT" info commandstats |
        awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" { s += $3 } END { print s + 0 }'
}

mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup"
declare -A WORKER_PIDS
for t in nginx keyless; do
    WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
done
for t in nginx keyless auth; do
    r0=$(redis_calls)
    bench_run_wrk "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
    say "warm-up $t: $(awk '/^Requests\/sec/ { print $2 }' "$BENCH_TMP/warmup/$t.txt") req/s, $(($(redis_calls) - r0)) Redis commands"
done
for ((r = 1; r <= RUNS; r++)); do
    for t in nginx keyless auth; do
        f="$BENCH_TMP/wrk/$t.$r.txt"
        # the other targets' runs outlast the cache timeout (10 s): warm the
        # session cache again, unmeasured, so the run sees the steady state
        [ "$t" = auth ] && bench_run_wrk auth "$REWARM" "$BENCH_TMP/warmup/auth.$r.txt"
        r0=$(redis_calls)
        bench_run_wrk "$t" "$DURATION" "$f"
        [ "$t" = nginx ] || echo "# redis_cmds $(($(redis_calls) - r0))" >>"$f"
        say "run $r/$RUNS $t: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
    done
done

bench_check_survived nginx keyless

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" auth/keyless auth/nginx keyless/nginx |
    tee "$BENCH_TMP/summary.txt"
echo "Redis server: $(redis-cli -p "$RPORT" info commandstats | grep -E '^cmdstat_(get|mget|set|scan|publish)' | tr '\n' ' ')"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
