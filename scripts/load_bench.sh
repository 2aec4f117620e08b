#!/usr/bin/env bash
# The load benchmark of `make bench`: oha against the demo upstream directly (the physical limit),
# `certgate serve`, and nginx set up for the same job (benches/load/), on loopback, interleaved
# round by round; writes benches/RESULTS.md. Settings: LOAD_ROUNDS, LOAD_SECONDS, LOAD_CONNECTIONS,
# LOAD_IDLE_CONNECTIONS; LOAD_SCENARIOS, which scenarios (default "1 2 3 4 5 6 7 8");
# LOAD_INSTRUCTION_SCENARIOS, those counted under callgrind (default "1 2 3 5"), and
# LOAD_PROFILE_DIR, where to keep their callgrind dumps for callgrind_annotate; LOAD_MICRO,
# the micro-benchmarks' section for the report (scripts/bench.sh); LOAD_BIN_DIR runs the certgate
# and bench-client binaries found there instead of building them (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

rounds=${LOAD_ROUNDS:-5}
seconds=${LOAD_SECONDS:-3}
connections=${LOAD_CONNECTIONS:-32}
idle_connections=${LOAD_IDLE_CONNECTIONS:-1000}
results=benches/RESULTS.md
# LOAD_SMOKE=1 (make test): one short round with the debug build, the report to a scratch file;
# it shows every target still answers every scenario correctly, and measures nothing.
smoke=${LOAD_SMOKE:-}

ensure_packages nginx curl python3 valgrind
if ! command -v oha >/dev/null; then
    echo "== installing oha (cargo install --locked oha)"
    cargo install --locked --quiet oha
fi
if [ -n "${LOAD_BIN_DIR:-}" ]; then
    bin=$(cd "$LOAD_BIN_DIR" && pwd)
    [ -z "$smoke" ] || rounds=1 seconds=1 idle_connections=50
elif [ -n "$smoke" ]; then
    rounds=1 seconds=1 idle_connections=50
    cargo build --locked --bins --quiet
    bin=$PWD/target/debug
else
    echo "== building certgate (release)"
    cargo build --release --locked --bins --quiet
    bin=$PWD/target/release
fi
certgate=$bin/certgate
bench_client=$bin/bench-client
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
ulimit -n 8192 2>/dev/null || true

work=$(mktemp -d)
chmod 711 "$work" # nginx workers (nobody, when run as root) reach their temp paths
[ -z "$smoke" ] || results=$work/RESULTS.md
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
    pinning="certgate, nginx and the upstream pinned to core 0 with \`taskset -c 0\`, the load generators (oha, bench-client) to core 1 with \`taskset -c 1\`"
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
"$certgate" ca issue-server --dir "$deploy/ca" --dns ip.bench.test --dns big.bench.test \
    --dns cert.bench.test --out "$deploy/tls/server" >/dev/null
"$certgate" ca issue-client --dir "$deploy/ca" --org cert --user bench@cert.test \
    --device bench-laptop --lifetime 2h --out "$deploy/clients/bench" >/dev/null
cat "$deploy/ca/root.pem" "$deploy/ca/issuing.pem" >"$work/client-ca.pem"

# Three organisations. "ip" allow-lists the client's address 127.0.0.1 and nothing else; "big"
# allow-lists it among 10 000 other networks (scenario 6); "cert" does not allow-list it, so a
# request to cert.bench.test is admitted only by its client certificate or browser credential.
python3 - "$deploy/policies/big.allowlist" "$work/nginx-big-geo.conf" <<'PY'
import ipaddress, sys
nets = [ipaddress.ip_network((0x0a000000 + (i << 8), 24)) for i in range(10_000)]
with open(sys.argv[1], "w") as f:
    f.write("# 10 000 networks that are not the client, and the client\n")
    f.writelines(f"{n}\n" for n in nets)
    f.write("127.0.0.1/32\n")
with open(sys.argv[2], "w") as f:
    f.writelines(f"{n} 1;\n" for n in nets)
    f.write("127.0.0.1/32 1;\n")
PY
policy() { # id allow_ips allow_ips_files
    cat <<POLICY
id = "$1"
name = "Bench $1"
hosts = ["$1.bench.test"]
upstreams = ["http://127.0.0.1:$app"]
default_language = "en"

[access]
allow_ips = [$2]
allow_ips_files = [$3]
public_paths = []
browser_credentials = true
POLICY
}
policy ip '"127.0.0.1/32"' '' >"$deploy/policies/ip.toml"
policy big '' '"big.allowlist"' >"$deploy/policies/big.toml"
policy cert '"192.0.2.0/24"' '' >"$deploy/policies/cert.toml"
cat >"$deploy/certgate.toml" <<CONFIG
[server]
https_listen = "127.0.0.1:$https"
admin_listen = "127.0.0.1:$admin"
admin_socket = "data/admin.sock"
shutdown_grace = "1s"
access_log = "off"
# Every benchmark client connects from this one address.
max_connections_per_client = 100000

[[server.certificates]]
hosts = ["ip.bench.test", "big.bench.test", "cert.bench.test"]
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
certgate_pid=$!
pids+=($!)
"${server_cpu[@]}" "$nginx_bin" -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf" &
nginx_pid=$!
pids+=($!)

ready() { curl -s -o /dev/null "$@"; }
for _ in $(seq 1 300); do
    if ready "http://127.0.0.1:$app/" && ready "http://127.0.0.1:$admin/readyz" -f \
        && ready -k "https://127.0.0.1:$nginx_port/"; then
        break
    fi
    sleep 0.1
done
ready "http://127.0.0.1:$admin/readyz" -f || { cat "$work/certgate.log"; echo "certgate did not start" >&2; exit 1; }
ready -k "https://127.0.0.1:$nginx_port/" || { cat "$work/nginx-error.log"; echo "nginx did not start" >&2; exit 1; }

# A browser credential for organisation "cert", signed with the key certgate just created, as
# the portal would issue it after a sign-in.
token=$("$bench_client" credential --key "$deploy/data/credential.key" --org cert)
cookie="Cookie: theme=dark; __Host-certgate-device=$token"

# Scenarios: the host, the expected status, what the upstream must see in X-Certgate-Auth, and
# which targets run it (the upstream directly only where a proxy calls it over HTTP/1.1).
read -r -a scenario_ids <<<"${LOAD_SCENARIOS:-1 2 3 4 5 6 7 8}"
declare -A scenario_host=([1]=ip.bench.test [2]=cert.bench.test [3]=cert.bench.test
    [4]=cert.bench.test [5]=cert.bench.test [6]=big.bench.test [7]=cert.bench.test [8]=ip.bench.test)
declare -A scenario_code=([1]=200 [2]=200 [3]=200 [4]=200 [5]=302 [6]=200 [7]=200 [8]=200)
declare -A scenario_auth=([1]=ip [2]=certificate [3]=browser [4]=certificate [5]= [6]=ip
    [7]=certificate [8]=ip)
declare -A scenario_targets=([1]="upstream certgate nginx" [2]="upstream certgate nginx"
    [3]="upstream certgate nginx" [4]="certgate nginx" [5]="certgate nginx" [6]="certgate nginx"
    [7]="certgate nginx" [8]="upstream certgate nginx")
declare -A target_port=([certgate]=$https [nginx]=$nginx_port)
client=("--cert" "$deploy/clients/bench.pem" "--key" "$deploy/clients/bench.key")
with_certificate() { [ "$1" = 2 ] || [ "$1" = 4 ] || [ "$1" = 7 ]; }

# What a scenario's request carries, in the options curl and oha share: the client certificate,
# the cookie (neither to the upstream directly) and the browser's Accept.
request_args() { # scenario target
    if with_certificate "$1" && [ "$2" != upstream ]; then printf '%s\n' "${client[@]}"; fi
    [ "$1" != 3 ] || [ "$2" = upstream ] || printf '%s\n' -H "$cookie"
    [ "$1" != 5 ] || printf '%s\n' -H "Accept: text/html"
}

curl_args() { # scenario target → curl arguments
    local s=$1 t=$2 host=${scenario_host[$1]} port=${target_port[$2]}
    printf '%s\n' --cacert "$deploy/ca/root.pem" --resolve "$host:$port:127.0.0.1" --tlsv1.3
    request_args "$s" "$t"
    [ "$s" != 7 ] || printf '%s\n' --http2
    printf '%s\n' "https://$host:$port/bench"
}

echo "== checking every target answers every scenario as certgate would"
for s in "${scenario_ids[@]}"; do
    for t in certgate nginx; do
        mapfile -t args < <(curl_args "$s" "$t")
        body=$(curl -sS -o - -w '\n%{http_code} %{http_version}' "${args[@]}")
        read -r code version <<<"${body##*$'\n'}"
        if [ "$code" != "${scenario_code[$s]}" ]; then
            echo "scenario $s on $t: status $code, expected ${scenario_code[$s]}" >&2
            exit 1
        fi
        if [ "$s" = 7 ] && [ "$version" != 2 ]; then
            echo "scenario 7 on $t: HTTP/$version, expected HTTP/2" >&2
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

# oha's options and URL for a scenario's request to a target.
oha_args() { # scenario target
    local s=$1 t=$2 host=${scenario_host[$1]} port=${target_port[$2]:-}
    request_args "$s" "$t"
    if [ "$t" = upstream ]; then
        printf '%s\n' "http://127.0.0.1:$app/bench"
    else
        printf '%s\n' --cacert "$deploy/ca/root.pem" --connect-to "$host:$port:127.0.0.1:$port" \
            "https://$host:$port/bench"
    fi
}

rate=0 # scenario 8's fixed request rate, set after the warm-up
# One run of the load generator; fails unless every response has the expected status.
load_run() { # scenario target round
    local s=$1 t=$2 r=$3 out="$work/out/s$1-$2-r$3.json" args=()
    local host=${scenario_host[$s]} port=${target_port[$t]:-}
    if [ "$s" = 4 ]; then
        "${client_cpu[@]}" "$bench_client" handshakes --connect "127.0.0.1:$port" --host "$host" \
            "${client[@]}" --concurrency 16 --seconds "$seconds" >"$out"
        python3 benches/load/report.py check "$out" "${scenario_code[$s]}"
        return
    fi
    mapfile -t args < <(oha_args "$s" "$t")
    local shape=(-c "$connections")
    [ "$s" != 7 ] || shape=(--http2 -c 8 -p 16)
    # Scenario 8 keeps every request's times: its latencies count from the scheduled start and
    # leave out the first half second, while the connections (32 full handshakes) are set up.
    [ "$s" != 8 ] || shape=(-c "$connections" -q "$rate" --latency-correction
        --db-url "${out%.json}.db")
    "${client_cpu[@]}" oha --no-tui --output-format json --redirect 0 -z "${seconds}s" \
        "${shape[@]}" "${args[@]}" >"$out" 2> >(grep -v '^Storing results' >&2)
    [ "$s" != 8 ] || python3 benches/load/report.py steady "${out%.json}.db" "$out" 0.5
    python3 benches/load/report.py check "$out" "${scenario_code[$s]}"
}

echo "== warming up (1 s per scenario and proxy)"
# Scenario 1's warm-up also sets scenario 8's rate.
for s in $(printf '%s\n' 1 "${scenario_ids[@]}" | grep -vx 8 | sort -un); do
    for t in certgate nginx; do
        seconds=1 load_run "$s" "$t" warmup >/dev/null
    done
done
# Scenario 8 runs at 60 % of the slower proxy's warm-up rate in scenario 1.
rate=$(python3 benches/load/report.py rate "$work/out/s1-certgate-rwarmup.json" \
    "$work/out/s1-nginx-rwarmup.json")
rm -f "$work"/out/*-rwarmup.json
echo "scenario 8 at $rate requests per second"

echo "== $rounds rounds of ${seconds} s per run"
# CPU time the hypervisor gave to others ("steal") during the rounds: on a busy host the figures
# swing from round to round, and the report says so.
cpu_times() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat; }
read -r steal_before total_before < <(cpu_times)
for r in $(seq 1 "$rounds"); do
    for s in "${scenario_ids[@]}"; do
        for t in ${scenario_targets[$s]}; do
            printf 'round %s scenario %s %-9s ' "$r" "$s" "$t"
            load_run "$s" "$t" "$r"
        done
    done
done

read -r steal_after total_after < <(cpu_times)
steal=$(awk -v s=$((steal_after - steal_before)) -v t=$((total_after - total_before)) \
    'BEGIN { printf "%.1f", (t > 0 ? 100 * s / t : 0) }')
echo "CPU time stolen by the hypervisor during the rounds: $steal %"

echo "== resident memory with $idle_connections idle keep-alive connections"
rss_kib() { # pids → summed VmRSS in KiB
    local total=0 pid
    for pid in "$@"; do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")))
    done
    echo "$total"
}
nginx_pids=("$nginx_pid" $(pgrep -P "$nginx_pid"))
memory=()
for t in certgate nginx; do
    if [ "$t" = certgate ]; then p=("$certgate_pid"); else p=("${nginx_pids[@]}"); fi
    before=$(rss_kib "${p[@]}")
    # bench-client holds its connections until its stdin, a FIFO held open here, closes.
    rm -f "$work/hold" && mkfifo "$work/hold"
    "${client_cpu[@]}" "$bench_client" idle --connect "127.0.0.1:${target_port[$t]}" \
        --host ip.bench.test --connections "$idle_connections" <"$work/hold" >"$work/idle-$t.log" 2>&1 &
    idle_pid=$!
    exec 9>"$work/hold"
    for _ in $(seq 1 600); do
        grep -q "idle" "$work/idle-$t.log" && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q "connections open and idle" "$work/idle-$t.log" || { cat "$work/idle-$t.log" >&2; exit 1; }
    sleep 1
    with=$(rss_kib "${p[@]}")
    exec 9>&-
    wait "$idle_pid" || true
    echo "$t: $before KiB before, $with KiB with $idle_connections idle connections"
    memory+=("--memory" "$t:$before:$with")
done

echo "== instructions per request under callgrind"
# certgate and nginx again, each under valgrind, counted over n1 and then n2 requests on the same
# two connections; the difference is what a request costs, without the handshakes.
if [ -n "$smoke" ]; then
    instruction_scenarios=(1) warm=10 n1=20 n2=60
else
    read -r -a instruction_scenarios <<<"${LOAD_INSTRUCTION_SCENARIOS:-1 2 3 5}"
    warm=500 n1=1000 n2=5000
fi
mkdir -p "$work/cg"
counted_run() { # scenario target requests → fails unless every response has the expected status
    local args=()
    mapfile -t args < <(oha_args "$1" "$2")
    "${client_cpu[@]}" oha --no-tui --output-format json --redirect 0 -n "$3" -c 2 "${args[@]}" \
        >"$work/cg/run.json"
    python3 benches/load/report.py check "$work/cg/run.json" "${scenario_code[$1]}" >/dev/null
}
kill "$certgate_pid" "$nginx_pid" && wait "$certgate_pid" "$nginx_pid" 2>/dev/null || true
profiles=()
for t in certgate nginx; do
    if [ "$t" = certgate ]; then
        server=("$certgate" serve --config "$deploy/certgate.toml")
        up=("http://127.0.0.1:$admin/readyz" -f)
    else
        server=("$nginx_bin" -p "$work" -e "$work/nginx-error.log" -c "$work/nginx.conf"
            -g "master_process off;")
        up=(-k "https://127.0.0.1:$nginx_port/")
    fi
    # glibc copies large blocks with `rep movsb`, which valgrind counts as one instruction per
    # byte though the CPU moves tens of bytes a cycle; vector copies count what they cost.
    GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=$((1 << 40)):glibc.cpu.x86_rep_stosb_threshold=$((1 << 40)) \
        "${server_cpu[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg/$t.%p" \
        "${server[@]}" >"$work/cg/$t.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1 600); do ready "${up[@]}" && break; sleep 0.2; done
    ready "${up[@]}" || { cat "$work/cg/$t.log" >&2; echo "$t did not start under valgrind" >&2; exit 1; }
    dumps=0
    for s in "${instruction_scenarios[@]}"; do
        counted_run "$s" "$t" "$warm"
        for n in "$n1" "$n2"; do
            callgrind_control -z "$pid" >/dev/null
            counted_run "$s" "$t" "$n"
            callgrind_control -d "$pid" >/dev/null
            dumps=$((dumps + 1))
            [ -s "$work/cg/$t.$pid.$dumps" ] || { echo "callgrind wrote no dump for $t" >&2; exit 1; }
        done
        profiles+=("$t:$s:$n1:$work/cg/$t.$pid.$((dumps - 1)):$n2:$work/cg/$t.$pid.$dumps")
        echo "$t scenario $s counted"
    done
    kill "$pid" && wait "$pid" 2>/dev/null || true
done
python3 benches/load/callgrind.py section "$work/instructions.md" "${profiles[@]}"
if [ -n "${LOAD_PROFILE_DIR:-}" ]; then # for callgrind_annotate: where the instructions go
    mkdir -p "$LOAD_PROFILE_DIR" && cp "$work"/cg/certgate.* "$work"/cg/nginx.* "$LOAD_PROFILE_DIR"/
fi
cat "$work/instructions.md"

python3 benches/load/report.py write "$work/out" "$results" \
    --rounds "$rounds" --seconds "$seconds" --connections "$connections" --pinning "$pinning" \
    --rate "$rate" --idle "$idle_connections" --steal "$steal" "${memory[@]}" \
    --instructions "$work/instructions.md" ${LOAD_MICRO:+--micro "$LOAD_MICRO"} \
    --nginx "$("$nginx_bin" -v 2>&1)" --oha "$(oha --version)" \
    --certgate "$("$certgate" --version 2>/dev/null || echo certgate) ($(git describe --always --dirty 2>/dev/null || echo unknown))" \
    --rustc "$(rustc --version)" --openssl "$(openssl version 2>/dev/null || echo unknown)"
if [ -n "$smoke" ]; then
    grep -q "^| 8\. " "$results" || { cat "$results"; echo "the report lacks a scenario" >&2; exit 1; }
    echo "== load harness smoke run: every target answered every scenario correctly"
else
    echo "== wrote $results"
fi
