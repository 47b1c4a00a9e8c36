#!/usr/bin/env bash
# bench/identity.sh: the cost of JWT and basic authentication beside token
# auth. One Turnpike serves, to the same upstream: /bench/ keyless, /auth/
# token auth (hashed keys, a policy), /hs256/, /rs256/ (2048-bit), /es256/
# (P-256) with centralised JWTs (jwt_source, the policy from the "pol"
# claim), and /basic/ with basic auth (bcrypt users, cache_ttl 600 s).
# nginx as a plain reverse proxy is the reference.
#
# What it does
#   Starts an upstream and nginx (as bench/auth.sh), a redis-server and
#   Turnpike (WORKERS workers). Creates TOKENS keys through POST /tyk/keys
#   and TOKENS JWTs per algorithm (one identity each, signed by openssl /
#   python's hmac) and BASIC_USERS basic-auth users (POST /tyk/keys/<user>,
#   bcrypt cost 10), then drives every target with bench/auth.lua (each
#   request carries the next credential of its list in Authorization, so a
#   connection cycles through all of them). A warm-up per target makes each
#   identity's virtual session (the first request of an identity writes it
#   to Redis) and fills the caches; each keyed run is preceded by an
#   unmeasured REWARM run (the session cache keeps entries 10 s). Measured:
#   steady state, where a repeated token is remembered by the worker that
#   verified it (its signature is not checked again; see worker/tp_jwt.c)
#   and a basic-auth password that matched skips bcrypt (tp_basic.c).
#   Prints medians and the ratios to auth (the issue's targets) and nginx.
#
# Rerun
#   make && bench/identity.sh                 # ~7 min
#   TOKENS=2000 BASIC_USERS=500 RUNS=5 DURATION=10s bench/identity.sh
# Other settings: WORKERS (1), CONNS (50), THREADS (1), WARMUP (3s), PIN=0,
# TURNPIKE_BIN, KEEP=0.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-50}
DURATION=${DURATION:-8s}
RUNS=${RUNS:-5}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-3s}
REWARM=${REWARM:-2s}
TOKENS=${TOKENS:-1000}
BASIC_USERS=${BASIC_USERS:-200}

for v in WORKERS CONNS RUNS THREADS TOKENS BASIC_USERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
bench_check_tools

bench_setup_tmp
trap bench_on_exit EXIT
trap 'exit 130' INT TERM

bench_cpu_plan "$WORKERS"
read -r UPORT NPORT TPORT RPORT < <(bench_free_ports 4)
SECRET=bench-secret
TARGETS=(nginx keyless auth hs256 rs256 es256 basic)

echo "== JWT and basic authentication: Turnpike HS256 / RS256 / ES256 / basic vs token auth vs keyless vs nginx =="
bench_machine
echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1); $(redis-server --version | cut -d' ' -f1-3)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency -s auth.lua ($TOKENS credentials per target, cycling),"
echo "      $RUNS runs alternating ${TARGETS[*]}, warm-up $WARMUP per target"
if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
    echo "pinning: proxy under test on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis on cpu ${LOAD_CPUS:-any}"
fi
echo "raw outputs: $BENCH_TMP"
echo

bench_start_backends "$UPORT" "$NPORT" "$RPORT"

say "making keys and $TOKENS tokens per algorithm"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$BENCH_TMP/rsa.key" 2>/dev/null
openssl pkey -in "$BENCH_TMP/rsa.key" -pubout -out "$BENCH_TMP/rsa.pub"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$BENCH_TMP/ec.key" 2>/dev/null
openssl pkey -in "$BENCH_TMP/ec.key" -pubout -out "$BENCH_TMP/ec.pub"

turnpike_conf "$BENCH_TMP/turnpike" "$TPORT" "$UPORT" "$WORKERS"
"$PYTHON" - "$BENCH_TMP" "$RPORT" "$UPORT" "$SECRET" "$TOKENS" <<'PY'
import base64, hashlib, hmac, json, subprocess, sys, time
tmp, rport, uport, secret, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
d = tmp + "/turnpike"
conf = json.load(open(d + "/tyk.conf"))
conf.update({"secret": secret, "hash_keys": True,
             "storage": {"type": "redis", "host": "127.0.0.1", "port": rport},
             "policies": {"policy_source": "file", "policy_record_name": d + "/policies.json"}})
json.dump(conf, open(d + "/tyk.conf", "w"), indent=2)
apis = ["auth", "hs256", "rs256", "es256", "basic"]
json.dump({"bench-policy": {"id": "bench-policy", "name": "bench", "org_id": "default", "active": True,
                            "rate": 1000000, "per": 1, "quota_max": -1,
                            "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]}
                                              for a in apis}}},
          open(d + "/policies.json", "w"))
hmac_secret = b"bench-hmac-secret-0123456789abcdef"
src = {"hs256": ("hmac", hmac_secret), "rs256": ("rsa", open(tmp + "/rsa.pub", "rb").read()),
       "es256": ("ecdsa", open(tmp + "/ec.pub", "rb").read())}
for a in apis:
    api = {"api_id": a, "name": a, "org_id": "default", "use_keyless": False,
           "auth": {"auth_header_name": "Authorization"},
           "version_data": {"not_versioned": True, "versions": {"Default": {"name": "Default"}}},
           "proxy": {"listen_path": "/%s/" % a, "target_url": "http://127.0.0.1:%d/" % uport,
                     "strip_listen_path": True}, "active": True}
    if a == "basic":
        api.update({"use_basic_auth": True, "basic_auth": {"cache_ttl": 600}})
    if a in src:
        api.update({"enable_jwt": True, "jwt_signing_method": src[a][0],
                    "jwt_source": base64.b64encode(src[a][1]).decode(),
                    "jwt_identity_base_field": "sub", "jwt_policy_field_name": "pol"})
    json.dump(api, open(d + "/apps/%s.json" % a, "w"))

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def der_to_raw(der):
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        ln = der[i + 1]
        out += der[i + 2:i + 2 + ln].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + ln
    return out

exp = int(time.time()) + 86400
for a, alg in (("hs256", "HS256"), ("rs256", "RS256"), ("es256", "ES256")):
    lines = []
    for i in range(n):
        h = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        c = b64(json.dumps({"sub": "%s-user-%d" % (a, i), "pol": "bench-policy", "exp": exp}).encode())
        signing = ("%s.%s" % (h, c)).encode()
        if alg == "HS256":
            sig = hmac.new(hmac_secret, signing, hashlib.sha256).digest()
        else:
            key = tmp + ("/rsa.key" if alg == "RS256" else "/ec.key")
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing,
                                 capture_output=True, check=True).stdout
            if alg == "ES256":
                sig = der_to_raw(sig)
        lines.append("Bearer %s.%s" % (signing.decode(), b64(sig)))
    open("%s/%s.txt" % (tmp, a), "w").write("\n".join(lines) + "\n")
PY
bench_spawn turnpike "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$BENCH_TMP/turnpike/tyk.conf"
for t in keyless auth hs256 rs256 es256 basic; do SERVER[$t]=$SPAWNED_PID; done
bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike

"$PYTHON" - "$TPORT" "$SECRET" "$TOKENS" "$BENCH_TMP/auth.txt" <<'PY'
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
say "making $BASIC_USERS basic-auth users (bcrypt)"
"$PYTHON" - "$TPORT" "$SECRET" "$BASIC_USERS" "$BENCH_TMP/basic.txt" <<'PY'
import base64, http.client, json, sys
port, secret, n, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
lines = []
for i in range(n):
    # org + user is a multiple of 4 bytes: Tyk's default murmur32 ignores
    # the bytes after the last whole 4 (TykTechnologies/murmur3), so names
    # that differ only there would be one key, in Tyk as here
    user, pw = "bu%07d" % i, "password-%d" % i
    body = json.dumps({"org_id": "default", "apply_policies": ["bench-policy"], "access_rights": {},
                       "basic_auth_data": {"password": pw}})
    c.request("POST", "/tyk/keys/" + user, body, {"X-Tyk-Authorization": secret})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("POST /tyk/keys/%s: %d %s" % (user, r.status, data[:200]))
    lines.append("Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode())
open(out, "w").write("\n".join(lines) + "\n")
PY
head -1 "$BENCH_TMP/auth.txt" >"$BENCH_TMP/keyless.txt"
cp "$BENCH_TMP/keyless.txt" "$BENCH_TMP/nginx.txt"

declare -A URL=([nginx]="http://127.0.0.1:$NPORT/bench/" [keyless]="http://127.0.0.1:$TPORT/bench/")
for t in auth hs256 rs256 es256 basic; do URL[$t]="http://127.0.0.1:$TPORT/$t/"; done
for t in nginx keyless; do bench_expect_200 "${URL[$t]}" "$t"; done
for t in auth hs256 rs256 es256 basic; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $(head -1 "$BENCH_TMP/$t.txt")" "${URL[$t]}")
    [ "$code" = 200 ] || die "$t with a credential answered $code, not 200 (log: $BENCH_TMP/turnpike.log)"
    code=$(curl -s -o /dev/null -w '%{http_code}' "${URL[$t]}")
    [ "$code" != 200 ] || die "$t without a credential answered 200"
done
for t in "${TARGETS[@]}"; do
    sed "s|@KEYS@|$BENCH_TMP/$t.txt|" "$BENCH_DIR/auth.lua" >"$BENCH_TMP/$t.lua"
done
# every basic-auth user logs in once (one bcrypt each, ~55 ms), so the
# runs measure the remembered path
say "first login of $BASIC_USERS basic-auth users"
"$PYTHON" - "$TPORT" "$BENCH_TMP/basic.txt" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
for line in open(sys.argv[2]).read().split("\n"):
    if line:
        c.request("GET", "/basic/", headers={"Authorization": line})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            sys.exit("basic login answered %d" % r.status)
PY

mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup"
declare -A WORKER_PIDS
for t in nginx keyless; do
    WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
done
for t in "${TARGETS[@]}"; do
    WRK_SCRIPT=$BENCH_TMP/$t.lua
    bench_run_wrk "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
    say "warm-up $t: $(awk '/^Requests\/sec/ { print $2 }' "$BENCH_TMP/warmup/$t.txt") req/s"
done
for ((r = 1; r <= RUNS; r++)); do
    for t in "${TARGETS[@]}"; do
        WRK_SCRIPT=$BENCH_TMP/$t.lua
        f="$BENCH_TMP/wrk/$t.$r.txt"
        case $t in nginx | keyless) ;; *) bench_run_wrk "$t" "$REWARM" "$BENCH_TMP/warmup/$t.$r.txt" ;; esac
        bench_run_wrk "$t" "$DURATION" "$f"
        say "run $r/$RUNS $t: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
    done
done

bench_check_survived nginx keyless

echo
"$PYTHON" "$BENCH_DIR/wrkstats.py" "$BENCH_TMP/wrk" hs256/auth rs256/auth es256/auth basic/auth \
    auth/keyless hs256/nginx keyless/nginx | tee "$BENCH_TMP/summary.txt"
bench_cleanup
echo
[ "${KEEP:-1}" = 0 ] || echo "raw outputs and logs: $BENCH_TMP"
