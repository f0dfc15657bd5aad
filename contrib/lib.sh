# Helpers shared by the contrib checks. Source it; it expects `set -euo pipefail`.

# Builds the release binary once and prints its path.
build_poetry_serve() {
  cargo build --release --locked --quiet --bin poetry-serve
  echo "$PWD/target/release/poetry-serve"
}

# Installs Debian packages that are missing (as root, or through sudo), without the
# recommended extras (no daemon is started where systemd does not run).
install_packages() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null
}

# missing_packages COMMAND=PACKAGE...: prints, a line each, the Debian packages whose commands
# are not on PATH (python3=python3, ss=iproute2), for install_packages.
missing_packages() {
  local pair
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null || echo "${pair#*=}"
  done | sort -u
}

# scratch: makes a scratch directory, $work, and on exit stops every process whose pid the
# check added to $pids and removes $work.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap stop_scratch EXIT
}

stop_scratch() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

# wait_for_port FILE: waits up to 10 s for poetry-serve's listening line in FILE and prints
# the port it names; fails, saying so, if none comes.
wait_for_port() {
  local file=$1
  for _ in $(seq 200); do
    if grep -q '^poetry-serve listening on ' "$file" 2>/dev/null; then
      sed -n 's/^poetry-serve listening on .*:\([0-9]*\)$/\1/p' "$file"
      return 0
    fi
    sleep 0.05
  done
  echo "no listening line in $file" >&2
  return 1
}

# A free TCP port on 127.0.0.1. Needs python3 (missing_packages python3=python3).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# fetch PORT OUT: reads one poem from 127.0.0.1:PORT into OUT, giving up after 10 s.
fetch() {
  timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && cat <&3' _ "$1" > "$2"
}

# matches_one_of FILE POEM...: succeeds if FILE is byte for byte one of the POEMs.
matches_one_of() {
  local got=$1; shift
  for poem in "$@"; do
    cmp -s "$got" "$poem" && return 0
  done
  return 1
}

# fetch_from SRC PORT OUT: like fetch, but from the loopback source address SRC (127.0.0.2,
# say), so that the server can tell this client from a balancer on 127.0.0.1. Needs python3.
fetch_from() {
  timeout 10 python3 - "$@" <<'PY'
import socket, sys
src, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0)) as s, \
        open(out, "wb") as f:
    while chunk := s.recv(65536):
        f.write(chunk)
PY
}

# wait_for_tcp PORT: waits up to 5 s for something to accept on 127.0.0.1:PORT.
wait_for_tcp() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# wait_for_listen PORT: waits up to 5 s for a listening socket on 127.0.0.1:PORT, without
# connecting to it (a probe through a balancer would reach poetry-serve and count as a client).
wait_for_listen() {
  for _ in $(seq 100); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# configure FILE OUT OLD=NEW...: copies the shipped configuration FILE to OUT with each OLD
# replaced by NEW (a documented port by a free one, say). Fails if FILE lacks an OLD, so a
# check cannot drift from the file it tests.
configure() {
  local file=$1 out=$2 pair old text
  shift 2
  text=$(<"$file")
  for pair in "$@"; do
    old=${pair%%=*}
    if [[ $text != *"$old"* ]]; then
      echo "$file has no '$old'" >&2
      return 1
    fi
    text=${text//"$old"/"${pair#*=}"}
  done
  printf '%s\n' "$text" >"$out"
}

# nginx's stream module, as Debian installs it.
nginx_stream_module=/usr/lib/nginx/modules/ngx_stream_module.so

# missing_nginx_stream: prints the Debian packages nginx with its stream module still needs.
missing_nginx_stream() {
  command -v nginx >/dev/null || echo nginx
  [ -e "$nginx_stream_module" ] || echo libnginx-mod-stream
}

# run_nginx_stream CONF: runs nginx with the configuration file CONF in the foreground of a
# background job, its pid file and error log in $work, and adds its pid to $pids.
run_nginx_stream() {
  nginx -p "$work" -c "$1" -e "$work/nginx-error.log" -g "pid $work/nginx.pid; daemon off;" &
  pids+=($!)
}
