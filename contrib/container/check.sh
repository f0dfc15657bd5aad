#!/usr/bin/env bash
# Checks the container image end to end with podman (runc, host network: every byte stays on
# loopback): build it; run it read-only with every capability dropped, the address and port
# set through environment variables; fetch the shipped poems byte for byte with nc; GET
# /healthz on --metrics; `podman stop` drains poems in flight and exits 0 within the grace
# period; a second run serves a poem directory mounted read-only from the host.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(missing_packages podman=podman runc=runc nc=netcat-openbsd curl=curl \
  python3=python3)
install_packages "${missing[@]}"

export CONTAINERS_CONF=$PWD/contrib/container/containers.conf
image=$(bash contrib/container/build.sh)
podman image exists localhost/poetry-serve:latest
echo "container: built $image, $(podman image inspect --format '{{.Size}}' "$image") bytes"
for label in title version revision licenses; do
  value=$(podman image inspect --format "{{index .Labels \"org.opencontainers.image.$label\"}}" "$image")
  [ -n "$value" ] && [ "$value" != unknown ] || { echo "no org.opencontainers.image.$label label" >&2; exit 1; }
done
[ "$(podman image inspect --format '{{.Config.User}}' "$image")" = 65534:65534 ] ||
  { echo "the image does not run as 65534:65534" >&2; exit 1; }

scratch
containers=()
stop_containers() {
  for name in "${containers[@]}"; do podman rm --force --time 0 "$name" >/dev/null 2>&1 || true; done
  stop_scratch
}
trap stop_containers EXIT

# Nothing in the image but the server, its poems and its licence: no shell, no libc. (Files,
# not pipes, between the tools here: under pipefail, a reader that stops early would fail the
# writer with SIGPIPE.)
created=$(podman create "$image")
containers+=("$created")
podman export --output "$work/image.tar" "$created"
files=$(tar -tf "$work/image.tar" | grep -v '/$' | sort)
expected=$( (echo usr/bin/poetry-serve usr/share/doc/poetry-serve/LICENSE \
  usr/share/poetry-serve/poems/README.md; cd poems && printf 'usr/share/poetry-serve/poems/%s\n' *.txt) |
  tr ' ' '\n' | sort)
[ "$files" = "$expected" ] || { echo "the image holds other files than expected:" >&2; echo "$files" >&2; exit 1; }

# run NAME ARGS...: starts the image detached as podman's tested path allows (runc, host
# network, limits runc may set), read-only and without capabilities.
run() {
  local name=$1; shift
  containers+=("$name")
  podman --runtime runc run --detach --name "$name" --network host --read-only --cap-drop all \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768 "$@" >/dev/null
}

# wait_for_log NAME TEXT: waits up to 10 s for TEXT in the container's output.
wait_for_log() {
  for _ in $(seq 200); do
    podman logs "$1" >"$work/logs" 2>&1
    grep -q -- "$2" "$work/logs" && return 0
    sleep 0.05
  done
  echo "no '$2' in the logs of $1:" >&2
  podman logs "$1" >&2
  return 1
}

# nc_fetch PORT OUT: one poem from 127.0.0.1:PORT with nc (-d: do not read stdin, so nc
# exits when the server closes).
nc_fetch() {
  timeout 20 nc -d 127.0.0.1 "$1" >"$2"
}

port=$(free_port)
metrics=$(free_port)
name=poetry-serve-check-$$
run "$name" \
  -e POETRY_SERVE_IFACE=127.0.0.1 -e POETRY_SERVE_PORT="$port" \
  -e POETRY_SERVE_METRICS="127.0.0.1:$metrics" -e POETRY_SERVE_DELAY=0 \
  -e POETRY_SERVE_SHUTDOWN_GRACE=5s \
  "$image"
wait_for_log "$name" "listening on 127.0.0.1:$port"

# The image serves its own copy of the shipped poems, in name order: the first connection
# gets the first.
for poem in poems/*.txt; do
  nc_fetch "$port" "$work/got"
  cmp "$work/got" "$poem" || { echo "the image did not send $poem byte for byte" >&2; exit 1; }
done

status=$(curl --silent --max-time 5 --output "$work/healthz" --write-out '%{http_code}' \
  "http://127.0.0.1:$metrics/healthz")
[ "$status" = 200 ] && [ "$(cat "$work/healthz")" = ok ] ||
  { echo "/healthz answered $status: $(cat "$work/healthz")" >&2; exit 1; }

podman stop --time 15 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "exit status $code after podman stop" >&2; podman logs "$name" >&2; exit 1; }

# A poem directory from the host, mounted read-only over nothing in the image, paced: 23
# chunks of 10 bytes, 0.1 s apart.
mkdir "$work/mine"
for i in $(seq 5); do printf 'Line %d of a poem from the host, read-only.\n' "$i"; done \
  >"$work/mine/host.txt"
chmod -R a+rX "$work"
port=$(free_port)
name=poetry-serve-check-mounted-$$
run "$name" -e POETRY_SERVE_IFACE=127.0.0.1 -e POETRY_SERVE_PORT="$port" \
  -e POETRY_SERVE_DELAY=0.1 -e POETRY_SERVE_SHUTDOWN_GRACE=10s \
  --volume "$work/mine:/poems:ro" "$image" /poems
wait_for_log "$name" "listening on 127.0.0.1:$port"
nc_fetch "$port" "$work/got"
cmp "$work/got" "$work/mine/host.txt" || { echo "the mounted poem did not arrive byte for byte" >&2; exit 1; }

# podman stop sends SIGTERM while a poem is streaming: the server stops accepting, lets that
# poem finish within --shutdown-grace, and exits 0 well before podman's 15 s would kill it.
nc_fetch "$port" "$work/in-flight" &
pids+=($!)
sleep 0.5
started=$(date +%s%N)
podman stop --time 15 "$name" >/dev/null
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
wait "${pids[-1]}"
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "exit status $code after podman stop" >&2; podman logs "$name" >&2; exit 1; }
(( took_ms < 10000 )) || { echo "podman stop took ${took_ms} ms: not within the grace" >&2; exit 1; }
cmp "$work/in-flight" "$work/mine/host.txt" ||
  { echo "the poem in flight at podman stop was not let finish" >&2; podman logs "$name" >&2; exit 1; }
podman logs "$name" >"$work/logs" 2>&1
for line in 'letting poems in flight finish streaming=1' 'poetry_serve::stats: stats'; do
  grep -q "$line" "$work/logs" ||
    { echo "no '$line' in podman logs" >&2; podman logs "$name" >&2; exit 1; }
done
echo "container: podman stop let the poem in flight finish and exited 0 in ${took_ms} ms"
echo "container: $image served its poems and a mounted one, read-only, without capabilities"
