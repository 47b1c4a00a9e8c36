#!/usr/bin/env bash
# bench/tls.sh: Turnpike vs nginx with TLS, one worker each, same plain
# upstream (nginx returning "hello world\n"), same certificate.
#
# What it measures, per certificate type (ECDSA P-256, RSA-2048), as the
# median over RUNS alternating runs, with the ratio turnpike/nginx:
#   ka      keep-alive HTTPS requests/s (wrk -c CONNS, TLS terminated by the proxy)
#   full    new connections with a full handshake per second
#           (wrk -H "Connection: close": wrk does not resume sessions)
#   resumed resumed handshakes per second (openssl s_time -reuse, one client)
# then once (RSA-2048 upstream certificate):
#   up-ka   plain listener -> HTTPS upstream with keep-alive: Turnpike's
#           https target_url vs nginx proxy_pass https:// with keepalive
#           (verification off on both: proxy_ssl_verify off is nginx's default,
#           proxy_ssl_insecure_skip_verify on Turnpike)
# and the resident memory per idle TLS connection (IDLE_CONNS open after
# their handshake, RSS delta of the worker / IDLE_CONNS), both proxies.
#
# Each test also gives the servers' on-CPU time per request or connection
# (schedstat of master and workers, "us" columns) and its ratio nginx/turnpike
# (above 1: Turnpike spends less): on this 2-core machine the load side
# shares the run, so requests/s swing with it and CPU per request is the
# steadier comparison.
#
# Pinning as bench/run.sh: proxy on cpu0, upstream + load on cpu1.
# Rerun:  make && bench/tls.sh
#         RUNS=5 DURATION=10s CONNS=50 IDLE_CONNS=10000 bench/tls.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

WORKERS=1
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
IDLE_CONNS=${IDLE_CONNS:-10000}
STIME=${STIME:-4}

bench_check_tools
command -v openssl >/dev/null || die "openssl not found"
bench_setup_tmp
trap bench_on_exit EXIT
bench_cpu_plan 1
declare -A SERVER URL
T=$BENCH_TMP

read -r UPORT NPORT TPORT NUPORT TUPORT TLSUP <<<"$(bench_free_ports 6)"
nginx_upstream_conf "$T/upstream" "$UPORT"
bench_spawn upstream "$LOAD_CPUS" "$NGINX_BIN" -p "$T/upstream" -c "$T/upstream/nginx.conf"
bench_wait_port "$UPORT" "$SPAWNED_PID" upstream

mkcert() { # mkcert NAME ALG
    local args
    if [ "$2" = ecdsa ]; then args=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    else args=(-newkey rsa:2048); fi
    openssl req -x509 "${args[@]}" -nodes -keyout "$T/$1.key" -out "$T/$1.crt" -days 3 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
}

nginx_tls_conf() { # DIR PORT UPORT CERT
    local dir=$1
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $dir/tmp_body; proxy_temp_path $dir/tmp_proxy;
    fastcgi_temp_path $dir/tmp_fastcgi; uwsgi_temp_path $dir/tmp_uwsgi; scgi_temp_path $dir/tmp_scgi;
    keepalive_requests 10000;
    upstream bench_up { server 127.0.0.1:$3; keepalive 500; }
    server {
        listen 127.0.0.1:$2 ssl backlog=4096;
        ssl_certificate $4.crt; ssl_certificate_key $4.key;
        ssl_protocols TLSv1.2;
        ssl_session_tickets on;
        location /bench/ { proxy_pass http://bench_up/; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
EOF
}

turnpike_tls_conf() { # DIR PORT UPORT CERT
    local dir=$1
    mkdir -p "$dir/apps"
    cat >"$dir/tyk.conf" <<EOF
{"listen_address": "127.0.0.1", "listen_port": $2, "app_path": "$dir/apps",
 "max_idle_connections_per_host": 500, "log_level": "warn",
 "http_server_options": {"use_ssl": true, "certificates": [{"cert_file": "$4.crt", "key_file": "$4.key"}]},
 "turnpike": {"workers": 1, "max_connections": 20000}}
EOF
    echo "{\"api_id\":\"bench\",\"name\":\"bench\",\"use_keyless\":true,\"proxy\":{\"listen_path\":\"/bench/\",\"target_url\":\"http://127.0.0.1:$3/\",\"strip_listen_path\":true}}" >"$dir/apps/bench.json"
}

rps() { grep '^Requests/sec' "$1" | awk '{print $2}'; }
cpureq() { # FILE: the server's on-CPU microseconds per request in that run
    awk '/^[ \t]*[0-9]+ requests in/ { n = $1 } /^# server_cpu_ns/ { c = $3 }
         END { printf "%.2f\n", (n > 0 ? c / n / 1000 : 0) }' "$1"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
stime() { # TARGET PORT: adds resumed connections per (wall) second to R, CPU per one to C
    local c0 c1 out
    c0=$(bench_cpu_ns "${SERVER[$1]}")
    out=$(taskset -c "$LOAD_CPUS" openssl s_time -connect "127.0.0.1:$2" -reuse -time "$STIME" \
        2>/dev/null | awk '/connections in [0-9.]+ real seconds/ {print $1, $4}' | tail -1)
    c1=$(bench_cpu_ns "${SERVER[$1]}")
    R[$1]+="$(echo "$out" | awk '{printf "%.1f", ($2 > 0 ? $1 / $2 : 0)}') "
    C[$1]+="$(echo "$out" | awk -v c=$((c1 - c0)) '{printf "%.2f", ($1 > 0 ? c / $1 / 1000 : 0)}') "
}
# report CERT TEST: medians of R (requests/s) and C (CPU per request)
report() {
    local n t cn ct
    n=$(echo "${R[nginx]}" | tr ' ' '\n' | grep . | median)
    t=$(echo "${R[turnpike]}" | tr ' ' '\n' | grep . | median)
    cn=$(echo "${C[nginx]}" | tr ' ' '\n' | grep . | median)
    ct=$(echo "${C[turnpike]}" | tr ' ' '\n' | grep . | median)
    printf "%-8s %-8s %12.0f %12.0f %8s %10.2f %10.2f %8s\n" "$1" "$2" "$n" "$t" \
        "$(ratio "$t" "$n")" "$cn" "$ct" "$(ratio "$cn" "$ct")"
}
ulimit -n 65536 2>/dev/null || true

printf "%-8s %-8s %12s %12s %8s %10s %10s %8s\n" cert test nginx turnpike ratio \
    "nginx us" "tp us" "cpu n/t"
for alg in ecdsa rsa; do
    mkcert "$alg" "$alg"
    nginx_tls_conf "$T/nginx-$alg" "$NPORT" "$UPORT" "$T/$alg"
    bench_spawn "nginx-$alg" "$PROXY_CPUS" "$NGINX_BIN" -p "$T/nginx-$alg" -c "$T/nginx-$alg/nginx.conf"
    SERVER[nginx]=$SPAWNED_PID
    bench_wait_port "$NPORT" "$SPAWNED_PID" nginx
    turnpike_tls_conf "$T/tp-$alg" "$TPORT" "$UPORT" "$T/$alg"
    bench_spawn "tp-$alg" "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$T/tp-$alg/tyk.conf"
    SERVER[turnpike]=$SPAWNED_PID
    bench_wait_port "$TPORT" "$SPAWNED_PID" turnpike
    sleep 0.5
    URL[nginx]="https://127.0.0.1:$NPORT/bench/"
    URL[turnpike]="https://127.0.0.1:$TPORT/bench/"
    for test in ka full; do
        declare -A R=([nginx]="" [turnpike]="")
        [ "$test" = full ] && WRK_SCRIPT="$T/close.lua" && echo 'wrk.headers["Connection"] = "close"' >"$WRK_SCRIPT"
        declare -A C=([nginx]="" [turnpike]="")
        for i in $(seq "$RUNS"); do
            for tgt in nginx turnpike; do
                bench_run_wrk "$tgt" "$DURATION" "$T/$alg-$test-$tgt-$i.txt"
                R[$tgt]+="$(rps "$T/$alg-$test-$tgt-$i.txt") "
                C[$tgt]+="$(cpureq "$T/$alg-$test-$tgt-$i.txt") "
            done
        done
        unset WRK_SCRIPT
        report "$alg" "$test"
    done
    declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
    for i in $(seq "$RUNS"); do
        stime nginx "$NPORT"
        stime turnpike "$TPORT"
    done
    report "$alg" resumed
    if [ "$alg" = ecdsa ] && [ "$IDLE_CONNS" -gt 0 ]; then
        for tgt in nginx turnpike; do
            port=$NPORT; [ "$tgt" = turnpike ] && port=$TPORT
            w=$(bench_children "${SERVER[$tgt]}" | tail -1); [ -n "$w" ] || w=${SERVER[$tgt]}
            r0=$(bench_rss "$w")
            "$PYTHON" - "$port" "$IDLE_CONNS" "$T/idle-$tgt.ready" <<'EOF' &
import socket, ssl, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port)); held.append(ctx.wrap_socket(s))
open(ready, "w").write("ok")
time.sleep(30)
EOF
            hp=$!
            for _ in $(seq 600); do [ -e "$T/idle-$tgt.ready" ] && break; sleep 0.2; done
            sleep 1
            r1=$(bench_rss "$w")
            kill "$hp" 2>/dev/null; wait "$hp" 2>/dev/null || true
            printf "%-8s %-8s %s: %s KB per idle TLS connection (%d open)\n" "$alg" idle "$tgt" \
                "$(awk -v a="$r0" -v b="$r1" -v n="$IDLE_CONNS" 'BEGIN {printf "%.1f", (b - a) / n / 1024}')" \
                "$IDLE_CONNS"
        done
    fi
    kill "${SERVER[nginx]}" "${SERVER[turnpike]}" 2>/dev/null || true
    sleep 1
done

# HTTPS upstream with keep-alive
mkdir -p "$T/tlsup/logs"
cat >"$T/tlsup/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1; daemon off; pid $T/tlsup/nginx.pid; error_log $T/tlsup/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_body_temp_path $T/tlsup/tb; proxy_temp_path $T/tlsup/tp; fastcgi_temp_path $T/tlsup/tf; uwsgi_temp_path $T/tlsup/tu; scgi_temp_path $T/tlsup/ts;
  server { listen 127.0.0.1:$TLSUP ssl; ssl_certificate $T/rsa.crt; ssl_certificate_key $T/rsa.key;
    location / { default_type text/plain; return 200 "hello world\n"; } } }
EOF
bench_spawn tlsup "$LOAD_CPUS" "$NGINX_BIN" -p "$T/tlsup" -c "$T/tlsup/nginx.conf"
bench_wait_port "$TLSUP" "$SPAWNED_PID" tlsup
mkdir -p "$T/nup/logs"
cat >"$T/nup/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1; daemon off; pid $T/nup/nginx.pid; error_log $T/nup/logs/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $T/nup/tb; proxy_temp_path $T/nup/tp; fastcgi_temp_path $T/nup/tf; uwsgi_temp_path $T/nup/tu; scgi_temp_path $T/nup/ts;
  upstream tls_up { server 127.0.0.1:$TLSUP; keepalive 500; }
  server { listen 127.0.0.1:$NUPORT;
    location /bench/ { proxy_pass https://tls_up/; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_ssl_session_reuse on; } } }
EOF
bench_spawn nup "$PROXY_CPUS" "$NGINX_BIN" -p "$T/nup" -c "$T/nup/nginx.conf"
SERVER[nginx]=$SPAWNED_PID
bench_wait_port "$NUPORT" "$SPAWNED_PID" nginx
turnpike_conf "$T/tup" "$TUPORT" "$TLSUP" 1
sed -i "s|http://127.0.0.1:$TLSUP/|https://127.0.0.1:$TLSUP/|" "$T/tup/apps/bench.json"
sed -i 's|"log_level": "warn",|"log_level": "warn", "proxy_ssl_insecure_skip_verify": true,|' "$T/tup/tyk.conf"
bench_spawn tup "$PROXY_CPUS" "$TURNPIKE_BIN" --conf "$T/tup/tyk.conf"
SERVER[turnpike]=$SPAWNED_PID
bench_wait_port "$TUPORT" "$SPAWNED_PID" turnpike
URL[nginx]="http://127.0.0.1:$NUPORT/bench/"
URL[turnpike]="http://127.0.0.1:$TUPORT/bench/"
declare -A R=([nginx]="" [turnpike]="") C=([nginx]="" [turnpike]="")
for i in $(seq "$RUNS"); do
    for tgt in nginx turnpike; do
        bench_run_wrk "$tgt" "$DURATION" "$T/up-$tgt-$i.txt"
        R[$tgt]+="$(rps "$T/up-$tgt-$i.txt") "
        C[$tgt]+="$(cpureq "$T/up-$tgt-$i.txt") "
    done
done
report rsa up-ka
say "raw outputs in $T"
