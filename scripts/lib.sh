# Shared by the Make targets' scripts: package installs and scratch services on free ports.

# Installs the Debian packages whose commands are missing. Package name → command it provides.
ensure_packages() {
    local missing=() pkg cmd
    for pkg in "$@"; do
        case "$pkg" in
            postgresql) cmd=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -n 1) ;;
            redis-server) cmd=$(command -v redis-server || true) ;;
            chromium-driver) cmd=$(command -v chromedriver || true) ;;
            nodejs) cmd=$(command -v node || true) ;;
            prometheus) cmd=$(command -v promtool || true) ;;
            systemd) cmd=$(command -v systemd-analyze || true) ;;
            *) cmd=$(command -v "$pkg" || true) ;;
        esac
        [ -n "$cmd" ] || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "== installing ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Installs the npm packages of the folder DIR exactly as its package-lock.json pins them, when
# they are missing or the lock changed since (npm ci records what it installed in
# node_modules/.package-lock.json).
ensure_npm_packages() {
    local dir=$1
    if [ ! -f "$dir/node_modules/.package-lock.json" ] \
        || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        echo "== installing npm packages in $dir"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    fi
}

ensure_rust_components() {
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# PostgreSQL refuses to run as root, so the scratch cluster belongs to the postgres user.
pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local dir=$1 port=$2 bin
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)")
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    pg_as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    pg_as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres certgate_test
}

stop_postgres() {
    local dir=$1 bin
    [ -d "$dir/data" ] || return 0
    bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -n 1)")
    pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

# A scratch redis-server on a free port: the tests never touch a shared Redis.
start_redis() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis-server did not start" >&2
    return 1
}

stop_redis() {
    local dir=$1
    [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}
