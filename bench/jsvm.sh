#!/usr/bin/env bash
# bench/jsvm.sh: the cost of JavaScript middleware (Tyk's JSVM on Duktape).
# nginx as a plain reverse proxy, Turnpike's plain keyless API, a keyless
# API with a "pre" middleware that sets one header, and a virtual endpoint
# answering a small JSON body (no upstream hop), side by side in one run;
# then the memory of a worker serving 100 APIs that each have a script,
# beside one serving 100 plain APIs.
#
# What it does
#   Starts an upstream (nginx, "hello world\n"), nginx as a reverse proxy,
#   a redis-server and one Turnpike (WORKERS workers) with enable_jsvm and:
#     /bench/   keyless, no middleware
#     /jspre/   keyless, custom_middleware.pre: request.SetHeaders["X-Js"]
#     /jsvirt/  keyless, extended_paths.virtual on /hello: TykJsResponse of
#               {"hello": "world", "n": 1}, Content-Type application/json
#   Targets: nginx, keyless, jspre, virtual. After a warm-up per target they
#   alternate RUNS times (wrk -t$THREADS -c$CONNS -d$DURATION).
#   Memory: two more Turnpikes (1 worker) with 100 APIs each, one with a
#   pre script per API, one without; after 10 requests to every API the
#   worker's RSS is read.
#
# Output: the medians table and the ratios jspre/keyless (issue target
# >= 0.7), virtual/keyless (>= 0.5), keyless/nginx; the memory lines.
#
# Usage: bench/jsvm.sh   (WORKERS, CONNS, DURATION, RUNS, THREADS, WARMUP,
#        PIN, KEEP as in bench/auth.sh; NAPIS for the memory part, 100)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NAPIS=${NAPIS:-100}
bench_wrk_start NAPIS
read -r UPORT NPORT TPORT RPORT MPORT1 MPORT2 < <(bench_free_ports 6)
TARGETS=(nginx keyless jspre virtual)

bench_wrk_banner "JavaScript middleware: a pre hook and a virtual endpoint vs the plain keyless API vs nginx"

# jsvm_conf DIR PORT WORKERS: a tyk.conf with enable_jsvm and Redis
jsvm_conf() {
    turnpike_conf "$1" "$2" "$UPORT" "$3"
    "$PYTHON" - "$1" "$RPORT" <<'PY'
import json, sys
d, rport = sys.argv[1], int(sys.argv[2])
conf = json.load(open(d + "/tyk.conf"))
conf["storage"] = {"type": "redis", "host": "127.0.0.1", "port": rport}
conf["enable_jsvm"] = True
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
PY
}

# js_apis DIR UPORT KIND N: N APIs /<kind><i>/ (pre: with a pre script each)
js_apis() {
    "$PYTHON" - "$@" <<'PY'
import base64, json, sys
d, uport, kind, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
pre = """var %s = new TykJS.TykMiddleware.NewMiddleware({});
%s.NewProcessRequest(function(request, session) {
    request.SetHeaders["X-Js"] = "1";
    return %s.ReturnData(request, {});
});
"""
virt = """function hello(request, session, config) {
    return TykJsResponse({Body: JSON.stringify({hello: "world", n: 1}), Code: 200,
                          Headers: {"Content-Type": "application/json"}}, session.meta_data);
}
"""
for i in range(n):
    name = "%s%s" % (kind, i if n > 1 else "")
    api = {"api_id": name, "name": name, "org_id": "default", "use_keyless": True, "active": True,
           "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}},
           "proxy": {"listen_path": "/%s/" % name, "target_url": "http://127.0.0.1:%d/" % uport,
                     "strip_listen_path": True}}
    if kind.startswith("jspre"):
        mw = "mw_%d" % i
        path = "%s/%s.js" % (d, name)
        open(path, "w").write(pre % (mw, mw, mw))
        api["custom_middleware"] = {"driver": "otto", "pre": [{"name": mw, "path": path}]}
    elif kind.startswith("jsvirt"):
        v = api["version_data"]["versions"]["Default"]
        v["use_extended_paths"] = True
        v["extended_paths"] = {"virtual": [{
            "path": "/hello", "method": "GET", "response_function_name": "hello",
            "function_source_type": "blob",
            "function_source_uri": base64.b64encode(virt.encode()).decode()}]}
    json.dump(api, open("%s/apps/%s.json" % (d, name), "w"))
PY
}

bench_start_backends "$UPORT" "$NPORT" "$RPORT"
jsvm_conf "$BENCH_TMP/turnpike" "$TPORT" "$WORKERS"
js_apis "$BENCH_TMP/turnpike" "$UPORT" jspre 1
js_apis "$BENCH_TMP/turnpike" "$UPORT" jsvirt 1
"$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" >/dev/null 2>&1 ||
    die "the bench definitions do not load: $("$TURNPIKE_BIN" -t --conf "$BENCH_TMP/turnpike/tyk.conf" 2>&1 | tail -3)"
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
for t in keyless jspre virtual; do SERVER[$t]=$SPAWNED_PID; done
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike

declare -A URL=([nginx]="http://127.0.0.1:$NPORT/bench/" [keyless]="http://127.0.0.1:$TPORT/bench/"
    [jspre]="http://127.0.0.1:$TPORT/jspre/" [virtual]="http://127.0.0.1:$TPORT/jsvirt/hello")
for t in nginx keyless jspre; do bench_expect_200 "${URL[$t]}" "$t"; done
[ "$(curl -s "${URL[virtual]}")" = '{"hello":"world","n":1}' ] ||
    die "the virtual endpoint does not answer its JSON"

bench_alternate "${TARGETS[@]}"

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" jspre/keyless virtual/keyless keyless/nginx |
    tee "$BENCH_TMP/summary.txt"

# ---- memory: NAPIS APIs with a script each, and without ----
echo
for kind in plain jspre; do
    dir="$BENCH_TMP/mem-$kind"
    port=$MPORT1
    [ "$kind" = jspre ] && port=$MPORT2
    jsvm_conf "$dir" "$port" 1
    rm -f "$dir/apps/bench.json"
    js_apis "$dir" "$UPORT" "$kind" "$NAPIS"
    bench_spawn "mem-$kind" "" "$TURNPIKE_BIN" --conf "$dir/tyk.conf"
    pid=$SPAWNED_PID
    bench_wait_port "$port" "$pid" "mem-$kind"
    for ((i = 0; i < NAPIS; i++)); do
        for ((k = 0; k < 10; k++)); do
            echo "url = \"http://127.0.0.1:$port/$kind$i/\""
            echo 'output = "/dev/null"'
        done
    done >"$dir/urls.txt"
    curl -s -K "$dir/urls.txt"
    w=$(bench_children "$pid" | head -1)
    rss=$(bench_rss "$w")
    echo "$kind: $NAPIS APIs, 1 worker, after 10 requests each: worker RSS $((rss / 1024)) KiB" |
        tee -a "$BENCH_TMP/summary.txt"
    eval "RSS_$kind=$rss"
done
echo "per API with a script: $(( (RSS_jspre - RSS_plain) / NAPIS / 1024 )) KiB more worker RSS" |
    tee -a "$BENCH_TMP/summary.txt"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
