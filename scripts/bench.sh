#!/usr/bin/env bash
# `make bench`: criterion benchmarks, with a scratch redis-server for the store's round trips and
# redis-benchmark against the same server as the yardstick; then the load benchmark against nginx
# (scripts/load_bench.sh), which writes benches/RESULTS.md. CERTGATE_BENCH=load runs only that.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages cmake redis-server
if [ "${CERTGATE_BENCH:-}" = load ]; then
    exec bash scripts/load_bench.sh
fi
work=$(mktemp -d)
trap 'stop_redis "$work/redis"; rm -rf "$work"' EXIT
port=$(free_port)
start_redis "$work/redis" "$port"
export CERTGATE_BENCH_REDIS_URL="redis://127.0.0.1:$port/0"

cargo bench --locked -p certgate-benches "$@"

echo "== yardstick: redis-benchmark on the same server (1 connection, no pipelining)"
redis-benchmark -p "$port" -c 1 -n 20000 -t get,incr -q

echo "== load benchmark: certgate side by side with nginx (writes benches/RESULTS.md)"
bash scripts/load_bench.sh
