#!/usr/bin/env bash
# `make run`: the sample upstream, a local Redis if none answers at the
# configured address, and the gateway in the foreground with conf/tyk.conf.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/turnpike}
conf=${TURNPIKE_CONF:-conf/tyk.conf}
rundir=.run
mkdir -p "$rundir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

redis_host=${TYK_GW_STORAGE_HOST:-127.0.0.1}
redis_port=${TYK_GW_STORAGE_PORT:-6379}
if redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
    echo "run: using the Redis at $redis_host:$redis_port"
elif [ "$redis_host" = "127.0.0.1" ] || [ "$redis_host" = "localhost" ]; then
    echo "run: starting a local Redis on port $redis_port (data in $rundir/)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$rundir" --logfile "$PWD/$rundir/redis.log" &
    pids+=($!)
    for _ in $(seq 50); do
        redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
else
    echo "run: no Redis answers at $redis_host:$redis_port" >&2
fi

echo "run: starting the sample upstream on 127.0.0.1:8000"
/usr/bin/python3 test/upstream.py 8000 >"$rundir/upstream.log" 2>&1 &
pids+=($!)
sleep 0.3

echo "run: gateway on http://127.0.0.1:8080 -- try: curl http://127.0.0.1:8080/sample/echo"
"$bin" --conf "$conf" &
gw=$!
pids+=($gw)
wait "$gw"
