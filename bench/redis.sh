#!/usr/bin/env bash
# bench/redis.sh: Turnpike's Redis client against redis-benchmark, same
# server, same commands, in one run.
#
# Starts a redis-server (pinned to cpu1) on a free loopback port, then for
# each round runs, pinned to cpu0:
#   redis-benchmark -P 16 -c 50 -r 10000 for GET, INCR and an EVALSHA of
#   the fixed-window counter script (INCR + PEXPIRE on first hit);
#   build/tp_redis_bench: one libuv loop, 800 callers (= 50 x 16 commands
#   in flight, as redis-benchmark keeps), same keys and script;
# and prints the median commands/s over the rounds and the ratio
# Turnpike/redis-benchmark for each command.
#
# Rerun: make tools && bench/redis.sh      (RUNS=5 SECONDS_PER=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
SECS=${SECONDS_PER:-3}
BENCH=build/tp_redis_bench
[ -x "$BENCH" ] || { echo "build $BENCH first: make tools" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark not found (package redis-tools)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/turnpike-redis-bench.XXXXXX)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; }
trap cleanup EXIT
taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" --daemonize yes
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

script="local c = redis.call('INCR', KEYS[1]) if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return c"
sha=$(redis-cli -p "$port" script load "$script")
n=$((400000 * SECS))

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "redis: $(redis-server --version | cut -d' ' -f3); server on cpu1, clients on cpu0; $RUNS rounds"
for r in $(seq "$RUNS"); do
    for t in get incr evalsha; do
        case $t in
            get) args=(-t get) ;;
            incr) args=(-t incr) ;;
            evalsha) args=(EVALSHA "$sha" 1 "key:__rand_int__" 1000) ;;
        esac
        v=$(taskset -c 0 redis-benchmark -p "$port" -P 16 -c 50 -r 10000 -n "$n" -q "${args[@]}" \
            | tr '\r' '\n' | grep -E "requests per second" | tail -1 \
            | sed -E 's/.* ([0-9.]+) requests per second.*/\1/')
        echo "redis-benchmark $t $v" >> "$tmp/results"
    done
    taskset -c 0 "$BENCH" --port "$port" --callers 800 --seconds "$SECS" \
        | sed 's/^/turnpike /' >> "$tmp/results"
done

/usr/bin/python3 - "$tmp/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    who, t, v = line.split()[:3]
    rows.setdefault((who, t), []).append(float(v.replace(",", "")))
print("%-9s %18s %18s %8s" % ("command", "redis-benchmark", "turnpike client", "ratio"))
for t in ("get", "incr", "evalsha"):
    a = statistics.median(rows[("redis-benchmark", t)])
    b = statistics.median(rows[("turnpike", t)])
    print("%-9s %14.0f/s %14.0f/s %7.2fx" % (t, a, b, b / a))
print("(medians of %d rounds; redis-benchmark -P 16 -c 50 -r 10000; turnpike: 800 commands in flight)"
      % len(rows[("turnpike", "get")]))
PY
echo "raw results: $tmp/results"
