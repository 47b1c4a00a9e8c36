#!/usr/bin/env bash
# bench/reload.sh: reload latency (10 / 1,000 / 10,000 APIs), throughput
# during a reload storm as a ratio of throughput without reloads, and the
# memory of the master and workers before and after 1,000 reloads. See
# bench/reload.py for what each part does.
#
# Rerun
#   make && bench/reload.sh                  # all three parts, ~4 min
#   bench/reload.sh latency                  # one part: latency, storm, memory
#   SIZES=10,1000 RUNS=21 bench/reload.sh latency
#   STORM_RUNS=5 STORM_SECONDS=10 bench/reload.sh storm
#   MEM_RELOADS=1000 bench/reload.sh memory
# Other settings: WORKERS (1), CONNS (wrk -c, 50), PIN=0 (no taskset),
# TURNPIKE_BIN.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/reload.py" "$@"
