#!/usr/bin/env bash
# `make test`: installs what the tests need when it is missing, checks formatting and lints,
# starts a scratch PostgreSQL on a free port, runs every test, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# chromium and chromium-driver: the browser tests drive headless Chromium through chromedriver.
# nodejs and npm: the single sign-on tests' OpenID Connect providers run on Node.js.
# nginx: the load benchmark's harness runs against it (its smoke run, below; oha it installs itself).
# prometheus: promtool tests the alert rules in deploy/prometheus. podman and runc: the container
# image is built and run (tests/e2e/container.rs). systemd: systemd-analyze checks the unit.
# pebble: the ACME test server that issues certificates to [server.acme] (tests/e2e/acme.rs).
ensure_packages cmake curl openssl postgresql redis-server oathtool python3 chromium chromium-driver \
    nodejs npm nginx valgrind prometheus podman runc systemd pebble
ensure_rust_components
# A real SMTP server for the mail tests.
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check aiosmtpd
# schemathesis checks the admin API against its OpenAPI document (tests/e2e/admin_api.rs).
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check schemathesis
# The OpenID Connect providers: oidc-provider, pinned in tests/oidc/package-lock.json.
ensure_npm_packages tests/oidc

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Each alert fires on the series that should wake someone, and not on those next to it.
echo "== alert rules"
(cd deploy/prometheus && promtool check rules certgate-alerts.yml && promtool test rules certgate-alerts.test.yml)

work=$(mktemp -d)
# The scratch PostgreSQL runs as the postgres user, which must reach its directory.
chmod 711 "$work"
cleanup() {
    stop_redis "$work/redis" || true
    stop_postgres "$work/pg" || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== services"
pg_port=$(free_port)
start_postgres "$work/pg" "$pg_port"
export CERTGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/certgate_test"
redis_port=$(free_port)
start_redis "$work/redis" "$redis_port"
export CERTGATE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"

# `make demo` on a fresh machine: its build step installs cmake through scripts/lib.sh (bash).
# Checked with a PATH that has no cmake and no cargo, and an apt-get that records its arguments.
echo "== make build without cmake"
bare="$work/bare"
mkdir "$bare"
for tool in bash make id; do ln -s "$(command -v "$tool")" "$bare/$tool"; done
printf '#!/bin/bash\necho "$*" >> "%s/apt-get.log"\n' "$bare" > "$bare/apt-get"
printf '#!/bin/bash\nexec "$@"\n' > "$bare/sudo"
chmod +x "$bare/apt-get" "$bare/sudo"
PATH="$bare" make --no-print-directory build CARGO=true
grep -q "install .*cmake" "$bare/apt-get.log" || { echo "make build did not install cmake"; exit 1; }

echo "== build"
cargo build --workspace --locked --bins

# The unit as installed, with the binary just built: systemd-analyze prints every problem but
# exits 0 on most, so any output fails.
echo "== systemd unit"
mkdir "$work/unit"
sed "s#/usr/local/bin/certgate#$(realpath "${CARGO_TARGET_DIR:-target}")/debug/certgate#g" \
    deploy/certgate.service > "$work/unit/certgate.service"
verified=$(systemd-analyze verify "$work/unit/certgate.service" 2>&1) || { echo "$verified"; exit 1; }
[ -z "$verified" ] || { echo "$verified"; exit 1; }

echo "== tests"
cargo test --workspace --locked --no-fail-fast

# Every fuzz target, a few seconds each from its seeds and past crashes (`make fuzz` runs long).
echo "== fuzz (smoke run)"
FUZZ_SMOKE=1 bash scripts/fuzz.sh

# The load benchmark's harness, one short round against certgate and nginx with the debug build:
# every target must still answer every scenario correctly. It times nothing.
echo "== load benchmark harness (smoke run)"
LOAD_SMOKE=1 bash scripts/load_bench.sh
