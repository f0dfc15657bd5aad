# Helpers shared by the contrib checks. Source it; it expects `set -euo pipefail`.

# Builds the release binary once and prints its path.
build_poetry_serve() {
  cargo build --release --locked --quiet --bin poetry-serve
  echo "$PWD/target/release/poetry-serve"
}

# Installs Debian packages that are missing (as root, or through sudo).
install_packages() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# wait_for_line FILE: waits up to 10 s for poetry-serve's listening line in FILE and prints
# the port it names.
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

# A free TCP port on 127.0.0.1.
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
