#!/usr/bin/env bash
# bench/cache.sh: cached responses. nginx as a plain reverse proxy, nginx
# with proxy_cache, Turnpike's plain keyless API and a keyless API with
# the response cache, side by side in one run, on the same upstream and
# the same response.
#
# What it does
#   Starts an upstream (nginx, "hello world\n"), nginx as a reverse proxy
#   (/bench/ plain, /cache/ through proxy_cache), a redis-server and one
#   Turnpike (WORKERS workers) with two APIs whose listen paths have the
#   same length:
#     /bench/  keyless, no cache
#     /cache/  keyless, cache_options {enable_cache, cache_all_safe_requests,
#              cache_timeout 3600}: every GET after the first is a hit of
#              the node's shared-memory front (no upstream, no Redis)
#   Targets: nginx, nginx_cache, keyless, cached. After a warm-up per
#   target the targets alternate RUNS times (wrk -t$THREADS -c$CONNS
#   -d$DURATION, GET, no script).
#
# Output: the medians table of bench/auth.sh and the ratios cached/keyless
# (issue target: >= 1.5), cached/nginx_cache (>= 1.0), keyless/nginx.
#
# Usage: bench/cache.sh   (WORKERS, CONNS, DURATION, RUNS, THREADS,
#        WARMUP, PIN, KEEP as in bench/auth.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bench_wrk_start
read -r UPORT NPORT TPORT RPORT < <(bench_free_ports 4)
TARGETS=(nginx nginx_cache keyless cached)

bench_wrk_banner "response cache: cached responses vs the plain keyless API vs nginx proxy_cache"

CACHE=1 bench_start_backends "$UPORT" "$NPORT" "$RPORT"
SERVER[nginx_cache]=${SERVER[nginx]}
turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" "$WORKERS"
"$PYTHON" - "$BENCH_TMP/turnpike" "$RPORT" "$UPORT" <<'PY'
import json, sys
d, rport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conf = json.load(open(d + "/tyk.conf"))
conf["storage"] = {"type": "redis", "host": "127.0.0.1", "port": rport}
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
api = {"api_id": "cache", "name": "cache", "org_id": "default", "use_keyless": True,
       "active": True,
       "cache_options": {"enable_cache": True, "cache_all_safe_requests": True,
                         "cache_timeout": 3600},
       "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}},
       "proxy": {"listen_path": "/cache/", "target_url": "http://127.0.0.1:%d/" % uport,
                 "strip_listen_path": True}}
json.dump(api, open(d + "/apps/cache.json", "w"))
PY
"$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" >/dev/null 2>&1 ||
    die "the bench definitions do not load: $("$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" 2>&1 | tail -3)"
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
for t in keyless cached; do SERVER[$t]=$SPAWNED_PID; done
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike

declare -A URL=([nginx]="http://127.0.0.1:$NPORT/bench/" [nginx_cache]="http://127.0.0.1:$NPORT/cache/"
    [keyless]="http://127.0.0.1:$TPORT/bench/" [cached]="http://127.0.0.1:$TPORT/cache/")
for t in "${TARGETS[@]}"; do bench_expect_200 "${URL[$t]}" "$t"; done
sleep 0.2 # the first answers are stored
curl -s -o /dev/null -D - "${URL[cached]}" | grep -qi '^x-tyk-cached-response: 1' ||
    die "Turnpike's /cache/ does not answer from the cache"
curl -s -o /dev/null -D - "${URL[nginx_cache]}" >/dev/null

bench_alternate "${TARGETS[@]}"

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" cached/keyless cached/nginx_cache keyless/nginx \
    nginx_cache/nginx | tee "$BENCH_TMP/summary.txt"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
