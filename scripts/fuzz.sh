#!/usr/bin/env bash
# `make fuzz` (long) and the smoke run of `make test` (FUZZ_SMOKE=1): every target in fuzz/,
# coverage-guided by libFuzzer through cargo-fuzz on the stable toolchain (`--sanitizer none`:
# sanitizers need nightly, and the code is `unsafe`-free). Each target starts from its seeds and
# the inputs of crashes fixed before (fuzz/seeds/TARGET), which therefore replay as regression
# tests on every run; what it finds new goes to a scratch corpus, so the tree is left alone.
# A crash, a panic or a hang (over 10 s for one input) fails the run; libFuzzer writes the input
# to fuzz/artifacts/TARGET/, and it belongs in fuzz/seeds/TARGET/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if ! command -v cargo-fuzz >/dev/null; then
    echo "== installing cargo-fuzz (cargo install --locked cargo-fuzz)"
    cargo install --locked --quiet cargo-fuzz --version 0.13.2
fi

if [ "${FUZZ_SMOKE:-0}" = 1 ]; then
    # A debug build compiles much faster; a few seconds per target prove each one runs.
    profile=(--dev)
    limit=(-max_total_time="${FUZZ_SECONDS:-8}")
else
    profile=()
    limit=(-runs="${FUZZ_RUNS:-2000000}")
fi

cd fuzz
echo "== fuzz: building the targets"
cargo fuzz build "${profile[@]}" --sanitizer none
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
summary=()
for target in $(cargo fuzz list); do
    mkdir -p "$scratch/$target" "seeds/$target"
    log="$scratch/$target.log"
    started=$(date +%s)
    if ! cargo fuzz run "${profile[@]}" --sanitizer none "$target" "$scratch/$target" "seeds/$target" -- \
        "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
    summary+=("$(printf '%-20s %10s inputs  %6s s  coverage %s' "$target" "$runs" "$(( $(date +%s) - started ))" "$cov")")
done
echo "== fuzz: every target ran without a crash, panic or hang"
printf '%s\n' "${summary[@]}"
