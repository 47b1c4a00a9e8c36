# bench/lib.sh: helpers shared by bench/run.sh, bench/idle-memory.sh,
# bench/auth.sh and bench/limits.sh.
# Sourced, not run. Everything lives in $BENCH_TMP (a mktemp -d directory);
# every process started with bench_spawn is stopped by bench_cleanup.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT_DIR=$(dirname "$BENCH_DIR")
PYTHON=/usr/bin/python3
TURNPIKE_BIN=${TURNPIKE_BIN:-$ROOT_DIR/build/turnpike}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
WRK_BIN=${WRK_BIN:-$(command -v wrk || true)}

BENCH_PIDS=()

die() {
    echo "bench: error: $*" >&2
    exit 1
}
say() { echo "bench: $*" >&2; }

# Processes are stopped by their pid, in reverse order of start: TERM, then
# KILL after 3 s. nginx masters take their workers with them; Turnpike
# workers die with their master (PDEATHSIG).
bench_cleanup() {
    local i p n
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        p=${BENCH_PIDS[i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        p=${BENCH_PIDS[i]}
        for ((n = 0; n < 30; n++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BENCH_PIDS=()
}

# bench_forget PID: PID has been waited for; cleanup must not signal it.
bench_forget() {
    local keep=() p
    for p in "${BENCH_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BENCH_PIDS=("${keep[@]}")
}

# bench_on_exit: the EXIT trap: stops everything; with KEEP=0 also removes
# the temp directory this script created.
bench_on_exit() {
    bench_cleanup
    if [ "${KEEP:-1}" = 0 ] && [ -n "${BENCH_TMP_OWNED:-}" ]; then
        rm -rf "$BENCH_TMP_OWNED"
    fi
}

# bench_setup_tmp: creates $BENCH_TMP unless the caller already set one.
bench_setup_tmp() {
    if [ -z "${BENCH_TMP:-}" ]; then
        BENCH_TMP=$(mktemp -d /tmp/turnpike-bench.XXXXXX)
        BENCH_TMP_OWNED=$BENCH_TMP
    fi
    mkdir -p "$BENCH_TMP"
    export BENCH_TMP
}

bench_check_tools() {
    [ -x "$NGINX_BIN" ] || die "nginx not found (apt-get install nginx-light)"
    [ -x "$PYTHON" ] || die "$PYTHON not found"
    command -v curl >/dev/null || die "curl not found"
    [ -x "$TURNPIKE_BIN" ] || die "$TURNPIKE_BIN not found: run 'make' in $ROOT_DIR first"
}

# bench_free_ports N: prints N distinct free loopback TCP ports (the kernel
# picks them; all are held open together so they differ).
bench_free_ports() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# bench_spawn NAME CPUS CMD...: runs CMD in the background, pinned to CPUS
# with taskset unless CPUS is empty; its output goes to $BENCH_TMP/NAME.log.
# Sets SPAWNED_PID.
bench_spawn() {
    local name=$1 cpus=$2
    shift 2
    if [ -n "$cpus" ]; then
        taskset -c "$cpus" "$@" >"$BENCH_TMP/$name.log" 2>&1 &
    else
        "$@" >"$BENCH_TMP/$name.log" 2>&1 &
    fi
    SPAWNED_PID=$!
    BENCH_PIDS+=("$SPAWNED_PID")
}

# bench_start_backends UPORT NPORT RPORT: what the keyed benchmarks run
# against, each started in $BENCH_TMP and waited for: the upstream (nginx,
# on LOAD_CPUS) on UPORT, nginx as a reverse proxy to it (the reference,
# on PROXY_CPUS, WORKERS workers) on NPORT, and a redis-server without
# persistence (on LOAD_CPUS) on RPORT. Declares the SERVER map with the
# reference's pid under "nginx".
bench_start_backends() {
    local uport=$1 nport=$2 rport=$3
    nginx_upstream_conf "$BENCH_TMP/upstream" "$uport"
    bench_spawn upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/upstream" -c "$BENCH_TMP/upstream/nginx.conf"
    bench_wait_port "$uport" "$SPAWNED_PID" upstream

    nginx_proxy_conf "$BENCH_TMP/nginx" "$nport" "$uport" "$WORKERS" 4096
    bench_spawn nginx "$PROXY_CPUS" "$NGINX_BIN" -p "$BENCH_TMP/nginx" -c "$BENCH_TMP/nginx/nginx.conf"
    declare -gA SERVER=([nginx]=$SPAWNED_PID)
    bench_wait_port "$nport" "$SPAWNED_PID" nginx

    mkdir -p "$BENCH_TMP/redis"
    bench_spawn redis "$LOAD_CPUS" redis-server --port "$rport" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$BENCH_TMP/redis"
    bench_wait_port "$rport" "$SPAWNED_PID" redis
}

# bench_wait_port PORT PID NAME: waits (10 s at most) until PORT accepts
# connections, failing if PID dies first.
bench_wait_port() {
    local port=$1 pid=$2 name=$3 n
    for ((n = 0; n < 100; n++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$BENCH_TMP/$name.log" >&2 2>/dev/null || true
            die "$name (pid $pid) exited during start-up; log above ($BENCH_TMP/$name.log)"
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 10 s (log: $BENCH_TMP/$name.log)"
}

# bench_expect_200 URL NAME: the target must answer 200 "hello world".
bench_expect_200() {
    local url=$1 name=$2 out code body n
    for ((n = 0; n < 20; n++)); do
        out=$(curl -sk --max-time 2 -w '\n%{http_code}' "$url" 2>/dev/null || true)
        code=${out##*$'\n'}
        body=${out%$'\n'*}
        body=${body%$'\n'}
        if [ "$code" = 200 ] && [ "$body" = "hello world" ]; then
            return 0
        fi
        sleep 0.2
    done
    die "$name did not answer 200 \"hello world\" on $url (last: HTTP ${code:-none}, body '${body:0:80}'; log: $BENCH_TMP/$name.log)"
}

# bench_mkcert PREFIX ecdsa|rsa: a self-signed certificate for localhost and
# 127.0.0.1 (ECDSA P-256 or RSA-2048) in PREFIX.crt, its key in PREFIX.key.
bench_mkcert() {
    local args=(-newkey rsa:2048)
    [ "$2" = ecdsa ] && args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    openssl req -x509 "${args[@]}" -nodes -keyout "$1.key" -out "$1.crt" -days 3 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null ||
        die "openssl could not make a $2 certificate"
}

# bench_children PID: the child pids of PID (the worker processes of an
# nginx or Turnpike master).
bench_children() {
    local f p
    for f in /proc/"$1"/task/*/children; do
        cat "$f" 2>/dev/null
    done | tr ' ' '\n' | sed '/^$/d' | while read -r p; do
        # nginx's proxy_cache helpers come and go by design: not workers
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'cache \(loader\|manager\)' || echo "$p"
    done
}

# bench_cpu_ns PID...: on-CPU time in ns of the PIDs, their children and all
# their threads (from /proc/<pid>/task/<tid>/schedstat, field 1). Children
# exited since are not counted.
bench_cpu_ns() {
    local p all=()
    for p in "$@"; do
        all+=("$p")
        all+=($(bench_children "$p"))
    done
    for p in "${all[@]}"; do
        cat /proc/"$p"/task/*/schedstat 2>/dev/null
    done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# bench_cpu_ticks CPUS: "busy total" jiffies summed over the CPUs of a
# taskset-style list (e.g. 0, 1-3, 0,2); all CPUs when CPUS is empty. Busy
# includes irq and softirq time, which on loopback is a large share.
bench_cpu_ticks() {
    local list=$1 part ids=()
    if [ -z "$list" ]; then
        awk '/^cpu / { b = $2+$3+$4+$7+$8+$9; print b, b+$5+$6 }' /proc/stat
        return
    fi
    for part in ${list//,/ }; do
        if [[ $part == *-* ]]; then
            ids+=($(seq "${part%-*}" "${part#*-}"))
        else
            ids+=("$part")
        fi
    done
    awk -v ids=" ${ids[*]} " '
        /^cpu[0-9]/ { id = substr($1, 4); if (index(ids, " " id " ")) {
            b += $2+$3+$4+$7+$8+$9; t += $2+$3+$4+$5+$6+$7+$8+$9 } }
        END { print b, t }' /proc/stat
}

# bench_busy_pct "B0 T0" "B1 T1": busy % between two bench_cpu_ticks samples.
bench_busy_pct() {
    echo "$1 $2" | awk '{ d = $4 - $2; printf "%.0f\n", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

# bench_median: the median of the numbers on stdin (space or newline separated).
bench_median() {
    tr ' ' '\n' | grep . | sort -n |
        awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'
}

# bench_ratio A B: A/B to three decimals (0 when B is 0).
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }

# bench_rss PID: resident set size of PID in bytes (VmRSS).
bench_rss() {
    awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"
}

# bench_run_wrk TARGET DURATION OUTFILE [CPUS]: one wrk run against
# ${URL[TARGET]} (server ${SERVER[TARGET]}; wrk -t$THREADS -c$CONNS, plus
# -s $WRK_SCRIPT when set), on LOAD_CPUS unless CPUS is given. Appends the
# server's on-CPU time during the run (master, workers, all threads, from
# schedstat) as "# server_cpu_ns N" and the busy % of the CPU sets.
bench_run_wrk() {
    local cpus=${4-$LOAD_CPUS} c0 c1 p0 p1 l0 l1
    local cmd=("$WRK_BIN" "-t$THREADS" "-c$CONNS" "-d$2" --latency)
    [ -n "${WRK_SCRIPT:-}" ] && cmd+=(-s "$WRK_SCRIPT")
    cmd+=("${URL[$1]}")
    [ -n "$cpus" ] && cmd=(taskset -c "$cpus" "${cmd[@]}")
    echo "# ${cmd[*]}" >"$3"
    c0=$(bench_cpu_ns "${SERVER[$1]}")
    p0=$(bench_cpu_ticks "$PROXY_CPUS")
    l0=$(bench_cpu_ticks "$LOAD_CPUS")
    # in the background, so that a signal to this script is handled at once
    "${cmd[@]}" >>"$3" 2>&1 &
    local wp=$! rc=0
    BENCH_PIDS+=("$wp")
    wait "$wp" || rc=$?
    bench_forget "$wp"
    [ "$rc" = 0 ] || die "wrk failed against $1 (status $rc); see $3"
    c1=$(bench_cpu_ns "${SERVER[$1]}")
    p1=$(bench_cpu_ticks "$PROXY_CPUS")
    l1=$(bench_cpu_ticks "$LOAD_CPUS")
    {
        echo "# server_cpu_ns $((c1 - c0))"
        echo "# proxy_cpus_busy_pct $(bench_busy_pct "$p0" "$p1")"
        [ -n "$LOAD_CPUS" ] && echo "# load_cpus_busy_pct $(bench_busy_pct "$l0" "$l1")"
    } >>"$3"
    grep -q '^Requests/sec' "$3" || die "wrk printed no result against $1; see $3"
}

# bench_check_survived TARGET...: every process started is still up and
# each TARGET's server has the workers recorded in WORKER_PIDS[TARGET]
# before the runs: a crash mid-run would make the numbers lie.
bench_check_survived() {
    local p t now
    for p in "${BENCH_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || die "a server (pid $p) died during the runs; logs in $BENCH_TMP"
    done
    for t in "$@"; do
        now=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
        [ "$now" = "${WORKER_PIDS[$t]}" ] ||
            die "$t workers changed during the runs (${WORKER_PIDS[$t]}-> $now): a worker crashed; logs in $BENCH_TMP"
    done
}

# bench_wrk_start [VAR...]: how the wrk scripts begin: WORKERS=1 CONNS=50
# DURATION=8s RUNS=5 THREADS=1 WARMUP=3s unless set, those (and VAR...)
# checked as positive integers, wrk and redis-server present, the tools,
# $BENCH_TMP with the exit traps, and the CPU plan for $WORKERS.
bench_wrk_start() {
    WORKERS=${WORKERS:-1}
    CONNS=${CONNS:-50}
    DURATION=${DURATION:-8s}
    RUNS=${RUNS:-5}
    THREADS=${THREADS:-1}
    WARMUP=${WARMUP:-3s}
    local v
    for v in WORKERS CONNS RUNS THREADS "$@"; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
    done
    [ -n "$WRK_BIN" ] || die "wrk not found (apt-get install wrk)"
    command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
    bench_check_tools
    bench_setup_tmp
    trap bench_on_exit EXIT
    trap 'exit 130' INT TERM
    bench_cpu_plan "$WORKERS"
}

# bench_wrk_banner TITLE: what a run measures, on what, how (TARGETS, the
# wrk settings, the pinning) and where its raw outputs go.
bench_wrk_banner() {
    echo "== $1 =="
    bench_machine
    echo "turnpike: $TURNPIKE_BIN ($("$TURNPIKE_BIN" --version | head -1)); $("$NGINX_BIN" -v 2>&1)"
    echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency, $RUNS runs alternating ${TARGETS[*]},"
    echo "      warm-up $WARMUP per target"
    if [ -n "$PROXY_CPUS$LOAD_CPUS" ]; then
        echo "pinning: proxy under test on cpu ${PROXY_CPUS:-any}; upstream + wrk + redis on cpu ${LOAD_CPUS:-any}"
    fi
    echo "raw outputs: $BENCH_TMP"
    echo
}

# bench_alternate TARGET...: records each TARGET's workers (WORKER_PIDS),
# warms each up for $WARMUP, then runs them in turn RUNS times for
# $DURATION into $BENCH_TMP/wrk/<target>.<run>.txt, and checks that no
# server or worker died meanwhile.
bench_alternate() {
    local t r f
    mkdir -p "$BENCH_TMP/wrk" "$BENCH_TMP/warmup"
    declare -gA WORKER_PIDS
    for t in "$@"; do
        WORKER_PIDS[$t]=$(bench_children "${SERVER[$t]}" | sort | tr '\n' ' ')
    done
    for t in "$@"; do
        bench_run_wrk "$t" "$WARMUP" "$BENCH_TMP/warmup/$t.txt"
        say "warm-up $t: $(awk '/^Requests\/sec/ { print $2 }' "$BENCH_TMP/warmup/$t.txt") req/s"
    done
    for ((r = 1; r <= RUNS; r++)); do
        for t in "$@"; do
            f="$BENCH_TMP/wrk/$t.$r.txt"
            bench_run_wrk "$t" "$DURATION" "$f"
            say "run $r/$RUNS $t: $(awk '/^Requests\/sec/ { print $2 }' "$f") req/s"
        done
    done
    bench_check_survived "$@"
}

# bench_redis_cmdstats PORT: "command calls" per line, from INFO
# commandstats of the Redis on PORT (subcommands keep their names, e.g.
# config|get). Commands run inside Lua scripts are counted too, under their
# own names, as Redis counts them.
bench_redis_cmdstats() {
    redis-cli -p "$1" info commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ { print substr($1, 9), $3 }'
}

# bench_admin SOCKET LINE: sends LINE to a Turnpike admin socket and prints
# the answer (the server closes the connection after it).
bench_admin() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
EOF
}

# ---- configuration writers -------------------------------------------------

# The writers below take two optional variables, set for one call
# (TLS_CERT=... nginx_proxy_conf ...):
#   TLS_CERT     path prefix of a certificate and key (TLS_CERT.crt, .key):
#                the server written listens with TLS 1.2 and that certificate
#   UPSTREAM_TLS 1: the proxy written talks https to its upstream (nginx
#                proxy_pass https:// with session reuse, Turnpike an https
#                target_url; neither verifies, as nginx does by default)
#   WEBSOCKETS   1: the proxy passes upgrades (nginx: Upgrade and
#                Connection: Upgrade set, proxy_read_timeout 3600s; Turnpike:
#                http_server_options.enable_websockets)
bench_nginx_tls() { # the certificate lines for TLS_CERT
    [ -n "${TLS_CERT:-}" ] || return 0
    echo "ssl_certificate $TLS_CERT.crt; ssl_certificate_key $TLS_CERT.key;"
    echo "        ssl_protocols TLSv1.2; ssl_session_tickets on;"
}

# nginx_upstream_conf DIR PORT: the upstream, 1 worker, "hello world\n".
nginx_upstream_conf() {
    local dir=$1 port=$2
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
# upstream for the Turnpike benchmark: a short fixed body
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    fastcgi_temp_path $dir/tmp_fastcgi;
    uwsgi_temp_path $dir/tmp_uwsgi;
    scgi_temp_path $dir/tmp_scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$port backlog=4096$( [ -n "${TLS_CERT:-}" ] && echo " ssl");
        $(bench_nginx_tls)
        location / {
            default_type text/plain;
            return 200 "hello world\n";
        }
    }
}
EOF
}

# nginx_proxy_conf DIR PORT UPORT WORKERS WORKER_CONNECTIONS [RLIMIT_NOFILE]:
# nginx as a plain reverse proxy, /bench/ -> upstream /, keepalive pool;
# with CACHE=1 also /cache/, the same through proxy_cache (200s kept 1 h).
# keepalive_requests matches Turnpike's default (10000) so both recycle
# client connections equally often.
nginx_proxy_conf() {
    local dir=$1 port=$2 uport=$3 workers=$4 wconns=$5 nofile=${6:-}
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
# nginx reverse proxy, the reference for the Turnpike benchmark
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes $workers;
$( [ -n "$nofile" ] && echo "worker_rlimit_nofile $nofile;" )
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections $wconns; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body;
    proxy_temp_path $dir/tmp_proxy;
    fastcgi_temp_path $dir/tmp_fastcgi;
    uwsgi_temp_path $dir/tmp_uwsgi;
    scgi_temp_path $dir/tmp_scgi;
    keepalive_requests 10000;
    keepalive_timeout 75s;
    upstream bench_up {
        server 127.0.0.1:$uport;
        keepalive 500;
        keepalive_requests 1000000;
    }
    $( [ "${CACHE:-}" = 1 ] && echo "proxy_cache_path $dir/cache levels=1:2 keys_zone=bench_cache:10m inactive=1h;" )
    server {
        listen 127.0.0.1:$port backlog=4096$( [ -n "${TLS_CERT:-}" ] && echo " ssl");
        $(bench_nginx_tls)
        $( [ "${CACHE:-}" = 1 ] && cat <<CACHED
location /cache/ {
            proxy_pass http://bench_up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench_cache;
            proxy_cache_valid 200 1h;
        }
CACHED
        )
        location /bench/ {
            proxy_pass http$( [ "${UPSTREAM_TLS:-}" = 1 ] && echo s)://bench_up/;
            proxy_http_version 1.1;
            $( if [ "${WEBSOCKETS:-}" = 1 ]; then
                echo 'proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "Upgrade";'
                echo '            proxy_read_timeout 3600s;'
            else
                echo 'proxy_set_header Connection "";'
            fi )
            $( [ "${UPSTREAM_TLS:-}" = 1 ] && echo "proxy_ssl_session_reuse on;")
        }
    }
}
EOF
}

bench_tp_server_options() { # http_server_options members for TLS_CERT and WEBSOCKETS
    local o=()
    [ -n "${TLS_CERT:-}" ] && o+=("\"use_ssl\": true, \"certificates\": [{\"cert_file\": \"$TLS_CERT.crt\", \"key_file\": \"$TLS_CERT.key\"}]")
    [ "${WEBSOCKETS:-}" = 1 ] && o+=("\"enable_websockets\": true")
    local IFS=,
    echo "${o[*]}"
}

# turnpike_conf DIR PORT UPORT WORKERS: tyk.conf plus one keyless API.
turnpike_conf() {
    local dir=$1 port=$2 uport=$3 workers=$4
    mkdir -p "$dir/apps"
    cat >"$dir/tyk.conf" <<EOF
{
  "listen_address": "127.0.0.1",
  "listen_port": $port,
  "app_path": "$dir/apps",
  "max_idle_connections_per_host": 500,
  "log_level": "warn",
  "http_server_options": {$(bench_tp_server_options)},
$( [ "${UPSTREAM_TLS:-}" = 1 ] && echo "  \"proxy_ssl_insecure_skip_verify\": true,")
  "turnpike": { "workers": $workers }
}
EOF
    local scheme=http
    [ "${UPSTREAM_TLS:-}" = 1 ] && scheme=https
    cat >"$dir/apps/bench.json" <<EOF
{"api_id":"bench","name":"bench","use_keyless":true,"proxy":{"listen_path":"/bench/","target_url":"$scheme://127.0.0.1:$uport/","strip_listen_path":true}}
EOF
}

# bench_cpu_plan WORKERS: sets PROXY_CPUS (the proxy under test) and
# LOAD_CPUS (upstream + wrk / the connection holder). With N cores and W
# workers: proxy on cpus 0..W-1, load on the rest; no pinning when W >= N.
# PIN=0 disables pinning; PROXY_CPUS / LOAD_CPUS override.
bench_cpu_plan() {
    local w=$1 n
    n=$(nproc)
    if [ "${PIN:-1}" = 0 ]; then
        PROXY_CPUS=${PROXY_CPUS:-}
        LOAD_CPUS=${LOAD_CPUS:-}
    elif [ -z "${PROXY_CPUS:-}" ] && [ -z "${LOAD_CPUS:-}" ]; then
        if [ "$w" -lt "$n" ]; then
            PROXY_CPUS=0
            [ "$w" -gt 1 ] && PROXY_CPUS=0-$((w - 1))
            LOAD_CPUS=$w
            [ "$w" -lt $((n - 1)) ] && LOAD_CPUS=$w-$((n - 1))
        else
            PROXY_CPUS=
            LOAD_CPUS=
        fi
    fi
    PROXY_CPUS=${PROXY_CPUS:-}
    LOAD_CPUS=${LOAD_CPUS:-}
}

# bench_busy: % of all CPUs busy over 1 s, before anything is started: other
# work on the machine makes the numbers noisy.
bench_busy() {
    local a b
    a=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
    echo "$a $b" | awk '{ d = $4 - $2; printf "%.0f\n", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

bench_machine() {
    local model
    model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "machine: ${model:-unknown CPU}, $(nproc) cores online, kernel $(uname -r)"
    local busy
    busy=$(bench_busy)
    echo "machine busy before start: ${busy}% of all CPUs (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    [ "$busy" -le 10 ] || echo "WARNING: other work is running on this machine; expect noisy numbers"
}

# bench_profile TARGET: where a request of TARGET goes, for bench/PROFILE.md.
# Two more wrk runs of $PROFILE_DURATION (default 4s) against it, unmeasured
# for throughput (the tools slow the server):
#   1. `strace -c -f` attached to each of the target's worker processes:
#      system calls per request (calls / wrk's request count), by name;
#   2. `perf record -F $PROFILE_FREQ` (default 2000) of the same workers:
#      CPU per request (samples / frequency / requests) by part (kernel,
#      the server, libc, libuv, ...) and by user-space function.
# Into $BENCH_TMP/profile/TARGET.*; bench/profile_report.py prints them.
bench_profile() {
    local t=$1 d=$BENCH_TMP/profile pids p spids=() dur=${PROFILE_DURATION:-4s}
    mkdir -p "$d"
    pids=$(bench_children "${SERVER[$t]}" | sort)
    [ -n "$pids" ] || die "no workers for $t"
    for p in $pids; do
        strace -c -f -p "$p" -o "$d/$t.strace.$p" 2>/dev/null &
        spids+=($!)
    done
    sleep 0.5
    bench_run_wrk "$t" "$dur" "$d/$t.strace.wrk"
    kill -INT "${spids[@]}" 2>/dev/null || true
    wait "${spids[@]}" 2>/dev/null || true
    if command -v perf >/dev/null && perf record -o /dev/null -- true >/dev/null 2>&1; then
        perf record -F "${PROFILE_FREQ:-2000}" -g -p "$(echo $pids | tr ' ' ',')" \
            -o "$d/$t.perf.data" -- sleep 3600 >/dev/null 2>&1 &
        local pp=$!
        sleep 0.5
        bench_run_wrk "$t" "$dur" "$d/$t.perf.wrk"
        kill -INT "$pp" 2>/dev/null || true
        wait "$pp" 2>/dev/null || true
        echo "${PROFILE_FREQ:-2000}" >"$d/$t.perf.freq"
    else
        say "perf cannot record here: no CPU profile for $t"
    fi
}
