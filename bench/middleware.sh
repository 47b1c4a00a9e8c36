#!/usr/bin/env bash
# bench/middleware.sh: the cost of extended_paths middleware on the request
# path. nginx as a plain reverse proxy, Turnpike's plain keyless API, and a
# keyless API with ten middleware rules of which one matches each request,
# side by side in one run.
#
# What it does
#   Starts an upstream (nginx, "hello world\n"), nginx as a reverse proxy,
#   a redis-server and one Turnpike (WORKERS workers) with two APIs whose
#   listen paths have the same length:
#     /bench/  keyless, no rules
#     /mwten/  keyless, ten rules on GET /hello-style paths:
#              transform_headers: 4 entries, the last one matches (it adds a
#                header with a $tyk_context variable, enable_context_vars);
#              url_rewrites: 3 entries on other paths;
#              method_transforms: 2 entries on other paths;
#              size_limits: 1 entry (POST: never for these GETs)
#   Targets: nginx, keyless (/bench/), mw10 (/mwten/). After a warm-up per
#   target the targets alternate RUNS times (wrk -t$THREADS -c$CONNS
#   -d$DURATION, GET, no script).
#
# Output: the medians table of bench/auth.sh and the ratios mw10/keyless
# (issue target: >= 0.9) and keyless/nginx.
#
# Usage: bench/middleware.sh   (WORKERS, CONNS, DURATION, RUNS, THREADS,
#        WARMUP, PIN, KEEP as in bench/auth.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bench_wrk_start
read -r UPORT NPORT TPORT RPORT < <(bench_free_ports 4)
TARGETS=(nginx keyless mw10)

bench_wrk_banner "extended_paths middleware: ten rules, one matching, vs the plain keyless API vs nginx"

bench_start_backends "$UPORT" "$NPORT" "$RPORT"
turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" "$WORKERS"
"$PYTHON" - "$BENCH_TMP/turnpike" "$RPORT" "$UPORT" <<'PY'
import json, sys
d, rport, uport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conf = json.load(open(d + "/tyk.conf"))
conf["storage"] = {"type": "redis", "host": "127.0.0.1", "port": rport}
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
th = [{"path": "/orders/%d" % i, "method": "GET", "add_headers": {"X-Rule": str(i)}}
      for i in range(3)]
th.append({"path": "/", "method": "GET", "delete_headers": ["X-Debug"],
           "add_headers": {"X-Client-Ip": "$tyk_context.remote_addr"}})
ext = {
    "transform_headers": th,
    "url_rewrites": [{"path": "/legacy/%d" % i, "method": "GET", "match_pattern": "legacy/(\\d+)",
                      "rewrite_to": "/v2/$1"} for i in range(3)],
    "method_transforms": [{"path": "/tunnel/%d" % i, "method": "GET", "to_method": "POST"}
                          for i in range(2)],
    "size_limits": [{"path": "/", "method": "POST", "size_limit": 1024}],
}
api = {"api_id": "mwten", "name": "mwten", "org_id": "default", "use_keyless": True,
       "enable_context_vars": True, "active": True,
       "version_data": {"not_versioned": True, "versions": {"Default": {
           "name": "Default", "use_extended_paths": True, "extended_paths": ext}}},
       "proxy": {"listen_path": "/mwten/", "target_url": "http://127.0.0.1:%d/" % uport,
                 "strip_listen_path": True}}
json.dump(api, open(d + "/apps/mwten.json", "w"))
PY
"$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" >/dev/null 2>&1 ||
    die "the bench definitions do not load: $("$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" 2>&1 | tail -3)"
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
for t in keyless mw10; do SERVER[$t]=$SPAWNED_PID; done
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike

declare -A URL=([nginx]="http://127.0.0.1:$NPORT/bench/" [keyless]="http://127.0.0.1:$TPORT/bench/"
    [mw10]="http://127.0.0.1:$TPORT/mwten/")
for t in "${TARGETS[@]}"; do bench_expect_200 "${URL[$t]}" "$t"; done

bench_alternate "${TARGETS[@]}"

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" mw10/keyless keyless/nginx mw10/nginx |
    tee "$BENCH_TMP/summary.txt"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
