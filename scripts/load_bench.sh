#!/usr/bin/env bash
# The load benchmark of `make bench`: oha against the demo upstream directly (the physical limit),
# `certgate serve`, and nginx set up for the same job (benches/load/), on loopback, interleaved
# round by round; writes benches/RESULTS.md. Settings: LOAD_ROUNDS, LOAD_SECONDS, LOAD_CONNECTIONS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

rounds=${LOAD_ROUNDS:-5}
seconds=${LOAD_SECONDS:-3}
connections=${LOAD_CONNECTIONS:-32}

ensure_packages nginx curl python3
if ! command -v oha >/dev/null; then
    echo "== installing oha (cargo install --locked oha)"
    cargo install --locked --quiet oha
fi
echo "== building certgate (release)"
cargo build --release --locked --bins --quiet
certgate=$PWD/target/release/certgate
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
chmod 711 "$work" # nginx workers (nobody, when run as root) reach their temp paths
pids=()
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop_all EXIT

# Servers (the proxy and the upstream) on core 0, the load generator on core 1, when there are two.
if [ "$(nproc)" -ge 2 ]; then
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
    pinning="certgate, nginx and the upstream pinned to core 0 with \`taskset -c 0\`, oha to core 1 with \`taskset -c 1\`"
else
    server_cpu=()
    client_cpu=()
    pinning="nothing pinned (one core)"
fi

https=$(free_port); admin=$(free_port); portal=$(free_port); app=$(free_port); nginx_port=$(free_port)

echo "== deployment in $work/deploy"
deploy=$work/deploy
mkdir -p "$deploy/policies" "$deploy/tls" "$deploy/clients" "$work/nginx-tmp" "$work/out"
"$certgate" ca init --dir "$deploy/ca" >/dev/null
"$certgate" ca issue-server --dir "$deploy/ca" --dns ip.bench.test --dns cert.bench.test \
    --out "$deploy/tls/server" >/dev/null
"$certgate" ca issue-client --dir "$deploy/ca" --org cert --user bench@cert.test \
    --device bench-laptop --lifetime 2h --out "$deploy/clients/bench" >/dev/null
cat "$deploy/ca/root.pem" "$deploy/ca/issuing.pem" >"$work/client-ca.pem"

# Two organisations: "ip" allow-lists the client's address 127.0.0.1, "cert" does not, so a
# request to cert.bench.test is admitted only by its client certificate (or sent to sign in).
policy() {
    cat <<POLICY
id = "$1"
name = "Bench $1"
hosts = ["$1.bench.test"]
upstreams = ["http://127.0.0.1:$app"]
default_language = "en"

[access]
allow_ips = ["$2"]
allow_ips_files = []
public_paths = []
browser_credentials = true
POLICY
}
policy ip 127.0.0.1/32 >"$deploy/policies/ip.toml"
policy cert 192.0.2.0/24 >"$deploy/policies/cert.toml"
cat >"$deploy/certgate.toml" <<CONFIG
[server]
https_listen = "127.0.0.1:$https"
admin_listen = "127.0.0.1:$admin"
admin_socket = "data/admin.sock"
shutdown_grace = "1s"
access_log = "off"

[[server.certificates]]
hosts = ["ip.bench.test", "cert.bench.test"]
cert = "tls/server.pem"
key = "tls/server.key"

[policies]
dir = "policies"

[data]
dir = "data"

[ca]
dir = "ca"

[portal]
listen = "127.0.0.1:$portal"
CONFIG
sed -e "s|@WORK@|$work|g" -e "s|@DEPLOY@|$deploy|g" -e "s|@PORT@|$nginx_port|g" \
    -e "s|@UPSTREAM@|127.0.0.1:$app|g" benches/load/nginx.conf.template >"$work/nginx.conf"
cp benches/load/nginx-decide.conf "$work/nginx-decide.conf"

echo "== starting the upstream, certgate and nginx"
"${server_cpu[@]}" "$certgate" demo-upstream --listen "127.0.0.1:$app" >"$work/app.log" 2>&1 &
pids+=($!)
"${server_cpu[@]}" "$certgate" serve --config "$deploy/certgate.toml" >"$work/certgate.log" 2>&1 &
pids+=($!)
"${server_cpu[@]}" "$nginx_bin" -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
pids+=($!)

ready() { curl -s -o /dev/null "$@"; }
for _ in $(seq 1 150); do
    if ready "http://127.0.0.1:$app/" && ready "http://127.0.0.1:$admin/readyz" -f \
        && ready -k "https://127.0.0.1:$nginx_port/"; then
        break
    fi
    sleep 0.1
done
ready "http://127.0.0.1:$admin/readyz" -f || { cat "$work/certgate.log"; echo "certgate did not start" >&2; exit 1; }
ready -k "https://127.0.0.1:$nginx_port/" || { cat "$work/nginx-error.log"; echo "nginx did not start" >&2; exit 1; }

# Targets and scenarios. A scenario is "name|host|expected status|X-Certgate-Auth|oha args".
declare -A target_port=([certgate]=$https [nginx]=$nginx_port)
client=("--cert" "$deploy/clients/bench.pem" "--key" "$deploy/clients/bench.key")
scenario_ids=(1 2 5)
declare -A scenario_host=([1]=ip.bench.test [2]=cert.bench.test [5]=cert.bench.test)
declare -A scenario_code=([1]=200 [2]=200 [5]=302)
declare -A scenario_auth=([1]=ip [2]=certificate [5]=)

curl_args() { # scenario target → curl arguments
    local s=$1 t=$2 host=${scenario_host[$1]} port=${target_port[$2]}
    printf '%s\n' --cacert "$deploy/ca/root.pem" --resolve "$host:$port:127.0.0.1" --tlsv1.3
    [ "$s" != 2 ] || printf '%s\n' "${client[@]}"
    [ "$s" != 5 ] || printf '%s\n' -H "Accept: text/html"
    printf '%s\n' "https://$host:$port/bench"
}

echo "== checking every target answers every scenario as certgate would"
for s in "${scenario_ids[@]}"; do
    for t in certgate nginx; do
        mapfile -t args < <(curl_args "$s" "$t")
        body=$(curl -sS -o - -w '\n%{http_code}' "${args[@]}")
        code=${body##*$'\n'}
        if [ "$code" != "${scenario_code[$s]}" ]; then
            echo "scenario $s on $t: status $code, expected ${scenario_code[$s]}" >&2
            exit 1
        fi
        want=${scenario_auth[$s]}
        if [ -n "$want" ] && ! grep -q "\"x-certgate-auth\":\[\"$want\"\]" <<<"$body"; then
            echo "scenario $s on $t: the upstream did not see X-Certgate-Auth: $want:" >&2
            echo "$body" >&2
            exit 1
        fi
    done
done

# One oha run; fails unless every response has the expected status.
oha_run() { # scenario target round
    local s=$1 t=$2 r=$3 out="$work/out/s$1-$2-r$3.json" args=()
    if [ "$t" = upstream ]; then
        args=("http://127.0.0.1:$app/bench")
    else
        local host=${scenario_host[$s]} port=${target_port[$t]}
        args=(--cacert "$deploy/ca/root.pem" --connect-to "$host:$port:127.0.0.1:$port"
            "https://$host:$port/bench")
        [ "$s" != 2 ] || args=("${client[@]}" "${args[@]}")
        [ "$s" != 5 ] || args=(-H "Accept: text/html" "${args[@]}")
    fi
    "${client_cpu[@]}" oha --no-tui --output-format json --redirect 0 -z "${seconds}s" \
        -c "$connections" "${args[@]}" >"$out"
    python3 benches/load/report.py check "$out" "${scenario_code[$s]}"
}

echo "== warming up"
for s in "${scenario_ids[@]}"; do
    for t in certgate nginx; do
        seconds=1 oha_run "$s" "$t" warmup >/dev/null
    done
done

echo "== $rounds rounds of ${seconds} s per run, $connections connections"
for r in $(seq 1 "$rounds"); do
    for s in "${scenario_ids[@]}"; do
        targets=(certgate nginx)
        [ "$s" = 5 ] || targets=(upstream certgate nginx)
        for t in "${targets[@]}"; do
            printf 'round %s scenario %s %-9s ' "$r" "$s" "$t"
            oha_run "$s" "$t" "$r"
        done
    done
done

python3 benches/load/report.py write "$work/out" benches/RESULTS.md \
    --rounds "$rounds" --seconds "$seconds" --connections "$connections" --pinning "$pinning" \
    --nginx "$("$nginx_bin" -v 2>&1)" --oha "$(oha --version)" \
    --certgate "$("$certgate" --version 2>/dev/null || echo certgate) ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))" \
    --rustc "$(rustc --version)" --openssl "$(openssl version 2>/dev/null || echo unknown)"
echo "== wrote benches/RESULTS.md"
