#!/usr/bin/env bash
# bench/limits.sh: the cost of rate limits and quotas. nginx as a plain
# reverse proxy, Turnpike keyless, keyed without limits, and keyed with the
# local and the exact rate limiter (with and without a quota, and with half
# of the requests over their limit), side by side in one run with the same
# wrk script and the same keys.
#
# What it does
#   Starts an upstream (nginx, "hello world\n"), nginx as a reverse proxy,
#   a redis-server and two Turnpikes sharing that Redis, the same API
#   definitions and the same policy file (WORKERS workers each, hash_keys
#   true, both pinned like the proxy under test; only one is driven at a
#   time):
#     turnpike-local  turnpike.rate_limiter "local" (GCRA in shared memory)
#     turnpike-exact  turnpike.rate_limiter "exact" (one Redis script per
#                     request decides the rate limit and the quota)
#   APIs (listen paths of the same length, so every target gets requests of
#   the same size): /bench/ keyless, /auth/, /rate/, /full/, /half/, /rcrd/
#   keyed. Both Turnpikes have enable_analytics on and every API but /rcrd/
#   do_not_track, so only /rcrd/ writes Tyk analytics records.
#   Two per-API policies (partitions.per_api: each API's limit is counted
#   under the API's id) differ only on /half/:
#     API     bench-hi                               bench-lo
#     auth    none (rate 0, quota_max -1)            same
#     rate    rate 1000000 per 1, no quota           same
#     full    rate 1000000 per 1, quota 1e9 / 3600 s same
#     rcrd    as full                                same
#     half    rate 1000000 per 1, quota 1e9 / 3600 s rate 1 per 3600, quota 1e9 / 3600 s
#   KEYS keys are created through POST /tyk/keys, alternately with bench-hi
#   and bench-lo, so wrk, cycling through all of them in order
#   (bench/auth.lua: "Authorization: <key>" on every request), sends half of
#   the /half/ requests with a key that has used its one request per hour:
#   refused with 429. The other limits never trigger. Targets:
#     nginx      nginx /bench/ (the header is just forwarded)
#     keyless    turnpike-local /bench/
#     auth       turnpike-local /auth/  key checked, no limits
#     localrate  turnpike-local /rate/  + local rate limit, no quota
#     local      turnpike-local /full/  + local rate limit + quota (the
#                                       quota: one EVALSHA per request)
#     exact      turnpike-exact /full/  rate limit + quota in one EVALSHA
#     local50    turnpike-local /half/  ~50% 429 (a refused request asks
#                                       Redis nothing: no quota counted)
#     exact50    turnpike-exact /half/  ~50% 429 (refused in the script)
#     recorded   turnpike-local /rcrd/  the full profile: as local, plus an
#                                       analytics record per request (after
#                                       each run the list's length is noted,
#                                       "# analytics_records", and it is
#                                       deleted)
#   After a warm-up per target (WARMUP; it also uses up the low keys' one
#   request), the targets alternate RUNS times; every keyed run is preceded
#   by an unmeasured REWARM run that fills the session cache again (the
#   other targets' runs outlast its 10 s timeout), as in bench/auth.sh.
#   Around every measured run: INFO commandstats (Redis) and `show stat`
#   (the admin socket of the Turnpike under test).
#
# Output: the medians table of bench/auth.sh (requests/s, p50, p99, server
# CPU per request; 429s are not counted as errors), then per target:
#   redis/req  every command in INFO commandstats but INFO, per request,
#              including the commands the Lua scripts run (an EVALSHA of the
#              quota script is 3: EVALSHA, INCR, PTTL);
#   rtt/req    the commands clients sent, i.e. Redis round trips: redis/req
#              without the commands run inside scripts (TIME, INCR, PTTL,
#              PEXPIRE, SET, Z*, and one GET per GCRA script run; the
#              liveness probe's SET every 10 s is therefore not counted);
#   evalsha    EVALSHA/EVAL per request;
#   2xx/s, 429s (Turnpike's rate_limited count), 429 share, others;
# the per-command breakdown, the ratios (local, exact, local-rate, the 50%
# runs against keyless; local and exact against nginx) and the project's
# targets with the measured values (reported, not enforced):
#   local >= 0.85x keyless; local-rate ~0 Redis round trips per request;
#   local: the quota's 1 per request; exact <= 1 round trip per request and
#   >= 0.6x keyless.
# Idle Turnpikes cost a little in the other's runs: the local one announces
# its node (one EVALSHA every 2 s), both run the liveness probe.
# The local limiter keeps about 5 counters per key here (3 rate limits, 2
# quotas noted) in turnpike.limit_counters (65536): beyond ~10000 KEYS,
# evicted counters would let low keys through again (the 429 share check
# below then warns).
#
# CPU pinning as bench/auth.sh: the proxy under test (nginx, both Turnpikes)
# on cpu0, upstream + wrk + redis on cpu1 (WORKERS=1 on this 2-core
# machine). Redis work (the exact limiter's scripts) therefore competes
# with wrk and the upstream: watch cpuL.
#
# Rerun
#   make && bench/limits.sh                   # ~5 min
#   RUNS=1 DURATION=3s KEYS=300 bench/limits.sh   # a quick check, ~1 min
#   PROFILE=1 bench/limits.sh                 # + system calls and CPU per request of
#                                             #   nginx keyless auth localrate local exact
#                                             #   recorded (PROFILE_TARGETS="..." to choose;
#                                             #   strace, perf: bench/PROFILE.md)
#   KEYS=5000 RUNS=5 DURATION=10s bench/limits.sh
# Other settings: WORKERS (1), CONNS (50), THREADS (1), WARMUP (3s),
# REWARM (2s), PIN=0, TURNPIKE_BIN, KEEP=0.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-50}
DURATION=${DURATION:-8s}
RUNS=${RUNS:-3}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-3s}
REWARM=${REWARM:-2s}
KEYS=${KEYS:-3000}

for v in WORKERS CONNS RUNS THREADS KEYS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$KEYS" -ge 2 ] || die "KEYS must be at least 2 (half of them get the low limit)"
[ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install redis-tools)"
bench_check_tools

bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

TARGETS=(nginx keyless auth localrate local exact local50 exact50 recorded)

bench_cpu_plan "$WORKERS"
read -r UPORT NPORT TPORT EPORT RPORT < <(bench_free_ports 5)
SECRET=bench-secret

echo "== Rate limits: Turnpike local and exact limiters vs keyed, keyless and nginx =="
bench_machine
echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1); $(redis-server --version | cut -d' ' -f1-3)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s auth.lua ($KEYS keys, one per request, cycling;"
echo "      every other key has 1 request/hour on /half/), $RUNS runs alternating"
echo "      ${TARGETS[*]}, warm-up $WARMUP per target, rewarm $REWARM before keyed runs"
if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
    echo "pinning: proxy under test (nginx, both Turnpikes) on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis on cpu ${LOAD_CPUS:-any}"
fi
echo "raw outputs: $BENCH_TMP"
echo

# ---- servers ----
bench_start_backends "$UPORT" "$NPORT" "$RPORT"

turnpike_conf "$BENCH_TMP/tp-local" "$TPORT" "$UPORT" "$WORKERS"
turnpike_conf "$BENCH_TMP/tp-exact" "$EPORT" "$UPORT" "$WORKERS"
"$PYTHON" - "$BENCH_TMP" "$RPORT" "$UPORT" "$SECRET" <<'PY'
import json, sys
tmp, rport, uport, secret = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
policies = tmp + "/policies.json"
for name, limiter in (("tp-local", "local"), ("tp-exact", "exact")):
    d = tmp + "/" + name
    conf = json.load(open(d + "/tyk.conf"))
    conf.update({"secret": secret, "hash_keys": True,
                 "storage": {"type": "redis", "host": "127.0.0.1", "port": rport},
                 "policies": {"policy_source": "file", "policy_record_name": policies}})
    conf["turnpike"].update({"rate_limiter": limiter, "admin_socket": d + "/admin.sock"})
    # analytics on, recorded for /rcrd/ only: the full profile
    conf["enable_analytics"] = True
    json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
    bench = json.load(open(d + "/apps/bench.json"))
    bench["do_not_track"] = True
    json.dump(bench, open(d + "/apps/bench.json", "w"))
    for api in ("auth", "rate", "full", "half", "rcrd"):
        json.dump({"api_id": api, "name": api, "org_id": "default", "use_keyless": False,
                   "auth": {"auth_header_name": "Authorization"}, "do_not_track": api != "rcrd",
                   "version_data": {"not_versioned": True,
                                    "versions": {"Default": {"name": "Default"}}},
                   "proxy": {"listen_path": "/%s/" % api,
                             "target_url": "http://127.0.0.1:%d/" % uport,
                             "strip_listen_path": True}, "active": True},
                  open("%s/apps/%s.json" % (d, api), "w"))
HIGH = {"rate": 1000000, "per": 1, "quota_max": 1000000000, "quota_renewal_rate": 3600}
LOW = {"rate": 1, "per": 3600, "quota_max": 1000000000, "quota_renewal_rate": 3600}
RATE_ONLY = {"rate": 1000000, "per": 1, "quota_max": -1}

def right(api, limit=None):
    r = {"api_id": api, "api_name": api, "versions": ["Default"]}
    if limit:
        r["limit"] = limit
    return r

def policy(pid, half):
    # the policy-level values (no rate, no quota) are what /auth/ gets: it
    # has no limit of its own
    return {"id": pid, "name": pid, "org_id": "default", "active": True,
            "rate": 0, "per": 0, "quota_max": -1, "quota_renewal_rate": 0,
            "partitions": {"per_api": True},
            "access_rights": {"auth": right("auth"), "rate": right("rate", RATE_ONLY),
                              "full": right("full", HIGH), "half": right("half", half),
                              "rcrd": right("rcrd", HIGH)}}

json.dump({"bench-hi": policy("bench-hi", HIGH), "bench-lo": policy("bench-lo", LOW)},
          open(policies, "w"), indent=1)
PY
bench_spawn turnpike-local "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/tp-local/tyk.conf"
LOCAL_PID=$SPAWNED_PID
bench_wait_port "$TPORT" "$LOCAL_PID" turnpike-local
bench_spawn turnpike-exact "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/tp-exact/tyk.conf"
EXACT_PID=$SPAWNED_PID
bench_wait_port "$EPORT" "$EXACT_PID" turnpike-exact

# ---- keys, through the Gateway API: bench-hi, bench-lo, bench-hi, ... ----
say "creating $KEYS keys"
"$PYTHON" - "$TPORT" "$SECRET" "$KEYS" "$BENCH_TMP/keys.txt" <<'PY'
import http.client, json, sys
port, secret, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
keys = []
for i in range(n):
    body = json.dumps({"org_id": "default", "access_rights": {},
                       "apply_policies": ["bench-lo" if i % 2 else "bench-hi"]})
    c.request("POST", "/tyk/keys", body, {"X-Tyk-Authorization": secret})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("POST /tyk/keys: %d %s" % (r.status, data[:200]))
    keys.append(json.loads(data)["key"])
open(out, "w").write("\n".join(keys) + "\n")
PY
KEY_HI=$(sed -n 1p "$BENCH_TMP/keys.txt")
KEY_LO=$(sed -n 2p "$BENCH_TMP/keys.txt")

declare -A URL=(
    [nginx]="http://127.0.0.1:$NPORT/bench/"
    [keyless]="http://127.0.0.1:$TPORT/bench/"
    [auth]="http://127.0.0.1:$TPORT/auth/"
    [localrate]="http://127.0.0.1:$TPORT/rate/"
    [local]="http://127.0.0.1:$TPORT/full/"
    [recorded]="http://127.0.0.1:$TPORT/rcrd/"
    [exact]="http://127.0.0.1:$EPORT/full/"
    [local50]="http://127.0.0.1:$TPORT/half/"
    [exact50]="http://127.0.0.1:$EPORT/half/"
)
# the API each target drives, for `show stat`, and that Turnpike's socket
declare -A API=([keyless]=bench [auth]=auth [localrate]=rate [local]=full [recorded]=rcrd [exact]=full
    [local50]=half [exact50]=half)
declare -A ADMIN
for t in keyless auth localrate local local50 recorded; do
    SERVER[$t]=$LOCAL_PID
    ADMIN[$t]=$BENCH_TMP/tp-local/admin.sock
done
for t in exact exact50; do
    SERVER[$t]=$EXACT_PID
    ADMIN[$t]=$BENCH_TMP/tp-exact/admin.sock
done

# ---- the limits answer as configured, on both Turnpikes ----
code_of() { # URL [KEY]
    curl -s -o /dev/null -w '%{http_code}' ${2:+-H "Authorization: $2"} "$1"
}
expect_code() { # WANT WHAT URL [KEY]
    local got
    got=$(code_of "$3" "${4:-}")
    [ "$got" = "$1" ] || die "$2 answered $got, not $1 (logs: $BENCH_TMP/turnpike-*.log)"
}
for t in nginx keyless; do
    bench_expect_200 "${URL[$t]}" "$t"
done
bench_expect_200 "http://127.0.0.1:$EPORT/bench/" turnpike-exact
for p in "$TPORT" "$EPORT"; do
    base=http://127.0.0.1:$p
    expect_code 401 "$base/auth/ without a key" "$base/auth/"
    for api in auth rate full half; do
        expect_code 200 "$base/$api/ with a bench-hi key" "$base/$api/" "$KEY_HI"
    done
    expect_code 200 "$base/half/ with a bench-lo key, first request" "$base/half/" "$KEY_LO"
    expect_code 429 "$base/half/ with a bench-lo key, second request" "$base/half/" "$KEY_LO"
    for api in auth rate full; do # the low limit is /half/'s alone
        expect_code 200 "$base/$api/ with a bench-lo key" "$base/$api/" "$KEY_LO"
    done
done
[ "$(bench_admin "$BENCH_TMP/tp-local/admin.sock" "show stat" | grep -c '^half,')" = 1 ] ||
    die "no 'half' row in show stat of turnpike-local"

WRK_SCRIPT=$BENCH_TMP/auth.lua
sed "s|@KEYS@|$BENCH_TMP/keys.txt|" "$BENCH_DIR/auth.lua" >"$WRK_SCRIPT"

# snapshot TARGET PREFIX: Redis command counts and, for a Turnpike target,
# its API's `show stat` row, to PREFIX.redis / PREFIX.stat.
snapshot() {
    bench_redis_cmdstats "$RPORT" >"$2.redis"
    if [ -n "${ADMIN[$1]:-}" ]; then
        bench_admin "${ADMIN[$1]}" "show stat" | grep "^${API[$1]}," >"$2.stat" ||
            die "no row for API ${API[$1]} in show stat of ${SERVER[$1]}"
    else
        : >"$2.stat"
    fi
}

# counts BEFORE AFTER: the "# redis_*" and "# tp_stat" lines for a wrk
# output (see the header for what is counted).
counts() {
    "$PYTHON" - "$1" "$2" <<'PY'
import sys
def load(prefix):
    red = {}
    for line in open(prefix + ".redis"):
        name, calls = line.split()
        red[name] = int(calls)
    row = open(prefix + ".stat").read().strip()
    return red, row.split(",") if row else None
(r0, s0), (r1, s1) = load(sys.argv[1]), load(sys.argv[2])
d = {k: r1.get(k, 0) - r0.get(k, 0) for k in set(r0) | set(r1)}
d = {k: v for k, v in d.items() if v and k != "info"}
# commands the limiter scripts run (GCRA, quota, node announcements)
inner = ("time", "incr", "pttl", "pexpire", "set", "zremrangebyscore", "zadd", "zcard",
         "zrange", "expire")
# every GCRA run has one TIME and one GET; every announcement one TIME and one ZCARD
gcra_gets = max(0, d.get("time", 0) - d.get("zcard", 0))
rtt = sum(v for k, v in d.items() if k not in inner) - min(d.get("get", 0), gcra_gets)
print("# redis_cmds %d" % sum(d.values()))
print("# redis_rtt %d" % rtt)
print("# redis_scripts %d" % (d.get("evalsha", 0) + d.get("eval", 0)))
print("# redis_by_cmd " + " ".join("%s=%d" % kv for kv in sorted(d.items())))
if s0 and s1:
    names = ["requests", "1xx", "2xx", "3xx", "4xx", "5xx", "upstream_errors", "rate_limited",
             "quota_exceeded"]
    v = [int(b) - int(a) for a, b in zip(s0[1:], s1[1:])]
    print("# tp_stat " + " ".join("%s=%d" % nv for nv in zip(names, v)))
PY
}

# measure TARGET DURATION FILE: one wrk run with the counts appended.
measure() {
    snapshot "$1" "$BENCH_TMP/snap0"
    bench_run_wrk "$1" "$2" "$3"
    snapshot "$1" "$BENCH_TMP/snap1"
    counts "$BENCH_TMP/snap0" "$BENCH_TMP/snap1" >>"$3"
    if [ "$1" = recorded ]; then
        # the run's analytics records (the workers push every 200 ms), then
        # away, so that Redis does not grow from run to run
        sleep 0.5
        echo "# analytics_records $(redis-cli -p "$RPORT" eval \
            "local n = redis.call('LLEN', KEYS[1]); redis.call('DEL', KEYS[1]); return n" \
            1 analytics-tyk-system-analytics)" >>"$3"
    fi
}

summary_of() { # FILE: "N req/s, x 429, y Redis round trips/request"
    awk '/^Requests\/sec/ { rps = $2 } /^[ \t]*[0-9]+ requests in/ { n = $1 }
         /^# redis_rtt/ { rtt = $3 } /^# tp_stat/ { for (i = 3; i <= NF; i++) {
             split($i, kv, "="); if (kv[1] == "rate_limited") lim = kv[2] } }
         END { printf "%s req/s, %d 429s, %.4f Redis round trips/request\n",
               rps, lim, (n > 0 ? rtt / n : 0) }' "$1"
}

mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup"
declare -A WORKER_PIDS
for t in nginx keyless exact; do
    WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
done
for t in "${TARGETS[@]}"; do
    measure "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
    say "warm-up $t: $(summary_of "$BENCH_TMP/warmup/$t.txt")"
done
for ((r = 1; r <= RUNS; r++)); do
    for t in "${TARGETS[@]}"; do
        f="$BENCH_TMP/wrk/$t.$r.txt"
        # the other targets' runs outlast the session cache timeout (10 s):
        # warm it again, unmeasured, so the run sees the steady state
        case $t in nginx | keyless) ;; *) bench_run_wrk "$t" "$REWARM" "$BENCH_TMP/warmup/$t.$r.txt" ;; esac
        measure "$t" "$DURATION" "$f"
        say "run $r/$RUNS $t: $(summary_of "$f")"
    done
done

bench_check_survived nginx keyless exact

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" --json="$BENCH_TMP/medians.json" \
    local/keyless exact/keyless localrate/keyless auth/keyless local50/keyless exact50/keyless \
    local/nginx exact/nginx keyless/nginx exact/local recorded/nginx recorded/local |
    tee "$BENCH_TMP/summary.txt"
echo
"$PYTHON" - "$BENCH_TMP/medians.json" <<'PY' | tee -a "$BENCH_TMP/summary.txt"
import json, sys
m = json.load(open(sys.argv[1]))
def ratio(a, b):
    return m[a]["rps"] / m[b]["rps"]
def yes(ok):
    return "met" if ok else "NOT MET"
print("targets (reported, not enforced; Redis round trips include the background work:"
      " session refreshes,\n  node announcements):")
r = ratio("local", "keyless")
print("  local >= 0.85x keyless:                       %.2fx  %s" % (r, yes(r >= 0.85)))
v = m["localrate"]["rtt_req"]
print("  local rate limit alone ~0 Redis rtt/request:  %.4f  %s (local-rate)" % (v, yes(v < 0.01)))
print("  local rate limit + quota, Redis rtt/request:  %.4f  (the quota: 1 expected)"
      % m["local"]["rtt_req"])
v = m["exact"]["rtt_req"]
print("  exact <= 1 Redis rtt/request:                 %.4f  %s" % (v, yes(v <= 1.01)))
r = ratio("exact", "keyless")
print("  exact >= 0.6x keyless:                        %.2fx  %s" % (r, yes(r >= 0.6)))
r = ratio("recorded", "nginx")
print("  recorded (full profile) >= 0.9x nginx:        %.2fx  %s" % (r, yes(r >= 0.9)))
for t, want in (("local50", "0.5"), ("exact50", "1")):
    print("  %s: %.1f%% 429s, %.4f Redis rtt/request (%s expected), %.2fx keyless"
          % (t, 100 * m[t].get("share429", 0), m[t]["rtt_req"], want, ratio(t, "keyless")))
for t in ("auth", "localrate", "local", "exact"):
    if m[t].get("tp", {}).get("rate_limited"):
        print("  WARNING: %s got %d 429s: its limit should never trigger"
              % (t, m[t]["tp"]["rate_limited"]))
for t in ("local50", "exact50"):
    s = m[t].get("share429", 0)
    if abs(s - 0.5) > 0.02:
        print("  WARNING: %s: %.1f%% of the requests got 429, not ~50%%" % (t, 100 * s))
PY
if [ "${PROFILE:-0}" = 1 ]; then
    # where the time goes (bench/PROFILE.md): system calls and CPU per request
    read -r -a PROFILED <<<"${PROFILE_TARGETS:-nginx keyless auth localrate local exact recorded}"
    for t in "${PROFILED[@]}"; do
        case $t in nginx | keyless) ;; *) bench_run_wrk "$t" "$REWARM" "$BENCH_TMP/warmup/$t.profile.txt" ;; esac
        say "profiling $t"
        bench_profile "$t"
    done
    echo
    "$PYTHON" "$BENCH_DIR/profile_report.py" "$BENCH_TMP/profile" "${PROFILED[@]}" |
        tee "$BENCH_TMP/profile.md"
fi
echo "Redis server: $(redis-cli -p "$RPORT" info commandstats | tr -d '\r' | grep -E '^cmdstat_(evalsha|eval|get|mget|set|incr|time)' | cut -d, -f1-3 | tr '\n' ' ')"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
