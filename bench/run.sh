#!/usr/bin/env bash
# Load benchmark of osir-gateway against its peers (nginx, HAProxy, a Kong-like
# nginx+Lua+Redis), on loopback, from one command:
#
#   bash bench/run.sh [--quick|--full] [--scenarios LIST] [options]
#
# See bench/README.md for the method. Everything it starts it stops by pid.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
LIB=$BENCH_DIR/lib
# BENCH_GW_BIN: measure another osir-gateway binary (then pass --no-build)
GW_BIN=${BENCH_GW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/osir-gateway}
FLOOR_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/floor

# ---------------------------------------------------------------- settings --

MODE=quick
SCENARIO_LIST=""
DO_INSTALL=1
DO_BUILD=1
OPEN_LOOP=auto

# All ports are on 127.0.0.1, in 18080-18199.
PORT_PROXY=18080          # nginx proxy_pass (the reference)
PORT_UPSTREAM=18081       # nginx "return 200 ok" (the upstream, and "direct")
PORT_KEYMAP=18082         # nginx with a static key map
PORT_HAPROXY=18083        # HAProxy
PORT_KONG_CACHED=18084    # Kong-like, LRU + shared dict, Redis on miss
PORT_KONG_REDIS=18085     # Kong-like, Redis on every request
PORT_PROXY_TLS=18086      # nginx proxy_pass, TLS listener (scenario group tls)
PORT_PROXY_H2=18087       # nginx proxy_pass, TLS listener with HTTP/2 (scenario h2-tls)
PORT_GW_STORE=18090       # redis-server for osir-gateway
PORT_KONG_STORE=18091     # redis-server for the Kong-like peer
PORT_FLOOR=18092          # the floor: a bare tokio + httparse proxy (bench/floor.rs)
PORT_GW1=18100            # osir-gateway, workers = 1        (admin: +1)
PORT_GWD=18102            # osir-gateway, default workers    (admin: +1)
PORT_GWS=18104            # osir-gateway, workers = 1, small cache (admin: +1)
PORT_GWL=18106            # osir-gateway, workers = 1, access log to a file (admin: +1)
PORT_GWT=18108            # osir-gateway, workers = 1, with [server.tls]: plain listener (admin: +1)
PORT_GWT_TLS=18110        #   ... and its TLS listener
PORT_GWF=18112            # osir-gateway flood instances, one per variant: 18112, 18114, 18116 (admin: +1)

SERVER_CPU=${BENCH_SERVER_CPU:-0}      # every server (and Redis) is pinned here
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}    # wrk / oha are pinned here
GWD_CPUS=${BENCH_GW_DEFAULT_CPUS:-$SERVER_CPU}   # CPUs for the default-workers gateway
WRK_THREADS=2
WRK_CONNS=50
# h2-tls: h2load -t1 -c4 -m10 (4 connections x 10 concurrent streams), ALPN h2
H2_THREADS=1
H2_CONNS=4
H2_STREAMS=10
OPEN_RATE=${BENCH_OPEN_RATE:-5000}
OPEN_SHARE=${BENCH_OPEN_SHARE:-40}   # second open-loop rate: % of the nginx proxy's max (0: off)
OPEN_SECONDS=${BENCH_OPEN_SECONDS:-10}
ZIPF_S=${BENCH_ZIPF_S:-1.0}
CACHE_SMALL=${BENCH_CACHE_SMALL:-1000}
# flood scenario (run_flood): valid keys, invented keys, cache capacity, the
# budget of the budgeted variant, the key set of the repeating variant
FLOOD=0
FLOOD_CACHE=${BENCH_FLOOD_CACHE:-2000}
FLOOD_BUDGET=${BENCH_FLOOD_BUDGET:-30}
FLOOD_REPEAT=${BENCH_FLOOD_REPEAT:-1000}
FLOOD_NO_BUDGET=1000000   # the largest budget the config accepts (auth.failed_lookup_budget), far above the flood's requests per window

CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

usage() {
  cat <<'EOF'
usage: bash bench/run.sh [--quick|--full] [--scenarios LIST] [options]

  --quick            1 repetition of 5 s: direct, nginx proxy, osir-gateway public
                     and cache-hit (the default)
  --full             5 repetitions of 10 s: every peer and scenario, then the
                     flood, then the open-loop latency runs (oha)
  --scenarios LIST   comma-separated; each item is a scenario (public, cache-hit,
                     query-key, reject-401, reject-403, population, store-path,
                     flood: valid keys under a flood of random well-formed keys),
                     a scenario group (access-log: osir-w1 cache-hit with the
                     access log to a file vs off; tls: nginx proxy and osir-w1
                     public and cache-hit over https vs plain; h2-tls: h2load
                     -c4 -m10 over TLS with HTTP/2 to an nginx http2 peer and
                     to osir-w1's TLS listener, cache-hit), a target
                     (direct, nginx-proxy, nginx-keymap, haproxy, tokio-floor:
                     the bare tokio proxy of bench/floor.rs, kong-cached,
                     kong-redis, osir-w1, osir-default, osir-small), a
                     target/scenario pair (e.g. osir-w1/cache-hit+tls), or "all".
                     direct and nginx-proxy/plain are always measured: the
                     ratios need them; a group brings its plain baselines along,
                     and so do the jobs the Goals compare (reject-401/403:
                     osir-w1/cache-hit; store-path: kong-redis; osir-w1/h2-tls:
                     nginx-proxy/h2-tls). --quick skips h2-tls unless named.
  --open-loop        run the open-loop latency runs even in --quick
  --no-open-loop     skip them even in --full
  --no-install       do not apt-get / cargo install anything
  --no-build         do not run cargo build --release (use the binaries as they are;
                     the floor is still built if it is missing)
  -h, --help         this text

Environment overrides: BENCH_GW_BIN, BENCH_REPS, BENCH_SECONDS, BENCH_POP_KEYS,
BENCH_STORE_KEYS, BENCH_CACHE_SMALL, BENCH_ZIPF_S, BENCH_OPEN_RATE, BENCH_OPEN_SHARE,
BENCH_OPEN_SECONDS, BENCH_OPEN_REPS, BENCH_SERVER_CPU, BENCH_LOADGEN_CPU,
BENCH_GW_DEFAULT_CPUS, BENCH_FLOOD_KEYS, BENCH_FLOOD_RANDOM, BENCH_FLOOD_CACHE,
BENCH_FLOOD_BUDGET, BENCH_FLOOD_REPEAT.
EOF
}

parse_args() {
  while (($#)); do
    case $1 in
      --quick) MODE=quick ;;
      --full) MODE=full ;;
      --scenarios) [[ $# -ge 2 ]] || die "--scenarios needs a list"; SCENARIO_LIST=$2; shift ;;
      --scenarios=*) SCENARIO_LIST=${1#*=} ;;
      --open-loop) OPEN_LOOP=1 ;;
      --no-open-loop) OPEN_LOOP=0 ;;
      --no-install) DO_INSTALL=0 ;;
      --no-build) DO_BUILD=0 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  if [[ $MODE == quick ]]; then
    REPS=${BENCH_REPS:-1}; SECONDS_PER_RUN=${BENCH_SECONDS:-5}; WARMUP_SECONDS=1
    POP_KEYS=${BENCH_POP_KEYS:-100}; STORE_KEYS=${BENCH_STORE_KEYS:-2000}
    FLOOD_KEYS=${BENCH_FLOOD_KEYS:-500}
    OPEN_REPS=${BENCH_OPEN_REPS:-1}
    [[ $OPEN_LOOP == auto ]] && OPEN_LOOP=0
  else
    REPS=${BENCH_REPS:-5}; SECONDS_PER_RUN=${BENCH_SECONDS:-10}; WARMUP_SECONDS=2
    POP_KEYS=${BENCH_POP_KEYS:-100000}; STORE_KEYS=${BENCH_STORE_KEYS:-20000}
    FLOOD_KEYS=${BENCH_FLOOD_KEYS:-1000}
    OPEN_REPS=${BENCH_OPEN_REPS:-3}
    [[ $OPEN_LOOP == auto ]] && OPEN_LOOP=1
  fi
  # enough random keys that no flood key is sent twice below 100k req/s
  # (the flood lasts SECONDS_PER_RUN + 3 s)
  FLOOD_RANDOM=${BENCH_FLOOD_RANDOM:-$((100000 * (SECONDS_PER_RUN + 3)))}
  return 0
}

# ----------------------------------------------------------------- logging --

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# A note goes to the console and into the report ("Notes" section).
note() { log "NOTE: $*"; [[ -n ${RUN:-} ]] && printf '%s\n' "$*" >>"$RUN/notes.txt"; return 0; }
fail_note() { log "FAILED: $*"; printf '%s\n' "$*" >>"$RUN/failures.txt"; }

# --------------------------------------------------------------- processes --

CHILD_PIDS=()    # started by this shell (wait-able)
DAEMON_PIDS=()   # daemonised (nginx masters and workers, HAProxy): poll

alive() {
  local state
  [[ -r /proc/$1/stat ]] || return 1
  state=$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

stop_pid() {  # stop_pid PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid did not stop on TERM; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  if ((${#CHILD_PIDS[@]} + ${#DAEMON_PIDS[@]})); then
    log "stopping ${#CHILD_PIDS[@]} child and ${#DAEMON_PIDS[@]} daemon processes"
  fi
  for pid in "${DAEMON_PIDS[@]}" "${CHILD_PIDS[@]}"; do stop_pid "$pid"; done
  for pid in "${CHILD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n ${RUN:-} ]] && log "run folder (configs, logs, raw data): $RUN"
  exit "$rc"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # wait_port PORT SECONDS [PID]: until something listens on PORT
  local port=$1 tries=$(($2 * 10)) pid=${3:-}
  while ((tries-- > 0)); do
    port_open "$port" && return 0
    if [[ -n $pid ]] && ! alive "$pid"; then return 1; fi
    sleep 0.1
  done
  return 1
}

check_ports_free() {
  local p busy=()
  for p in $PORT_PROXY $PORT_UPSTREAM $PORT_KEYMAP $PORT_HAPROXY $PORT_KONG_CACHED \
           $PORT_KONG_REDIS $PORT_PROXY_TLS $PORT_PROXY_H2 $PORT_GW_STORE $PORT_KONG_STORE $PORT_FLOOR \
           $PORT_GW1 $((PORT_GW1 + 1)) $PORT_GWD $((PORT_GWD + 1)) $PORT_GWS $((PORT_GWS + 1)) \
           $PORT_GWL $((PORT_GWL + 1)) $PORT_GWT $((PORT_GWT + 1)) $PORT_GWT_TLS \
           $(seq "$PORT_GWF" $((PORT_GWF + 5))); do
    port_open "$p" && busy+=("$p")
  done
  ((${#busy[@]} == 0)) || die "ports already in use on 127.0.0.1: ${busy[*]} (a previous run still going?)"
}

# ----------------------------------------------------------------- install --

apt_updated=0
apt_update_once() {
  ((apt_updated)) && return 0
  log "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$RUN/logs/apt-update.log" 2>&1 \
    || die "apt-get update failed (see $RUN/logs/apt-update.log)"
  apt_updated=1
}

apt_available() { apt-cache show "$1" >/dev/null 2>&1; }

apt_install() {  # apt_install PKG...: without starting the packages' own services
  local made_policy=0 rc=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >>"$RUN/logs/apt-install.log" 2>&1 || rc=$?
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  return "$rc"
}

LUA_MODULE=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MODULE=/usr/lib/nginx/modules/ndk_http_module.so
LRUCACHE=/usr/share/lua/5.1/resty/lrucache.lua
have_lua() { [[ -e $LUA_MODULE && -e $NDK_MODULE && -e $LRUCACHE ]]; }

ensure_packages() {
  local missing=() nginx_pkg
  command -v nginx >/dev/null || missing+=(nginx)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v sha256sum >/dev/null || missing+=(coreutils)
  have_lua || missing+=(lua)
  if ((${#missing[@]} == 0)); then
    log "all tools present"
    return 0
  fi
  if ((!DO_INSTALL)); then
    have_lua || note "Kong-like peer skipped: libnginx-mod-http-lua is not installed (and --no-install)."
    local m
    for m in "${missing[@]}"; do [[ $m == lua ]] || die "missing $m and --no-install given"; done
    return 0
  fi
  log "missing: ${missing[*]}"
  apt_update_once
  local pkgs=() m
  for m in "${missing[@]}"; do
    case $m in
      nginx) if apt_available nginx-light; then nginx_pkg=nginx-light; else nginx_pkg=nginx; fi
             pkgs+=("$nginx_pkg") ;;
      lua) ;;  # below, separately: its absence must not fail the run
      *) pkgs+=("$m") ;;
    esac
  done
  if ((${#pkgs[@]})); then
    apt_install "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed (see $RUN/logs/apt-install.log)"
  fi
  if ! have_lua; then
    if apt_available libnginx-mod-http-lua; then
      local lua_pkgs=(libnginx-mod-http-lua)
      apt_available lua-resty-lrucache && lua_pkgs+=(lua-resty-lrucache)
      apt_available lua-resty-core && lua_pkgs+=(lua-resty-core)
      apt_install "${lua_pkgs[@]}" \
        || note "Kong-like peer skipped: apt-get install ${lua_pkgs[*]} failed (see $RUN/logs/apt-install.log)."
    else
      note "Kong-like peer skipped: the package libnginx-mod-http-lua is not available from apt on this machine."
    fi
  fi
}

OHA=""
ensure_oha() {
  if command -v oha >/dev/null; then OHA=$(command -v oha); return 0; fi
  if [[ -x $HOME/.cargo/bin/oha ]]; then OHA=$HOME/.cargo/bin/oha; return 0; fi
  if ((!DO_INSTALL)); then
    note "Open-loop figures skipped: oha is not installed (and --no-install)."
    return 1
  fi
  if ! command -v cargo >/dev/null; then
    note "Open-loop figures skipped: oha is not installed and there is no cargo to install it."
    return 1
  fi
  log "cargo install oha --locked (a few minutes; log: $RUN/logs/oha-install.log)"
  if cargo install oha --locked >"$RUN/logs/oha-install.log" 2>&1; then
    OHA=$HOME/.cargo/bin/oha
    command -v oha >/dev/null && OHA=$(command -v oha)
    return 0
  fi
  note "Open-loop figures skipped: cargo install oha --locked failed (log kept in the run folder: logs/oha-install.log)."
  return 1
}

# ------------------------------------------------------------------- build --

GW_STATE=absent   # absent | built
build_gateway() {
  if ((DO_BUILD)); then
    if ! command -v cargo >/dev/null; then
      note "osir-gateway skipped: cargo is not installed, the release binary cannot be built."
      return 0
    fi
    log "cargo build --release (log: $RUN/logs/cargo-build.log)"
    if ! (cd "$ROOT" && cargo build --release) >"$RUN/logs/cargo-build.log" 2>&1; then
      note "osir-gateway skipped: cargo build --release failed ($(grep -m1 '^error' "$RUN/logs/cargo-build.log" || echo 'see logs/cargo-build.log'))."
      return 0
    fi
  fi
  if [[ ! -x $GW_BIN ]]; then
    note "osir-gateway skipped: no binary at ${GW_BIN#"$ROOT"/}."
    return 0
  fi
  GW_STATE=built
}

# The floor (bench/floor.rs) is built like the gateway, as a cargo example,
# and also under --no-build when it is missing: it is the yardstick, not the
# binary measured, and a full run without it loses a row.
build_floor() {
  if { ((DO_BUILD)) || [[ ! -x $FLOOR_BIN ]]; } && command -v cargo >/dev/null; then
    log "cargo build --release --example floor (log: $RUN/logs/cargo-build-floor.log)"
    (cd "$ROOT" && cargo build --release --example floor) >"$RUN/logs/cargo-build-floor.log" 2>&1 \
      || note "the floor: cargo build --release --example floor failed (see logs/cargo-build-floor.log in the run folder)."
  fi
  [[ -x $FLOOR_BIN ]] && return 0
  note "tokio-floor skipped: no binary at ${FLOOR_BIN#"$ROOT"/} (and no cargo to build it, or its build failed)."
  drop_target_jobs tokio-floor "not built"
}

start_floor() {
  local pid
  # setsid: its own session, as every daemonizing peer has (see start_nginx)
  setsid taskset -c "$SERVER_CPU" "$FLOOR_BIN" "127.0.0.1:$PORT_FLOOR" "127.0.0.1:$PORT_UPSTREAM" \
    >"$RUN/logs/floor.log" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  if ! wait_port "$PORT_FLOOR" 10 "$pid"; then
    note "tokio-floor skipped: it did not start listening ($(tail -n 1 "$RUN/logs/floor.log"))."
    stop_pid "$pid"
    drop_target_jobs tokio-floor "did not start"
    return 0
  fi
  SERVER_PID[tokio-floor]=$pid
  log "tokio-floor up (pid $pid, port $PORT_FLOOR)"
}

# ------------------------------------------------------------------- peers --

render() {  # render TEMPLATE OUT
  sed -e "s|@DIR@|$RUN|g" \
      -e "s|@PORT_PROXY@|$PORT_PROXY|g" -e "s|@PORT_UPSTREAM@|$PORT_UPSTREAM|g" \
      -e "s|@PORT_KEYMAP@|$PORT_KEYMAP|g" -e "s|@PORT_HAPROXY@|$PORT_HAPROXY|g" \
      -e "s|@PORT_KONG_CACHED@|$PORT_KONG_CACHED|g" -e "s|@PORT_KONG_REDIS@|$PORT_KONG_REDIS|g" \
      -e "s|@PORT_KONG_STORE@|$PORT_KONG_STORE|g" -e "s|@PEER_KEY@|$PEER_KEY|g" \
      -e "s|@PORT_PROXY_TLS@|$PORT_PROXY_TLS|g" -e "s|@PORT_PROXY_H2@|$PORT_PROXY_H2|g" \
      -e "s|@H2_LISTEN@|$H2_LISTEN|g" -e "s|@H2_ON@|$H2_ON|g" \
      "$1" >"$2"
  if grep -q '@[A-Z_]*@' "$2"; then die "unsubstituted placeholder left in $2"; fi
}

read_pidfile() {  # read_pidfile FILE SECONDS
  local tries=$(($2 * 10))
  while ((tries-- > 0)); do
    [[ -s $1 ]] && { tr -dc '0-9' <"$1"; return 0; }
    sleep 0.1
  done
  return 1
}

track_daemon_tree() {  # remember a daemon and its children (nginx workers) by pid
  local p
  for p in $(python3 "$LIB/procstat.py" tree "$1"); do DAEMON_PIDS+=("$p"); done
}

declare -A SERVER_PID=()   # target -> main pid (nginx master, haproxy, gateway)
declare -A SERVER_ADMIN=() # osir-gateway instance -> admin port (its first port + 1)

# Servers that do not daemonize are started in a session of their own, as nginx and
# HAProxy put themselves when they daemonize (setsid). This matters: with
# autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled, on by default
# on Debian), a session's processes share one CPU weight across all CPUs. A
# server left in this script's session shares it with the load generator,
# which keeps the other CPU busy, so the server gets about half the weight of
# the upstream beside it on the server CPU and is preempted by it far more
# often: measured on the gateway, 0.92 against 0.72 involuntary context
# switches per request and 15% less throughput. setsid does not fork here (a
# background job of a script is no group leader), so $! stays the server.
# Used by start_redis and start_gateway.

start_nginx() {  # start_nginx NAME PORT...
  local name=$1 port pid; shift
  render "$BENCH_DIR/peers/$name.conf.tmpl" "$RUN/conf/$name.conf"
  if ! nginx -t -q -p "$RUN" -e "$RUN/logs/$name.error.log" -c "$RUN/conf/$name.conf" \
      >"$RUN/logs/$name.test.log" 2>&1; then
    log "nginx -t failed for $name: $(tail -n 3 "$RUN/logs/$name.test.log")"
    return 1
  fi
  taskset -c "$SERVER_CPU" nginx -p "$RUN" -e "$RUN/logs/$name.error.log" -c "$RUN/conf/$name.conf"
  pid=$(read_pidfile "$RUN/logs/$name.pid" 5) || { log "nginx $name wrote no pid file"; return 1; }
  for port in "$@"; do
    wait_port "$port" 5 "$pid" || { log "nginx $name is not listening on $port"; return 1; }
  done
  sleep 0.2   # let the master fork its worker before recording the tree
  track_daemon_tree "$pid"
  SERVER_PID[$name]=$pid
  log "nginx $name up (master pid $pid, ports $*)"
}

start_haproxy() {
  local pid
  render "$BENCH_DIR/peers/haproxy.cfg.tmpl" "$RUN/conf/haproxy.cfg"
  taskset -c "$SERVER_CPU" haproxy -q -f "$RUN/conf/haproxy.cfg" >"$RUN/logs/haproxy.log" 2>&1 \
    || { log "haproxy failed to start: $(tail -n 3 "$RUN/logs/haproxy.log")"; return 1; }
  pid=$(read_pidfile "$RUN/logs/haproxy.pid" 5) || { log "haproxy wrote no pid file"; return 1; }
  wait_port "$PORT_HAPROXY" 5 "$pid" || { log "haproxy is not listening"; return 1; }
  track_daemon_tree "$pid"
  SERVER_PID[haproxy]=$pid
  log "haproxy up (pid $pid)"
}

start_redis() {  # start_redis NAME PORT -> sets SERVER_PID[NAME]
  local name=$1 port=$2 pid
  mkdir -p "$RUN/$name"
  # setsid: its own session, as every daemonizing peer has (see above start_nginx)
  setsid taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$RUN/$name" --logfile "$RUN/logs/$name.log" --daemonize no &
  pid=$!
  CHILD_PIDS+=("$pid")
  wait_port "$port" 10 "$pid" || die "redis-server $name did not start (see $RUN/logs/$name.log)"
  SERVER_PID[$name]=$pid
  log "redis-server $name up (pid $pid, port $port)"
}

KONG_OK=0
start_kong() {
  if ! have_lua; then
    grep -q 'Kong-like peer skipped' "$RUN/notes.txt" 2>/dev/null \
      || note "Kong-like peer skipped: libnginx-mod-http-lua (or resty.lrucache) is not installed."
    return 0
  fi
  mkdir -p "$RUN/lua"
  render "$BENCH_DIR/peers/keyauth.lua.tmpl" "$RUN/lua/keyauth.lua"
  start_redis kong-store "$PORT_KONG_STORE"
  # keyauth.lua's schema: GET "key:" .. sha256_hex(key) -> "scopes=...;cidrs=..."
  # and its only route needs scope "read"; the client is 127.0.0.1.
  local digest
  digest=$(printf '%s' "$PEER_KEY" | sha256sum | cut -d' ' -f1)
  redis-cli -p "$PORT_KONG_STORE" SET "key:$digest" "scopes=read;cidrs=127.0.0.0/8" >/dev/null
  if start_nginx kongish "$PORT_KONG_CACHED" "$PORT_KONG_REDIS"; then
    SERVER_PID[kong-cached]=${SERVER_PID[kongish]}
    SERVER_PID[kong-redis]=${SERVER_PID[kongish]}
    KONG_OK=1
  else
    note "Kong-like peer skipped: its nginx did not start (see the run folder, logs/kongish.*)."
  fi
}

start_peers() {
  start_nginx upstream "$PORT_UPSTREAM" || die "the upstream nginx did not start"
  SERVER_PID[direct]=${SERVER_PID[upstream]}
  start_nginx proxy "$PORT_PROXY" || die "the nginx proxy did not start"
  SERVER_PID[nginx-proxy]=${SERVER_PID[proxy]}
  if server_wanted proxy-tls; then
    if start_nginx proxy-tls "$PORT_PROXY_TLS"; then
      tls_note proxy-tls "$PORT_PROXY_TLS" "nginx"
    else
      note "nginx TLS peer skipped: its nginx did not start (see logs/proxy-tls.* in the run folder)."
      drop_server_jobs proxy-tls "did not start"
    fi
  fi
  if server_wanted proxy-h2; then
    nginx_h2_syntax
    if start_nginx proxy-h2 "$PORT_PROXY_H2"; then
      tls_note proxy-h2 "$PORT_PROXY_H2" "nginx http2"
    else
      note "nginx HTTP/2 peer skipped: its nginx did not start (see logs/proxy-h2.* in the run folder; nginx -V must list --with-http_v2_module)."
      drop_server_jobs proxy-h2 "did not start"
    fi
  fi
  if target_wanted nginx-keymap; then
    start_nginx keymap "$PORT_KEYMAP" || die "the nginx key-map peer did not start"
    SERVER_PID[nginx-keymap]=${SERVER_PID[keymap]}
  fi
  if target_wanted haproxy; then start_haproxy || die "haproxy did not start"; fi
  if target_wanted kong-cached || target_wanted kong-redis; then start_kong; fi
  if target_wanted tokio-floor; then start_floor; fi
}

# --------------------------------------------------------------------- tls --
#
# Scenario group tls: one self-signed P-256 certificate for 127.0.0.1 and
# localhost, in the run folder, served by the nginx TLS peer and by the
# osir-gateway TLS instance.

TLS_DIR=""
drop_tls_jobs() {  # drop_tls_jobs WHY: both groups that need the certificate
  drop_group_jobs tls "$1"
  drop_group_jobs h2-tls "$1"
}
setup_tls() {
  any_group_job tls || any_group_job h2-tls || return 0
  if ! command -v openssl >/dev/null && ((DO_INSTALL)); then
    apt_update_once
    apt_install openssl || true
  fi
  if ! command -v openssl >/dev/null; then
    note "TLS scenarios skipped: openssl is not installed$( ((DO_INSTALL)) || echo ' (and --no-install)')."
    drop_tls_jobs "no openssl"
    return 0
  fi
  TLS_DIR=$RUN/tls
  mkdir -p "$TLS_DIR"
  if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
      -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >"$RUN/logs/openssl-req.log" 2>&1; then
    note "TLS scenarios skipped: openssl req failed ($(tail -n 1 "$RUN/logs/openssl-req.log"))."
    drop_tls_jobs "no certificate"
    TLS_DIR=""
    return 0
  fi
  printf 'certificate|self-signed, %s, %s\n' \
    "$(openssl x509 -in "$TLS_DIR/cert.pem" -noout -text | grep -m1 -oE 'ASN1 OID: [a-z0-9]+|Public-Key: \([0-9]+ bit\)' | head -n 1)" \
    "$(openssl x509 -in "$TLS_DIR/cert.pem" -noout -ext subjectAltName 2>/dev/null | tail -n 1 | sed 's/^ *//')" \
    >>"$RUN/tls.txt"
  log "self-signed certificate in $TLS_DIR"
}

tls_note() {  # tls_note NAME PORT LABEL: what an OpenSSL client (like wrk's) negotiates
  local out proto verify
  out=$(timeout 5 openssl s_client -connect "127.0.0.1:$2" -servername localhost \
          -CAfile "$TLS_DIR/cert.pem" </dev/null 2>&1) || true
  printf '%s\n' "$out" >"$RUN/logs/s_client.$1.log"
  proto=$(grep -m1 -oE 'New, TLSv[0-9.]+, Cipher is [A-Za-z0-9_-]+' <<<"$out" | sed 's/^New, //') || true
  verify=$(grep -m1 -oE 'Verify return code: .*' <<<"$out") || true
  printf '%s|%s (%s)\n' "$3 on 127.0.0.1:$2" "${proto:-handshake not understood, see logs/s_client.$1.log}" \
    "${verify:-no verify result}" >>"$RUN/tls.txt"
}

# ------------------------------------------------------------------ h2-tls --
#
# Scenario h2-tls: h2load (nghttp2-client) with H2_CONNS connections of
# H2_STREAMS concurrent streams each, HTTP/2 over TLS (ALPN h2), against the
# nginx http2 peer (peers/proxy-h2.conf.tmpl, port PORT_PROXY_H2) and the
# osir-gateway TLS instance (PORT_GWT_TLS), the certificate of setup_tls.

H2LOAD=""
H2_LISTEN=""   # peers/proxy-h2.conf.tmpl: " http2" on the listen line (nginx < 1.25.1)
H2_ON=""       #   ... or "http2 on;" in the server block (nginx >= 1.25.1)

ensure_h2load() {
  any_group_job h2-tls || return 0
  if ! command -v h2load >/dev/null && ((DO_INSTALL)); then
    apt_update_once
    apt_install nghttp2-client || true
  fi
  if ! command -v h2load >/dev/null; then
    note "h2-tls scenario skipped: h2load (Debian package nghttp2-client) is not installed$( ((DO_INSTALL)) || echo ' (and --no-install)')."
    drop_group_jobs h2-tls "no h2load"
    return 0
  fi
  H2LOAD=$(command -v h2load)
}

nginx_h2_syntax() {  # how this nginx turns HTTP/2 on (the directive is 1.25.1+)
  local v
  v=$(nginx -v 2>&1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1)
  # older than 1.25.1: "v, 1.25.1" is in version order (sort -V -C) and v is not 1.25.1
  if [[ -n $v && $v != 1.25.1 ]] && printf '%s\n1.25.1\n' "$v" | sort -V -C; then
    H2_LISTEN=" http2"
    H2_ON="# nginx $v: no \`http2 on;\` (1.25.1+), http2 is a parameter of listen above"
  else
    H2_LISTEN=""
    H2_ON="http2 on;"
  fi
}

# ----------------------------------------------------------------- gateway --

GW_RUN_OK=0    # the gateway serves (public route answers)
GW_KEYS_OK=0   # keys create works
KEY_OK=""      # key with domains:read
KEY_403=""     # key with vps:read only

# write_gateway_config FILE PORT WORKERS(or "") CAPACITY [ACCESS [TLS_PORT]]
# ACCESS is [log] access: "off" (the default here: every scenario but
# cache-hit+accesslog runs without an access log) or a file path.
# GW_CACHE_EXTRA / GW_AUTH_EXTRA (empty unless set for the call): more lines
# for [cache] / [auth], one a line (the flood instances).
GW_CACHE_EXTRA=""
GW_AUTH_EXTRA=""
write_gateway_config() {
  local file=$1 port=$2 workers=$3 capacity=$4 access=${5:-off} tls_port=${6:-}
  {
    echo "# generated by bench/run.sh"
    echo "[server]"
    echo "listen = \"127.0.0.1:$port\""
    [[ -n $workers ]] && echo "workers = $workers"
    echo
    if [[ -n $tls_port ]]; then
      echo "[server.tls]"
      echo "listen = \"127.0.0.1:$tls_port\""
      echo "cert = \"$TLS_DIR/cert.pem\""
      echo "key = \"$TLS_DIR/key.pem\""
      echo
    fi
    echo "[admin]"
    echo "listen = \"127.0.0.1:$((port + 1))\""
    echo
    echo "[store]"
    echo "backend = \"redis\""
    echo "url = \"redis://127.0.0.1:$PORT_GW_STORE/0\""
    echo
    echo "[cache]"
    echo "capacity = $capacity"
    [[ -n $GW_CACHE_EXTRA ]] && printf '%s\n' "$GW_CACHE_EXTRA"
    echo
    echo "[auth]"
    echo "query_key = true"
    [[ -n $GW_AUTH_EXTRA ]] && printf '%s\n' "$GW_AUTH_EXTRA"
    echo
    echo "[log]"
    echo "access = \"$access\""
    echo
    echo "[upstreams.bench]"
    echo "url = \"http://127.0.0.1:$PORT_UPSTREAM\""
    echo
    echo "[[routes]]"
    echo "prefix = \"/public\""
    echo "upstream = \"bench\""
    echo "resource = \"public\""
    echo "public = true"
    echo
    echo "[[routes]]"
    echo "prefix = \"/v1/domains\""
    echo "upstream = \"bench\""
    echo "resource = \"domains\""
  } >"$file"
}

gw_cli_looks_ready() {  # the binary advertises the run and keys commands
  local help
  help=$("$GW_BIN" --help 2>&1) || true
  grep -qw run <<<"$help" && grep -qw keys <<<"$help"
}

json_field() {  # json_field FIELD < output: first JSON object in the output
  python3 -c '
import json, sys
text, field = sys.stdin.read(), sys.argv[1]
dec = json.JSONDecoder()
i = text.find("{")
while i != -1:
    try:
        obj, _ = dec.raw_decode(text, i)
        if isinstance(obj, dict) and field in obj:
            print(obj[field]); sys.exit(0)
    except ValueError:
        pass
    i = text.find("{", i + 1)
sys.exit(1)' "$1"
}

KEY_RE='^osir_(live|test)_[a-z0-9]{32}$'

# The reject-403 key's scope (vps:read) names a resource no bench route has;
# since da79eab `keys create` refuses that unless --allow-unknown-scope (an
# older binary, BENCH_GW_BIN, has no such flag and needs none).
create_key() {  # create_key SCOPE NAME -> prints the key
  local out key extra=()
  if "$GW_BIN" keys create --help 2>/dev/null | grep -q -- --allow-unknown-scope; then
    extra=(--allow-unknown-scope)
  fi
  out=$("$GW_BIN" -c "$RUN/conf/gw-w1.toml" keys create --name "$2" --env live --scope "$1" --json \
        "${extra[@]}" 2>>"$RUN/logs/gw-keys.log") || return 1
  key=$(json_field key <<<"$out") || return 1
  [[ $key =~ $KEY_RE ]] || return 1
  printf '%s\n' "$key"
}

# seed_keys N FILE: N keys with domains:read, one a line in FILE, made by one
# `keys create --count N` (one process, one store round trip per key).
seed_keys() {
  local n=$1 file=$2 start=$SECONDS
  log "seeding $n keys (keys create --count $n)"
  "$GW_BIN" -c "$RUN/conf/gw-w1.toml" keys create --name bench-pop --env live \
    --scope domains:read --count "$n" --json 2>>"$RUN/logs/gw-keys.log" \
    | python3 -c '
import json, sys
for line in sys.stdin:
    print(json.loads(line)["key"])
' >"$file" || return 1
  local got
  got=$(wc -l <"$file")
  log "seeded $got keys in $((SECONDS - start)) s"
  ((got == n))
}

start_gateway() {  # start_gateway NAME CONFIG CPUS PORT...
  local name=$1 cfg=$2 cpus=$3 port pid; shift 3
  setsid taskset -c "$cpus" "$GW_BIN" -c "$cfg" run >"$RUN/logs/$name.log" 2>&1 &
  pid=$!
  CHILD_PIDS+=("$pid")
  for port in "$@"; do
    if ! wait_port "$port" 15 "$pid"; then
      note "osir-gateway ($name) did not start listening on $port: $(tail -n 2 "$RUN/logs/$name.log" | tr '\n' ' ')"
      stop_pid "$pid"
      return 1
    fi
  done
  SERVER_PID[$name]=$pid
  SERVER_ADMIN[$name]=$(($1 + 1))
  [[ $(ps -o sid= -p "$pid" | tr -d ' ') == "$pid" ]] \
    || note "osir-gateway ($name) is not in a session of its own; its CPU weight is shared with the load generator's."
  log "osir-gateway $name up (pid $pid, ports $*, $(ls "/proc/$pid/task" | wc -l) threads)"
}

setup_gateway() {
  any_gateway_job || return 0
  if [[ $GW_STATE != built ]]; then
    drop_gateway_jobs "the binary could not be built (see Notes)"
    return 0
  fi
  if ! gw_cli_looks_ready; then
    note "osir-gateway skipped: \`osir-gateway --help\` lists no \`run\`/\`keys\` commands yet (binary not ready)."
    drop_gateway_jobs "binary not ready"
    return 0
  fi
  start_redis gw-store "$PORT_GW_STORE"
  write_gateway_config "$RUN/conf/gw-w1.toml" "$PORT_GW1" 1 100000
  write_gateway_config "$RUN/conf/gw-default.toml" "$PORT_GWD" "" 100000
  write_gateway_config "$RUN/conf/gw-small.toml" "$PORT_GWS" 1 "$CACHE_SMALL"
  write_gateway_config "$RUN/conf/gw-log.toml" "$PORT_GWL" 1 100000 "$ACCESS_LOG"
  [[ -n $TLS_DIR ]] && write_gateway_config "$RUN/conf/gw-tls.toml" "$PORT_GWT" 1 100000 off "$PORT_GWT_TLS"

  if KEY_OK=$(create_key domains:read bench) && KEY_403=$(create_key vps:read bench-403); then
    GW_KEYS_OK=1
  else
    note "osir-gateway key scenarios skipped: \`keys create --json\` did not print a key (see logs/gw-keys.log in the run folder)."
    drop_gateway_jobs "keys create not working" keyed
  fi

  local pool=0
  job_selected osir-w1/population && pool=$POP_KEYS
  job_selected osir-small/store-path && ((STORE_KEYS > pool)) && pool=$STORE_KEYS
  # flood: its valid keys are the first FLOOD_KEYS of the same file
  ((FLOOD && FLOOD_KEYS > pool)) && pool=$FLOOD_KEYS
  if ((GW_KEYS_OK && pool > 0)); then
    if ! seed_keys "$pool" "$RUN/keys.txt"; then
      note "osir-gateway population, store-path and flood skipped: seeding $pool keys through the CLI failed."
      drop_job osir-w1/population; drop_job osir-small/store-path
      FLOOD_SKIP="seeding $pool keys through the CLI failed"
    fi
  fi

  if server_wanted osir-w1; then
    start_gateway osir-w1 "$RUN/conf/gw-w1.toml" "$SERVER_CPU" "$PORT_GW1" \
      || drop_server_jobs osir-w1 "did not start"
  fi
  if server_wanted osir-w1-log; then
    start_gateway osir-w1-log "$RUN/conf/gw-log.toml" "$SERVER_CPU" "$PORT_GWL" \
      || drop_server_jobs osir-w1-log "did not start"
  fi
  if server_wanted osir-tls; then
    if start_gateway osir-tls "$RUN/conf/gw-tls.toml" "$SERVER_CPU" "$PORT_GWT" "$PORT_GWT_TLS"; then
      tls_note osir-tls "$PORT_GWT_TLS" "osir-gateway"
    else
      drop_server_jobs osir-tls "did not start"
    fi
  fi
  if server_wanted osir-default; then
    if start_gateway osir-default "$RUN/conf/gw-default.toml" "$GWD_CPUS" "$PORT_GWD"; then
      note "osir-gateway with default workers runs on CPU(s) $GWD_CPUS with $(ls "/proc/${SERVER_PID[osir-default]}/task" | wc -l) threads at start (thread count from /proc/<pid>/task; pinned the same way as the peers unless BENCH_GW_DEFAULT_CPUS says otherwise)."
    else
      drop_server_jobs osir-default "did not start"
    fi
  fi
  if server_wanted osir-small; then
    start_gateway osir-small "$RUN/conf/gw-small.toml" "$SERVER_CPU" "$PORT_GWS" \
      || drop_server_jobs osir-small "did not start"
  fi
}

# -------------------------------------------------------------------- jobs --
#
# A job is one target under one scenario; each repetition runs every job once,
# in order (A B C … A B C …).

JOBS=()
declare -A J_SCEN=() J_URL=() J_EXPECT=() J_HDR=() J_LUA=() J_STORE=() J_DESC=()
# J_SRV: the SERVER_PID name measured (default: the target); J_ACCESS: the
# server's access log ("off" or "file"); J_GROUP: a scenario group --scenarios
# accepts (access-log, tls); J_WITH: the plain baseline jobs selected along
# with it (the report's pairs are in lib/report.py); J_TOOL: the load
# generator of the rounds (wrk, or h2load for h2-tls).
declare -A J_SRV=() J_ACCESS=() J_GROUP=() J_WITH=() J_TOOL=()

define_jobs() {  # every job that exists, in the order they run
  local u=http://127.0.0.1
  add_job direct plain "$u:$PORT_UPSTREAM/" 200 "" "" "" "nginx return 200 (the upstream itself)"
  add_job nginx-proxy plain "$u:$PORT_PROXY/" 200 "" "" "" "nginx proxy_pass, no auth"
  add_job nginx-proxy tls "https://127.0.0.1:$PORT_PROXY_TLS/" 200 "" "" "" \
    "the same nginx proxy_pass behind \`listen ssl\` (port $PORT_PROXY_TLS, HTTP/1.1 keep-alive, self-signed P-256)"
  job_opts nginx-proxy/tls srv=proxy-tls group=tls with=nginx-proxy/plain
  add_job nginx-proxy h2-tls "https://127.0.0.1:$PORT_PROXY_H2/" 200 "" "" "" \
    "the same nginx proxy_pass behind \`listen ssl\` with HTTP/2 (port $PORT_PROXY_H2, \`peers/proxy-h2.conf.tmpl\`), h2load -c$H2_CONNS -m$H2_STREAMS"
  job_opts nginx-proxy/h2-tls srv=proxy-h2 group=h2-tls tool=h2load with=nginx-proxy/plain
  add_job nginx-keymap bearer "$u:$PORT_KEYMAP/" 200 "Bearer @PEER_KEY@" "" "" "nginx map of one Authorization value"
  add_job haproxy plain "$u:$PORT_HAPROXY/" 200 "" "" "" "HAProxy, one thread, no auth"
  add_job tokio-floor plain "$u:$PORT_FLOOR/" 200 "" "" "" \
    "the floor: a bare tokio + httparse proxy, no auth, none of a real proxy's rules (bench/floor.rs)"
  add_job kong-cached bearer "$u:$PORT_KONG_CACHED/" 200 "Bearer @PEER_KEY@" "" kong-store "nginx+Lua: LRU, shared dict, Redis on miss"
  add_job kong-redis bearer "$u:$PORT_KONG_REDIS/" 200 "Bearer @PEER_KEY@" "" kong-store "nginx+Lua: Redis on every request"
  add_job osir-w1 public "$u:$PORT_GW1/public" 200 "" "" gw-store "public route, no key"
  add_job osir-w1 public@tls-instance "$u:$PORT_GWT/public" 200 "" "" gw-store \
    "public over plain http to the TLS instance (a second workers=1 instance, the osir-w1 config plus [server.tls]; its plain port $PORT_GWT): the same process as public+tls"
  job_opts osir-w1/public@tls-instance srv=osir-tls group=tls with=osir-w1/public
  add_job osir-w1 public+tls "https://127.0.0.1:$PORT_GWT_TLS/public" 200 "" "" gw-store \
    "public over https to the TLS instance (port $PORT_GWT_TLS)"
  job_opts osir-w1/public+tls srv=osir-tls group=tls with="osir-w1/public@tls-instance osir-w1/public"
  add_job osir-w1 cache-hit "$u:$PORT_GW1/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store "one key, Authorization: Bearer"
  add_job osir-w1 cache-hit+accesslog "$u:$PORT_GWL/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store \
    "cache-hit on a second workers=1 instance (port $PORT_GWL) whose only difference is [log] access = a file in the run folder"
  job_opts osir-w1/cache-hit+accesslog srv=osir-w1-log group=access-log access=file with=osir-w1/cache-hit
  add_job osir-w1 cache-hit@tls-instance "$u:$PORT_GWT/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store \
    "cache-hit over plain http to the TLS instance (port $PORT_GWT): the same process as cache-hit+tls"
  job_opts osir-w1/cache-hit@tls-instance srv=osir-tls group=tls with=osir-w1/cache-hit
  add_job osir-w1 cache-hit+tls "https://127.0.0.1:$PORT_GWT_TLS/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store \
    "cache-hit over https to the TLS instance (port $PORT_GWT_TLS)"
  job_opts osir-w1/cache-hit+tls srv=osir-tls group=tls with="osir-w1/cache-hit@tls-instance osir-w1/cache-hit"
  add_job osir-w1 h2-tls "https://127.0.0.1:$PORT_GWT_TLS/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store \
    "cache-hit over HTTP/2 over TLS (ALPN h2) to the TLS instance (port $PORT_GWT_TLS), h2load -c$H2_CONNS -m$H2_STREAMS"
  job_opts osir-w1/h2-tls srv=osir-tls group=h2-tls tool=h2load with=nginx-proxy/h2-tls
  add_job osir-w1 query-key "$u:$PORT_GW1/v1/domains?api_key=@KEY_OK@" 200 "" "" gw-store "one key, ?api_key="
  # statuses checked by the gateway's counters, not by wrk (see run_wrk)
  add_job osir-w1 reject-401 "$u:$PORT_GW1/v1/domains" 401 "" "" gw-store "no key at full rate"
  add_job osir-w1 reject-403 "$u:$PORT_GW1/v1/domains" 403 "Bearer @KEY_403@" "" gw-store "key with vps:read on /v1/domains"
  # the Goals (lib/report.py) read reject-* against cache-hit, store-path
  # against the Kong-like Redis-every-request peer: selected along with them
  job_opts osir-w1/reject-401 with=osir-w1/cache-hit
  job_opts osir-w1/reject-403 with=osir-w1/cache-hit
  add_job osir-w1 population "$u:$PORT_GW1/v1/domains" 200 "" "keys=@KEYS@ n=$POP_KEYS dist=zipf s=$ZIPF_S" gw-store \
    "Zipf(s=$ZIPF_S) over $POP_KEYS keys"
  add_job osir-small store-path "$u:$PORT_GWS/v1/domains" 200 "" "keys=@KEYS@ n=$STORE_KEYS dist=uniform" gw-store \
    "$STORE_KEYS keys uniform, cache capacity $CACHE_SMALL"
  job_opts osir-small/store-path with=kong-redis/bearer
  add_job osir-default public "$u:$PORT_GWD/public" 200 "" "" gw-store "public route, no key"
  add_job osir-default cache-hit "$u:$PORT_GWD/v1/domains" 200 "Bearer @KEY_OK@" "" gw-store "one key, Authorization: Bearer"
}

ALL_JOBS=()
add_job() {  # add_job TARGET SCENARIO URL EXPECT HEADER LUAARGS STORE DESCRIPTION
  local id="$1/$2"
  ALL_JOBS+=("$id")
  J_SCEN[$id]=$2; J_URL[$id]=$3; J_EXPECT[$id]=$4; J_HDR[$id]=$5; J_LUA[$id]=$6
  J_STORE[$id]=$7; J_DESC[$id]=$8
  J_SRV[$id]=$1; J_ACCESS[$id]=off; J_GROUP[$id]=""; J_WITH[$id]=""; J_TOOL[$id]=wrk
}

job_opts() {  # job_opts ID srv=NAME access=off|file group=NAME with="JOB..." tool=wrk|h2load
  local id=$1 kv; shift
  for kv in "$@"; do
    case ${kv%%=*} in
      srv) J_SRV[$id]=${kv#*=} ;;
      access) J_ACCESS[$id]=${kv#*=} ;;
      group) J_GROUP[$id]=${kv#*=} ;;
      with) J_WITH[$id]=${kv#*=} ;;
      tool) J_TOOL[$id]=${kv#*=} ;;
      *) die "job_opts: unknown option $kv" ;;
    esac
  done
}

target_of() { printf '%s' "${1%%/*}"; }

target_label() {
  case $1 in
    direct) echo "direct (upstream)" ;;
    nginx-proxy) echo "nginx proxy" ;;
    nginx-keymap) echo "nginx key map" ;;
    haproxy) echo "HAProxy" ;;
    tokio-floor) echo "tokio floor" ;;
    kong-cached) echo "Kong-like, cached" ;;
    kong-redis) echo "Kong-like, Redis every request" ;;
    osir-w1) echo "osir-gateway, workers=1" ;;
    osir-default) echo "osir-gateway, default workers" ;;
    osir-small) echo "osir-gateway, workers=1, cache $CACHE_SMALL" ;;
    *) echo "$1" ;;
  esac
}

select_jobs() {
  local id item matched tokens=()
  if [[ -n $SCENARIO_LIST ]]; then
    IFS=',' read -r -a tokens <<<"$SCENARIO_LIST"
  elif [[ $MODE == quick ]]; then
    tokens=(osir-w1/public osir-w1/cache-hit)
  else
    tokens=(all)
  fi
  tokens+=(direct nginx-proxy/plain)
  for item in "${tokens[@]}"; do
    item=${item// /}
    [[ -z $item ]] && continue
    matched=0
    # flood is not a job of the rounds but a phase of its own (run_flood)
    [[ $item == flood || $item == all ]] && { FLOOD=1; matched=1; }
    for id in "${ALL_JOBS[@]}"; do
      if [[ $item == all || $item == "$id" || $item == "$(target_of "$id")" || $item == "${J_SCEN[$id]}" \
            || $item == "${J_GROUP[$id]}" ]]; then
        matched=1
        job_selected "$id" || JOBS+=("$id")
      fi
    done
    ((matched)) || die "unknown scenario or target '$item' (see --help)"
  done
  # a paired job brings its plain baselines
  local base
  for id in "${JOBS[@]}"; do
    for base in ${J_WITH[$id]}; do job_selected "$base" || JOBS+=("$base"); done
  done
  # keep the defined order
  local ordered=()
  for id in "${ALL_JOBS[@]}"; do job_selected "$id" && ordered+=("$id"); done
  JOBS=("${ordered[@]}")
}

job_selected() { local j; for j in "${JOBS[@]}"; do [[ $j == "$1" ]] && return 0; done; return 1; }
target_wanted() { local j; for j in "${JOBS[@]}"; do [[ $(target_of "$j") == "$1" ]] && return 0; done; return 1; }
server_wanted() { local j; for j in "${JOBS[@]}"; do [[ ${J_SRV[$j]} == "$1" ]] && return 0; done; return 1; }
any_group_job() { local j; for j in "${JOBS[@]}"; do [[ ${J_GROUP[$j]} == "$1" ]] && return 0; done; return 1; }
any_gateway_job() { ((FLOOD)) && return 0; local j; for j in "${JOBS[@]}"; do [[ $j == osir-* ]] && return 0; done; return 1; }

drop_job() {
  local j kept=()
  for j in "${JOBS[@]}"; do [[ $j == "$1" ]] || kept+=("$j"); done
  JOBS=("${kept[@]}")
}
drop_target_jobs() {  # drop_target_jobs TARGET WHY
  local j
  for j in "${JOBS[@]}"; do
    [[ $(target_of "$j") == "$1" ]] && { drop_job "$j"; log "skipping $j: $2"; }
  done
  return 0
}
drop_server_jobs() {  # drop_server_jobs SERVER WHY
  local j
  for j in "${JOBS[@]}"; do
    [[ ${J_SRV[$j]} == "$1" ]] && { drop_job "$j"; log "skipping $j: $2"; }
  done
  return 0
}
drop_group_jobs() {  # drop_group_jobs GROUP WHY
  local j
  for j in "${JOBS[@]}"; do
    [[ ${J_GROUP[$j]} == "$1" ]] && { drop_job "$j"; log "skipping $j: $2"; }
  done
  return 0
}
drop_gateway_jobs() {  # drop_gateway_jobs WHY [keyed]: all osir jobs, or those needing a key
  local j
  for j in "${JOBS[@]}"; do
    [[ $j == osir-* ]] || continue
    if [[ ${2:-} == keyed && ${J_SCEN[$j]} == public* ]]; then continue; fi
    drop_job "$j"
    log "skipping $j: $1"
  done
  return 0
}

expand() {  # substitute the run's keys into a job field
  local s=$1
  s=${s//@PEER_KEY@/$PEER_KEY}
  s=${s//@KEY_OK@/$KEY_OK}
  s=${s//@KEY_403@/$KEY_403}
  s=${s//@KEYS@/$RUN/keys.txt}
  printf '%s' "$s"
}

first_pool_key() { head -n 1 "$RUN/keys.txt"; }

# ---------------------------------------------------------------- measuring --

sanity_check() {  # one request, its status must be the expected one
  local id=$1 url hdr code args=()
  url=$(expand "${J_URL[$id]}")
  hdr=$(expand "${J_HDR[$id]}")
  [[ -n $hdr ]] && args=(-H "Authorization: $hdr")
  if [[ ${J_LUA[$id]} == *keys=* ]]; then args=(-H "Authorization: Bearer $(first_pool_key)"); fi
  # https: the certificate must verify for 127.0.0.1 (wrk itself does not verify)
  # h2load: HTTP/2 over TLS, negotiated by ALPN (curl --http2 falls back to
  # HTTP/1.1 if the server does not take h2: the version is checked below)
  local want_version=""
  if [[ $url == https:* && ${J_TOOL[$id]} == h2load ]]; then
    args+=(--cacert "$TLS_DIR/cert.pem" --http2); want_version=2
  elif [[ $url == https:* ]]; then
    args+=(--cacert "$TLS_DIR/cert.pem" --http1.1)
  fi
  local got version
  got=$(curl -s -o "$RUN/logs/sanity.body" -w '%{http_code} %{http_version}' --max-time 5 "${args[@]}" "$url") || got="000 ?"
  code=${got%% *}; version=${got#* }
  if [[ $code != "${J_EXPECT[$id]}" ]]; then
    fail_note "$id: one-request check answered $code, expected ${J_EXPECT[$id]} ($(head -c 200 "$RUN/logs/sanity.body" | tr '\n' ' '))"
    return 1
  fi
  if [[ -n $want_version && $version != "$want_version" ]]; then
    fail_note "$id: one-request check spoke HTTP/$version, expected HTTP/$want_version (ALPN h2 not negotiated)"
    return 1
  fi
}

# Lines in the access log file, once its writer has caught up (the gateway
# writes off the request path, so lines may trail the last response): waits
# until the file stops growing, at most 10 s.
access_log_settle() {
  local size last=-1 i
  for ((i = 0; i < 100; i++)); do
    size=$(stat -c %s "$ACCESS_LOG" 2>/dev/null || echo 0)
    [[ $size == "$last" ]] && return 0
    last=$size
    sleep 0.1
  done
}

# status_delta BEFORE AFTER: "STATUS:COUNT,…" of what AFTER adds to BEFORE
# (both from flood.py statuses), statuses that did not move left out
status_delta() {
  python3 - "$1" "$2" <<'PY'
import sys
def parse(t):
    return {k: int(v) for k, v in (p.split(":") for p in t.split(",") if p)}
a, b = parse(sys.argv[1]), parse(sys.argv[2])
print(",".join(f"{k}:{b[k] - a.get(k, 0)}" for k in sorted(b) if b[k] - a.get(k, 0) > 0))
PY
}

# A row of runs.tsv per run:
# round job rps requests duration_us cpu_us_per_req store_cpu_us_per_req hwm_kib p50_us p99_us ok
#   access_log_lines(-1: no log) loadgen_cpu_us(-1: unknown) note
run_wrk() {  # run_wrk JOB SECONDS ROUND(0 = warm-up)
  local id=$1 secs=$2 round=$3 pid store_pid url hdr lua out rc=0 tool=${J_TOOL[$1]}
  pid=${SERVER_PID[${J_SRV[$id]}]}
  store_pid=""
  [[ -n ${J_STORE[$id]} ]] && store_pid=${SERVER_PID[${J_STORE[$id]}]:-}
  url=$(expand "${J_URL[$id]}")
  hdr=$(expand "${J_HDR[$id]}")
  lua=$(expand "${J_LUA[$id]}")
  local wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNS" -d"${secs}s" --timeout 5s -s "$BENCH_DIR/wrk/bench.lua")
  [[ -n $hdr ]] && wrk_args+=(-H "Authorization: $hdr")
  local lua_args=()
  [[ -n $lua ]] && read -r -a lua_args <<<"$lua"

  # A refusal job on osir-gateway is checked by the gateway's own counters
  # (osir_gateway_requests_total by status, before and after), not by wrk:
  # wrk's per-response Lua hook (count=1) costs it 10-20% of its rate, which
  # would cap these jobs below the cache-hit job they are compared with.
  # (Read outside the CPU window: rendering /metrics is not the run's work.)
  local by_server="" admin=${SERVER_ADMIN[${J_SRV[$id]}]:-} st0=""
  if [[ -n $admin && ${J_EXPECT[$id]} != 2* && " ${lua_args[*]} " != *" count=1 "* ]]; then
    by_server=1
    st0=$(python3 "$LIB/flood.py" statuses "$admin" 2>/dev/null || true)
  fi
  local c0 c1 s0=0 s1=0 hwm log_lines=-1 is_log=0
  [[ ${J_ACCESS[$id]} == file ]] && is_log=1
  # each run starts the access log empty (the gateway appends: O_APPEND writes
  # land at the new end), so the file stays one run long and its lines count
  # this run's requests
  ((is_log)) && : >"$ACCESS_LOG"
  # osir-gateway: CPU per thread name too (runtime, access-log writer, watcher)
  local t0="" t1=""
  python3 "$LIB/procstat.py" reset "$pid"
  [[ ${J_SRV[$id]} == osir-* ]] && t0=$(python3 "$LIB/procstat.py" threads "$pid")
  c0=$(python3 "$LIB/procstat.py" cpu "$pid")
  [[ -n $store_pid ]] && s0=$(python3 "$LIB/procstat.py" cpu "$store_pid")
  local cmd=(wrk "${wrk_args[@]}" "$url" -- "${lua_args[@]}")
  if [[ $tool == h2load ]]; then
    # h2load: the same duration, HTTP/2 over TLS (ALPN h2), H2_CONNS x H2_STREAMS
    cmd=("$H2LOAD" -t"$H2_THREADS" -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs")
    [[ -n $hdr ]] && cmd+=(-H "Authorization: $hdr")
    cmd+=("$url")
  fi
  out=$(taskset -c "$LOADGEN_CPU" python3 "$LIB/rusage.py" "${cmd[@]}" 2>&1) || rc=$?
  if [[ $tool == h2load ]]; then
    # its summary as the BENCH_* lines bench.lua prints for wrk
    local parsed
    parsed=$(python3 "$LIB/h2load_parse.py" <<<"$out" 2>&1) || parsed=""
    out+=$'\n'"$parsed"
  fi
  # the CPU the log writer spends catching up after the last response belongs to this run
  ((is_log)) && access_log_settle
  c1=$(python3 "$LIB/procstat.py" cpu "$pid")
  [[ -n $t0 ]] && t1=$(python3 "$LIB/procstat.py" threads "$pid")
  if [[ -n $by_server ]]; then
    local st1
    st1=$(python3 "$LIB/flood.py" statuses "$admin" 2>/dev/null || true)
    out+=$'\n'"BENCH_STATUS_SERVER $(status_delta "$st0" "$st1")"
  fi
  ((is_log)) && log_lines=$(wc -l <"$ACCESS_LOG")
  [[ -n $store_pid ]] && s1=$(python3 "$LIB/procstat.py" cpu "$store_pid")
  hwm=$(python3 "$LIB/procstat.py" hwm "$pid")
  local safe_id=${id//\//_}
  printf '%s\n' "$out" >"$RUN/logs/$tool.$safe_id.r$round.log"
  ((round == 0)) && return 0
  local h2_line alpn=""
  h2_line=$(grep -m1 '^BENCH_H2 ' <<<"$out" || true)
  [[ -n $h2_line ]] && alpn=$( (grep -oE 'alpn=[^ ]*' <<<"$h2_line" || true) | cut -d= -f2)
  # what h2load negotiated, once per job (the report's HTTP/2 section)
  if [[ -n $h2_line ]] && ! grep -q "^$id|" "$RUN/h2.txt" 2>/dev/null; then
    printf '%s|%s\n' "$id" "${h2_line#BENCH_H2 }" >>"$RUN/h2.txt"
  fi

  local line status_line problem="" loadgen_us=-1 lg
  line=$(grep -m1 '^BENCH_RESULT ' <<<"$out" || true)
  status_line=$(grep -m1 '^BENCH_STATUS ' <<<"$out" || true)
  local server_statuses=""
  server_statuses=$(grep -m1 '^BENCH_STATUS_SERVER ' <<<"$out" || true)
  lg=$(grep -m1 -oE '^BENCH_LOADGEN cpu_us=[0-9]+' <<<"$out" || true)
  [[ -n $lg ]] && loadgen_us=${lg#*=}
  local requests=0 duration_us=1 connect=0 read=0 write=0 status=0 timeout=0 p50_us=0 p99_us=0 kv
  local failed=0 errored=0
  if [[ -z $line ]]; then
    problem="$tool exited $rc without a result: $(grep -v '^BENCH_' <<<"$out" | tail -n 2 | tr '\n' ' ')"
  else
    for kv in ${line#BENCH_RESULT }; do
      case ${kv%%=*} in
        requests|duration_us|connect|read|write|status|timeout|p50_us|p99_us|failed|errored) printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
      esac
    done
    local statuses=${status_line#BENCH_STATUS }
    if ((requests == 0)); then
      problem="no request completed"
    elif ((connect + read + write + timeout > 0)); then
      problem="socket errors: connect $connect, read $read, write $write, timeout $timeout"
    elif ((failed + errored > 0)); then
      # h2load: failed = every request without a 2xx/3xx (HTTP errors included), errored = the others
      problem="h2load: $failed failed, $errored errored requests (statuses: ${statuses:-none})"
    elif [[ $tool == h2load && $alpn != h2 ]]; then
      problem="h2load did not negotiate h2 (application protocol: ${alpn:-none})"
    elif [[ ${J_EXPECT[$id]} == 2* ]]; then
      ((status == 0)) || problem="$status responses with status >= 400 (expected ${J_EXPECT[$id]}; wrk: Non-2xx or 3xx responses)"
      local non2xx='(^|,)[^2]'
      if [[ $statuses != uncounted && -n $statuses && $statuses =~ $non2xx ]]; then
        problem="unexpected statuses: $statuses"
      fi
    elif [[ -n $server_statuses ]]; then
      # wrk counted every answer of status >= 400 (its own C counter); the
      # gateway says which: only the expected one, at least once per answer
      # wrk read (a few more: answers wrk stopped waiting for at the end)
      statuses=${server_statuses#BENCH_STATUS_SERVER }
      local only_expected="^${J_EXPECT[$id]}:([0-9]+)\$"
      if ((status != requests)); then
        problem="$((requests - status)) of $requests responses had a status below 400 (expected ${J_EXPECT[$id]})"
      elif ! [[ $statuses =~ $only_expected ]]; then
        problem="expected only ${J_EXPECT[$id]}, the gateway answered: ${statuses:-none}"
      elif ((BASH_REMATCH[1] < requests)); then
        problem="the gateway counted ${BASH_REMATCH[1]} answers of ${J_EXPECT[$id]}, wrk read $requests"
      fi
    else
      local only_expected="^${J_EXPECT[$id]}:[0-9]+\$"
      if ! [[ $statuses =~ $only_expected ]]; then
        problem="expected only ${J_EXPECT[$id]}, got statuses: ${statuses:-none}"
      fi
    fi
  fi
  alive "$pid" || problem="${problem:+$problem; }the server (pid $pid) died"

  local ok=1 note=""
  if [[ -n $problem ]]; then
    ok=0; note=$problem
    fail_note "$id round $round: $problem ($tool output: logs/$tool.$safe_id.r$round.log)"
  fi
  awk -v round="$round" -v id="$id" -v req="$requests" -v dur="$duration_us" \
      -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" -v tck="$CLK_TCK" -v hwm="$hwm" \
      -v p50="$p50_us" -v p99="$p99_us" -v ok="$ok" -v note="$note" -v has_store="${store_pid:+1}" \
      -v lines="$log_lines" -v lg="$loadgen_us" 'BEGIN {
    rps = (dur > 0) ? req / (dur / 1e6) : 0
    cpu = (req > 0) ? (c1 - c0) * 1e6 / tck / req : 0
    scpu = (req > 0 && has_store) ? (s1 - s0) * 1e6 / tck / req : -1
    printf "%d\t%s\t%.1f\t%d\t%d\t%.2f\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", round, id, rps, req, dur, cpu, scpu, hwm, p50, p99, ok, lines, lg, note
  }' >>"$RUN/runs.tsv"
  # threads.tsv: round job thread-name cpu_us_per_req
  if [[ -n $t1 ]]; then
    awk -v round="$round" -v id="$id" -v req="$requests" -v tck="$CLK_TCK" -v t0="$t0" -v t1="$t1" 'BEGIN {
      n = split(t0, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); before[kv[1]] = kv[2] }
      n = split(t1, a, " ")
      for (i = 1; i <= n; i++) {
        split(a[i], kv, "=")
        if (req > 0) printf "%d\t%s\t%s\t%.2f\n", round, id, kv[1], (kv[2] - before[kv[1]]) * 1e6 / tck / req
      }
    }' >>"$RUN/threads.tsv"
  fi
  awk -F'\t' -v id="$id" 'END { printf "  %-30s %10.0f req/s  %6.2f µs CPU/req%s\n", id, $3, $6, ($11 == 1 ? "" : "  FAILED") }' \
    "$RUN/runs.tsv" >&2
}

# record_idle_rss: each server's resident memory at rest (started, one
# request served by the check above, no load yet), to idle.tsv: server, KiB.
record_idle_rss() {
  local id srv seen=" "
  for id in "${JOBS[@]}"; do
    srv=${J_SRV[$id]}
    [[ $seen == *" $srv "* ]] && continue
    seen+="$srv "
    printf '%s\t%s\n' "$srv" "$(python3 "$LIB/procstat.py" rss "${SERVER_PID[$srv]}")" >>"$RUN/idle.tsv"
  done
}

run_closed_loop() {
  local id round
  local checked=()
  for id in "${JOBS[@]}"; do
    if sanity_check "$id"; then checked+=("$id"); else log "not measuring $id"; fi
  done
  JOBS=("${checked[@]}")
  ((${#JOBS[@]})) || die "no target passed its one-request check"
  record_idle_rss
  log "warm-up: ${WARMUP_SECONDS} s per job"
  for id in "${JOBS[@]}"; do run_wrk "$id" "$WARMUP_SECONDS" 0; done
  for ((round = 1; round <= REPS; round++)); do
    log "round $round of $REPS (${SECONDS_PER_RUN} s per job, ${#JOBS[@]} jobs)"
    for id in "${JOBS[@]}"; do
      run_wrk "$id" "$SECONDS_PER_RUN" "$round"
      sleep 0.5
    done
  done
}

# Open loop: fixed rates below saturation, latency corrected for coordinated
# omission (oha --latency-correction): OPEN_RATE (5k req/s) and
# OPEN_SHARE percent of the nginx proxy's median closed-loop max in this run.
OPEN_JOBS=(direct/plain nginx-proxy/plain haproxy/plain tokio-floor/plain kong-cached/bearer osir-w1/cache-hit)

# open_rates: OPEN_RATE, then OPEN_SHARE% of nginx-proxy/plain's median req/s
# over the measured rounds of runs.tsv (when it ran and OPEN_SHARE > 0).
open_rates() {
  local share=""
  if ((OPEN_SHARE > 0)); then
    share=$(awk -F'\t' '$1 > 0 && $2 == "nginx-proxy/plain" && $11 == 1 { print $3 }' "$RUN/runs.tsv" \
      | sort -g | awk -v pct="$OPEN_SHARE" '
          { v[++n] = $1 }
          END {
            if (n == 0) exit
            m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%d\n", m * pct / 100 / 100 + 0.5
          }')
  fi
  echo "$OPEN_RATE"
  [[ -n $share ]] && echo "$((share * 100))"
  return 0
}

run_open_loop() {
  ((OPEN_LOOP)) || return 0
  ensure_oha || return 0
  local id jobs=() round rate rates
  for id in "${OPEN_JOBS[@]}"; do job_selected "$id" && jobs+=("$id"); done
  mapfile -t rates < <(open_rates)
  log "open loop: ${rates[*]} req/s for ${OPEN_SECONDS} s each, ${OPEN_REPS} round(s), targets: ${jobs[*]}"
  "$OHA" --version >"$RUN/logs/oha-version.txt" 2>&1 || true
  for rate in "${rates[@]}"; do
    for ((round = 1; round <= OPEN_REPS; round++)); do
      for id in "${jobs[@]}"; do
        local url hdr args=() out rc=0 tag=${id//\//_}.q$rate.r$round
        url=$(expand "${J_URL[$id]}")
        hdr=$(expand "${J_HDR[$id]}")
        [[ -n $hdr ]] && args=(-H "Authorization: $hdr")
        out=$(taskset -c "$LOADGEN_CPU" "$OHA" -q "$rate" -z "${OPEN_SECONDS}s" -c "$WRK_CONNS" \
                --latency-correction -w --no-tui --output-format json "${args[@]}" "$url" 2>"$RUN/logs/oha.$tag.err") || rc=$?
        printf '%s\n' "$out" >"$RUN/logs/oha.$tag.json"
        local row
        if ! row=$(python3 "$LIB/oha_parse.py" "$round" "$id" "${J_EXPECT[$id]}" "$rate" <<<"$out" 2>>"$RUN/logs/oha.$tag.err"); then
          fail_note "$id open-loop at $rate req/s, round $round: oha exited $rc, output not understood (logs/oha.$tag.*)"
          continue
        fi
        printf '%s\n' "$row" >>"$RUN/open.tsv"
        [[ $(cut -f6 <<<"$row") == 1 ]] || fail_note "$id open-loop at $rate req/s, round $round: $(cut -f7 <<<"$row")"
        log "  $id at $rate req/s: $(cut -f4 <<<"$row") ms p50, $(cut -f5 <<<"$row") ms p99"
      done
    done
  done
}

# ------------------------------------------------------------------- flood --
#
# Valid keys under a flood of random well-formed keys (their checksums are
# valid, so each one passes the format check and asks the key cache, then the
# store). Not a job of the rounds but a phase of its own, after them: each
# variant gets a fresh osir-gateway (workers = 1, [log] access = "off",
# [cache] capacity = FLOOD_CACHE) on its own port, pinned with Redis to the
# server CPU; both loads run from the load-generator CPU. See "Flood" in
# bench/README.md for the method and lib/flood.py for the figures.

FLOOD_SKIP=""   # why the flood cannot run (set by setup_gateway)
FLOOD_TTL=60s   # [cache] ttl of the flood instances (the default, unless a run is longer)
FLOOD_MARGIN=0.75   # s between a valid run's start (end) and its first (last) snapshot

drop_child() {  # drop_child PID: forget a child that has been reaped
  local p kept=()
  for p in "${CHILD_PIDS[@]}"; do [[ $p == "$1" ]] || kept+=("$p"); done
  CHILD_PIDS=("${kept[@]}")
}

forget_child() {  # forget_child PID: stop a child, reap it, drop it from CHILD_PIDS
  stop_pid "$1"
  wait "$1" 2>/dev/null || true
  drop_child "$1"
}

flood_snap() {  # flood_snap ADMIN_PORT GW_PID OUT
  python3 "$LIB/flood.py" snap "$1" "$PORT_GW_STORE" "$2" "${SERVER_PID[gw-store]}" >"$3"
}

# flood_valid_run NAME SNAP0 SNAP1: the valid keys for SECONDS_PER_RUN (wrk
# output in NAME.log), with snapshots SNAP0 and SNAP1 taken inside the run,
# FLOOD_MARGIN s after it starts and before it ends: a request that has
# passed the key check but not yet been answered counts as a hit and not yet
# as a 200, and wrk abandons up to one such request per connection when it
# stops, so snapshots at a run's edges would skew the hit ratio. Uses the
# caller's dir, admin, pid, url, secs, wargs and valid_args.
flood_valid_run() {
  local name=$1 vpid
  taskset -c "$LOADGEN_CPU" python3 "$LIB/rusage.py" wrk "${wargs[@]}" -d"${secs}s" "$url" -- \
    "${valid_args[@]}" >"$dir/$name.log" 2>"$dir/$name.err" &
  vpid=$!
  CHILD_PIDS+=("$vpid")
  sleep "$FLOOD_MARGIN"
  flood_snap "$admin" "$pid" "$dir/$2.json"
  sleep "$(awk -v t="$secs" -v m="$FLOOD_MARGIN" 'BEGIN { printf "%.2f", t - 2 * m }')"
  flood_snap "$admin" "$pid" "$dir/$3.json"
  wait "$vpid" || true
  drop_child "$vpid"
}

# flood_variant INDEX ID BUDGET N_RANDOM LABEL
#   N_RANDOM: the flood sends the first N_RANDOM keys of flood-keys.txt, in
#   order, over and over (all of them: each request a key not sent before,
#   as long as the file lasts)
flood_variant() {
  local idx=$1 vid=$2 budget=$3 nrand=$4 label=$5
  local port=$((PORT_GWF + 2 * idx)) admin=$((PORT_GWF + 2 * idx + 1))
  local dir=$RUN/flood/$vid cfg=$RUN/conf/gw-flood-$vid.toml name=osir-flood-$vid
  local url=http://127.0.0.1:$port/v1/domains secs=$SECONDS_PER_RUN
  local GW_CACHE_EXTRA GW_AUTH_EXTRA error="" pid fpid i ready out code before after
  mkdir -p "$dir"
  local info=("budget=$budget" "window=60s" "capacity=$FLOOD_CACHE" "ttl=$FLOOD_TTL"
              "negative_ttl=5s" "negative_capacity=100000" "valid_keys=$FLOOD_KEYS"
              "random_keys=$nrand" "seconds=$secs" "port=$port")
  GW_CACHE_EXTRA=$(printf 'ttl = "%s"\nnegative_ttl = "5s"\nnegative_capacity = 100000' "$FLOOD_TTL")
  GW_AUTH_EXTRA=$(printf 'failed_lookup_budget = %s\nfailed_lookup_window = "60s"' "$budget")
  write_gateway_config "$cfg" "$port" 1 "$FLOOD_CACHE"
  log "flood variant $vid: $label"
  if ! start_gateway "$name" "$cfg" "$SERVER_CPU" "$port" "$admin"; then
    printf '%s\t%s\t%s\terror=%s\n' "$vid" "$label" "$(IFS=$'\t'; echo "${info[*]}")" \
      "the gateway did not start (see Notes)" >>"$RUN/flood/variants.tsv"
    return 0
  fi
  pid=${SERVER_PID[$name]}
  python3 "$LIB/procstat.py" reset "$pid"
  local wargs=(-t"$WRK_THREADS" -c"$WRK_CONNS" --timeout 5s -s "$BENCH_DIR/wrk/flood.lua")
  local valid_args=(keys="$RUN/keys.txt" n="$FLOOD_KEYS" mode=valid threads="$WRK_THREADS")

  # A random key (the file's last: the flood reaches it only if it wraps)
  # must be refused 401 after exactly one store lookup: well-formed, checksum
  # accepted, unknown to the store.
  before=$(python3 "$LIB/flood.py" metric "$admin" osir_gateway_store_lookups_total)
  code=$(curl -s -o "$dir/sanity.body" -w '%{http_code}' --max-time 5 \
           -H "Authorization: Bearer $(tail -n 1 "$RUN/flood-keys.txt")" "$url") || code=000
  after=$(python3 "$LIB/flood.py" metric "$admin" osir_gateway_store_lookups_total)
  if [[ $code != 401 || $((after - before)) != 1 ]]; then
    error="one random key answered $code after $((after - before)) store lookup(s), expected 401 after 1 ($(head -c 150 "$dir/sanity.body" | tr '\n' ' '))"
  fi
  # warm-up: one request per valid key, so that all of them are cached
  if [[ -z $error ]] && ! out=$(python3 "$LIB/flood.py" warm "$port" /v1/domains "$RUN/keys.txt" "$FLOOD_KEYS" 2>&1); then
    error="warm-up: not every valid key answered 200 (status:count $out)"
  fi
  if [[ -n $error ]]; then
    printf '%s\t%s\t%s\terror=%s\n' "$vid" "$label" "$(IFS=$'\t'; echo "${info[*]}")" "$error" >>"$RUN/flood/variants.tsv"
    forget_child "$pid"
    return 0
  fi

  # 1. the valid keys alone (snapshots s0 and s1 inside the run)
  flood_valid_run valid-alone s0 s1
  sleep 0.5

  # 2. the flood (secs + 3 s, between snapshots f0 and f1) and, inside it, the
  # valid keys again (secs, snapshots w0 and w1 inside that run): the valid
  # run starts 1 s after every flood thread has built its requests and ends
  # about 2 s before the flood does, so that both loads run throughout w0-w1
  flood_snap "$admin" "$pid" "$dir/f0.json"
  taskset -c "$LOADGEN_CPU" python3 "$LIB/rusage.py" wrk "${wargs[@]}" -d"$((secs + 3))s" "$url" -- \
    keys="$RUN/flood-keys.txt" n="$nrand" mode=flood threads="$WRK_THREADS" \
    >"$dir/flood.log" 2>"$dir/flood.err" &
  fpid=$!
  CHILD_PIDS+=("$fpid")
  for ((i = 0; i < 600; i++)); do
    ready=$(grep -c BENCH_READY "$dir/flood.err" || true)
    ((ready >= WRK_THREADS)) && break
    alive "$fpid" || break
    sleep 0.1
  done
  sleep 1
  flood_valid_run valid-flood w0 w1
  alive "$fpid" || error="the flood ended before the valid run did (see flood/$vid/flood.log in the run folder)"
  wait "$fpid" || true
  drop_child "$fpid"
  flood_snap "$admin" "$pid" "$dir/f1.json"
  alive "$pid" || error="${error:+$error; }the gateway (pid $pid) died"
  ((ready >= WRK_THREADS)) || error="${error:+$error; }the flood's wrk never got ready (see flood/$vid/flood.err in the run folder)"
  forget_child "$pid"
  [[ -n $error ]] && info+=("error=$error")
  printf '%s\t%s\t%s\n' "$vid" "$label" "$(IFS=$'\t'; echo "${info[*]}")" >>"$RUN/flood/variants.tsv"
  [[ -n $error ]] && rm -f "$dir/f1.json"
  log "  valid keys alone: $(grep -m1 -oE 'requests=[0-9]+' "$dir/valid-alone.log" || echo '?'); during the flood: $(grep -m1 -oE 'requests=[0-9]+' "$dir/valid-flood.log" || echo '?'); flood: $(grep -m1 '^BENCH_STATUS' "$dir/flood.log" || echo '?')"
}

run_flood() {
  ((FLOOD)) || return 0
  local why=$FLOOD_SKIP
  if [[ -z $why ]]; then
    if [[ $GW_STATE != built ]]; then why="the osir-gateway binary could not be built"
    elif ! gw_cli_looks_ready; then why="the osir-gateway binary is not ready"
    elif ((!GW_KEYS_OK)); then why="\`keys create --json\` did not print a key"
    elif [[ ! -s $RUN/keys.txt ]] || (($(wc -l <"$RUN/keys.txt") < FLOOD_KEYS)); then why="fewer than $FLOOD_KEYS seeded keys"
    fi
  fi
  if [[ -n $why ]]; then
    note "Flood scenario skipped: $why."
    return 0
  fi
  if ((SECONDS_PER_RUN < 3)); then
    note "Flood scenario skipped: it needs BENCH_SECONDS >= 3 (the snapshots sit ${FLOOD_MARGIN} s inside each run)."
    return 0
  fi
  mkdir -p "$RUN/flood"
  : >"$RUN/flood/variants.tsv"
  # every valid key is read once in the warm-up and must stay fresh until the
  # flood ends: keep the default ttl unless a run is long enough to pass it
  local span=$((2 * SECONDS_PER_RUN + 15))
  if ((span > 55)); then
    FLOOD_TTL="$((span + 30))s"
    note "Flood: [cache] ttl = \"$FLOOD_TTL\" instead of the default 60s, so that no valid key's record reaches its ttl between the warm-up and the end of the flood (about $span s)."
  fi
  log "flood: $FLOOD_RANDOM random keys with valid checksums"
  python3 "$LIB/keys.py" gen "$FLOOD_RANDOM" live >"$RUN/flood-keys.txt"
  local counts
  counts=$(python3 "$LIB/keys.py" check "$RUN/flood-keys.txt") || die "flood: the generated keys do not pass keys.py check"
  [[ $counts == "$FLOOD_RANDOM $FLOOD_RANDOM" ]] || die "flood: generated keys: $counts (count, distinct), expected $FLOOD_RANDOM distinct"
  local repeat=$FLOOD_REPEAT
  ((repeat > FLOOD_RANDOM)) && repeat=$FLOOD_RANDOM
  flood_variant 0 budget "$FLOOD_BUDGET" "$FLOOD_RANDOM" \
    "per-IP budget on: failed_lookup_budget = $FLOOD_BUDGET per 60s; each flood request a new random key"
  flood_variant 1 no-budget "$FLOOD_NO_BUDGET" "$FLOOD_RANDOM" \
    "budget off (failed_lookup_budget = $FLOOD_NO_BUDGET): each flood request a new random key"
  flood_variant 2 no-budget-repeat "$FLOOD_NO_BUDGET" "$repeat" \
    "budget off: the flood cycles over $repeat random keys (each seen again well within negative_ttl)"
  local line
  while IFS= read -r line; do
    [[ $line == PROBLEM\ * ]] && fail_note "${line#PROBLEM }"
  done < <(python3 "$LIB/flood.py" analyze "$RUN" || echo "PROBLEM flood: lib/flood.py analyze failed")
  return 0
}

# ------------------------------------------------------------------ report --

gateway_version() {
  local v="not built" rev dirty=""
  if [[ $GW_STATE == built ]]; then
    v=$("$GW_BIN" --version 2>/dev/null | head -n 1) || true
    [[ -n $v ]] || v="(no --version output)"
  fi
  if [[ -n ${BENCH_GW_BIN:-} ]]; then
    # another binary: the checkout's git state says nothing about it
    printf '%s (BENCH_GW_BIN=%s, built from an unknown commit)' "$v" "$BENCH_GW_BIN"
    return
  fi
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="no commit yet"
  [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml 2>/dev/null) ]] && dirty=", src/ or Cargo.toml with uncommitted changes"
  printf '%s (git %s%s)' "$v" "$rev" "$dirty"
}

machine_info() {
  local f=$RUN/machine.txt
  {
    echo "date (UTC)|$(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "nproc|$(nproc)"
    echo "CPU|$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "memory|$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel|$(uname -r)"
    echo "OS|$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "load average at start|$LOAD_AT_START"
    echo "nginx|$(nginx -v 2>&1 | sed 's/.*version: //')"
    echo "haproxy|$(haproxy -v 2>&1 | head -n 1 | awk '{print $3}')"
    echo "redis-server|$(redis-server --version | awk '{print $3}' | sed 's/v=//')"
    echo "wrk|$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')"
    echo "h2load|$(if [[ -n $H2LOAD ]]; then "$H2LOAD" --version 2>&1 | head -n 1; else echo 'not used'; fi)"
    echo "openssl|$(openssl version 2>/dev/null || echo 'not installed')"
    echo "libnginx-mod-http-lua|$(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null || echo 'not installed')"
    echo "oha|$(if [[ -n $OHA ]]; then "$OHA" --version 2>&1 | head -n 1; else echo 'not used'; fi)"
    echo "rustc|$(rustc --version 2>/dev/null || echo '?')"
    echo "osir-gateway|$(gateway_version)"
  } >"$f"
}

write_report() {
  local out=$BENCH_DIR/results/$STAMP-$MODE.md id
  mkdir -p "$BENCH_DIR/results"
  : >"$RUN/jobs.tsv"
  for id in "${ALL_JOBS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$(target_label "$(target_of "$id")")" "${J_SCEN[$id]}" \
      "${J_EXPECT[$id]}" "${J_DESC[$id]}" "${J_ACCESS[$id]}" "${J_GROUP[$id]}" "${J_WITH[$id]}" >>"$RUN/jobs.tsv"
  done
  {
    echo "mode|$MODE"
    echo "repetitions|$REPS"
    echo "seconds per run|$SECONDS_PER_RUN"
    echo "wrk|-t$WRK_THREADS -c$WRK_CONNS -d${SECONDS_PER_RUN}s, pinned to CPU $LOADGEN_CPU"
    any_group_job h2-tls && echo "h2load|-t$H2_THREADS -c$H2_CONNS -m$H2_STREAMS -D $SECONDS_PER_RUN (HTTP/2 over TLS, ALPN h2), pinned to CPU $LOADGEN_CPU"
    echo "servers|pinned to CPU $SERVER_CPU, one worker each (osir-gateway default workers: CPUs $GWD_CPUS)"
    echo "open loop|$( ((OPEN_LOOP)) && echo "oha -q $OPEN_RATE and -q ${OPEN_SHARE}% of the nginx proxy's median max -z ${OPEN_SECONDS}s -c $WRK_CONNS --latency-correction -w, pinned to CPU $LOADGEN_CPU, $OPEN_REPS round(s)" || echo 'not run')"
    echo "clock ticks per second|$CLK_TCK"
    echo "access log|off on every server (nginx and Kong-like: access_log off; HAProxy: no log line; osir-gateway: [log] access = \"off\") except the +accesslog rows: [log] access = \"$ACCESS_LOG\" ($(stat -f -c %T "$RUN" 2>/dev/null || echo '?') file system), emptied before each run"
    ((FLOOD)) && echo "flood|$FLOOD_KEYS valid keys, $FLOOD_RANDOM random keys with valid checksums, cache capacity $FLOOD_CACHE, budget $FLOOD_BUDGET per 60s (variant budget) or $FLOOD_NO_BUDGET (no-budget, no-budget-repeat: $FLOOD_REPEAT keys repeated), ${SECONDS_PER_RUN} s per load"
    echo "run folder|$RUN"
  } >"$RUN/settings.txt"
  python3 "$LIB/report.py" "$RUN" "$out" || die "report generation failed"
  REPORT=$out
}

# -------------------------------------------------------------------- main --

main() {
  parse_args "$@"
  [[ $(id -u) == 0 ]] || die "run as root (apt-get, taskset, /proc/<pid>/clear_refs)"
  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  RUN=$(mktemp -d /tmp/osir-bench.XXXXXX)
  chmod 755 "$RUN"
  ACCESS_LOG=$RUN/access.log
  mkdir -p "$RUN/logs" "$RUN/conf"
  : >"$RUN/notes.txt"; : >"$RUN/failures.txt"; : >"$RUN/runs.tsv"; : >"$RUN/open.tsv"; : >"$RUN/idle.tsv"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  log "mode $MODE, run folder $RUN"

  ensure_packages
  check_ports_free
  ((OPEN_LOOP)) && { ensure_oha || OPEN_LOOP=0; }
  define_jobs
  select_jobs
  log "jobs: ${JOBS[*]}"
  if any_gateway_job; then build_gateway; fi
  if target_wanted tokio-floor; then build_floor; fi

  PEER_KEY=$(python3 "$LIB/keys.py" gen 1 live)
  ensure_h2load
  setup_tls
  start_peers
  if ! ((KONG_OK)); then drop_target_jobs kong-cached "Kong-like peer not running"; drop_target_jobs kong-redis "Kong-like peer not running"; fi
  setup_gateway

  run_closed_loop
  run_flood
  run_open_loop
  machine_info
  write_report
  log "report: ${REPORT#"$ROOT"/}"
  if [[ -s $RUN/failures.txt ]]; then
    log "the run saw failures (listed in the report):"
    sed 's/^/  /' "$RUN/failures.txt" >&2
    exit 1
  fi
}

main "$@"
