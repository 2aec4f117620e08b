#!/usr/bin/env bash
# `make bench`: the criterion benchmarks, with a scratch redis-server for the store's round trips
# and redis-benchmark against the same server as the yardstick; instruction counts of the admission
# decision under callgrind; then the load benchmark against nginx (scripts/load_bench.sh), which
# writes benches/RESULTS.md with all of it. CERTGATE_BENCH=load runs only the load benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages cmake redis-server valgrind
if [ "${CERTGATE_BENCH:-}" = load ]; then
    exec bash scripts/load_bench.sh
fi
work=$(mktemp -d)
trap 'stop_redis "$work/redis"; rm -rf "$work"' EXIT
port=$(free_port)
start_redis "$work/redis" "$port"
export CERTGATE_BENCH_REDIS_URL="redis://127.0.0.1:$port/0"

touch "$work/since"
cargo bench --locked -p certgate-benches "$@"

echo "== yardstick: redis-benchmark on the same server (1 connection, no pipelining)"
redis-benchmark -p "$port" -c 1 -n 20000 -t get,incr -q

echo "== instructions per admission decision (callgrind)"
cargo build --release --locked --quiet -p certgate-benches --bin admission-instructions
repetitions=1000
for case in allowed_ip allowed_certificate allowed_browser redirected; do
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.$case" --collect-atstart=no \
        --toggle-collect='*certgate_counted_decisions*' \
        target/release/admission-instructions "$case" "$repetitions" 2>"$work/callgrind.$case.log" \
        || { cat "$work/callgrind.$case.log" >&2; exit 1; }
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/callgrind.$case")
    [ "${total:-0}" -gt 0 ] || { echo "callgrind counted nothing for $case" >&2; exit 1; }
    echo "$case $total $repetitions" | tee -a "$work/instructions.txt"
done
python3 benches/load/report.py micro target/criterion "$work/since" "$work/instructions.txt" \
    "$work/micro.md"

echo "== load benchmark: certgate side by side with nginx (writes benches/RESULTS.md)"
LOAD_MICRO="$work/micro.md" bash scripts/load_bench.sh
