#!/usr/bin/env bash
# Checks the container image end to end with podman (host network: every byte stays on
# loopback), as docs/install.md, "Container image", tells a user to run it:
# - the build: the files, the user, the labels, the health check, a stripped binary; two
#   builds from scratch give the same layers and settings (and, in OCI's format, the same ID);
# - docs/install.md's own `podman run` line, put on loopback and a free port: arguments after
#   the image name add flags and the shipped poems are still served, byte for byte; the
#   image's health check, run by podman, finds the server healthy;
# - read-only, without capabilities: a health check that cannot reach the metrics port fails
#   with one line; `podman stop`, with podman's default timeout, lets a short poem in flight
#   finish, and cuts a long one at the image's grace, exiting 0 with the final stats line,
#   before podman would resort to SIGKILL; a poem directory mounted read-only is served.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(missing_packages podman=podman runc=runc nc=netcat-openbsd curl=curl \
  python3=python3 readelf=binutils ss=iproute2 git=git)
install_packages "${missing[@]}"

# The project's podman settings (runc, limits runc may set here), as docs/install.md says.
export CONTAINERS_CONF=$PWD/contrib/container/containers.conf
scratch
containers=()
stop_containers() {
  for name in "${containers[@]}"; do podman rm --force --time 0 "$name" >/dev/null 2>&1 || true; done
  stop_scratch
}
trap stop_containers EXIT

# Two builds from scratch give the same image: in OCI's format the same ID; in Docker's
# (the default, which keeps HEALTHCHECK) the same layers, settings and times, the ID aside,
# since podman 4.3 records its build container's random ID and host name there.
same() {
  podman image inspect --format '{{.Id}} {{json .RootFS.Layers}} {{json .Config}} {{.Created}}' \
    localhost/poetry-serve:latest
}
# From scratch (build.sh makes no intermediate images).
rebuild() { bash contrib/container/build.sh --no-cache "$@" 2>/dev/null; }
rebuild --format oci >/dev/null
first=$(same)
rebuild --format oci >/dev/null
[ "${first%% *}" = "$(same | cut -d ' ' -f 1)" ] ||
  { echo "two OCI builds of one tree gave two image IDs" >&2; exit 1; }
rebuild >/dev/null
first=$(same)
rebuild >/dev/null
[ "${first#* }" = "$(same | cut -d ' ' -f 2-)" ] ||
  { echo "two builds of one tree differ:" >&2; echo "$first" >&2; same >&2; exit 1; }
# The image as build.sh makes it. The images these builds left without a name go: only
# poetry-serve's (by their label), and only those nothing uses.
image=$(bash contrib/container/build.sh)
podman image prune --force --filter label=org.opencontainers.image.title=poetry-serve >/dev/null
echo "container: built $image twice, alike; $(podman image inspect --format '{{.Size}}' "$image") bytes"
created=$(podman image inspect --format '{{.Created.Unix}}' "$image")
[ "$created" = "$(git log -1 --format=%ct)" ] ||
  { echo "the image was created $created, not at the commit's time" >&2; exit 1; }

for label in title version revision licenses source url documentation; do
  value=$(podman image inspect --format "{{index .Labels \"org.opencontainers.image.$label\"}}" "$image")
  [ -n "$value" ] && [ "$value" != unknown ] || { echo "no org.opencontainers.image.$label label" >&2; exit 1; }
done
setting() { podman image inspect --format "$1" "$image"; }
[ "$(setting '{{.Config.User}}')" = 65534:65534 ] ||
  { echo "the image does not run as 65534:65534" >&2; exit 1; }
[ "$(setting '{{json .HealthCheck.Test}}')" = \
  '["CMD","/usr/bin/poetry-serve","--health-check","127.0.0.1:10001"]' ] ||
  { echo "the image's health check is $(setting '{{json .HealthCheck}}')" >&2; exit 1; }
[ "$(setting '{{.Config.Cmd}}')" = '[]' ] ||
  { echo "the image has a CMD, which arguments would replace: $(setting '{{.Config.Cmd}}')" >&2; exit 1; }

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
tar -xf "$work/image.tar" -C "$work" usr/bin/poetry-serve
readelf --section-headers --wide "$work/usr/bin/poetry-serve" >"$work/sections"
! grep -q '\.symtab' "$work/sections" || { echo "the image's binary is not stripped" >&2; exit 1; }

# run NAME ARGS...: `podman run --detach` with ARGS; podman's own complaints (no systemd to
# schedule health checks here) go to a file, shown if the run fails.
run() {
  local name=$1; shift
  containers+=("$name")
  podman run --detach --name "$name" "$@" >/dev/null 2>"$work/run.err" ||
    { cat "$work/run.err" >&2; return 1; }
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

# stop NAME: `podman stop` with podman's default timeout; fails if podman had to kill.
stop() {
  podman stop "$1" >/dev/null 2>"$work/stop.err"
  ! grep -q 'SIGKILL' "$work/stop.err" || { cat "$work/stop.err" >&2; podman logs "$1" >&2; return 1; }
  local code
  code=$(podman inspect --format '{{.State.ExitCode}}' "$1")
  [ "$code" = 0 ] || { echo "exit status $code after podman stop" >&2; podman logs "$1" >&2; return 1; }
}

# The image's metrics port is fixed (its health check probes it), and with --network host
# it is the host's.
! ss -Hltn 'sport = :10001' | grep -q . ||
  { echo "something on this host listens on port 10001, the image's metrics port" >&2; exit 1; }

# docs/install.md's `podman run` line, as written there, on loopback and a free port, in the
# background; no pacing, so that each poem comes whole at once.
line=$(sed -n '/^<!-- contrib\/container\/check.sh runs the next block -->$/,/^```$/p' docs/install.md |
  grep '^podman run ' || true)
[ "$(wc -l <<<"$line")" = 1 ] || { echo "docs/install.md has no marked podman run line" >&2; exit 1; }
port=$(free_port)
name=poetry-serve-check-$$
printf '%s\n' "$line" >"$work/line"
configure "$work/line" "$work/line" "podman run =podman run --detach --name $name " \
  "--port 10731=--iface 127.0.0.1 --port $port --delay 0"
containers+=("$name")
bash -euo pipefail "$work/line" >/dev/null 2>"$work/run.err" || { cat "$work/run.err" >&2; exit 1; }
wait_for_log "$name" "listening on 127.0.0.1:$port"
# The image serves its own copy of the shipped poems, in name order: the first connection
# gets the first.
for poem in poems/*.txt; do
  nc_fetch "$port" "$work/got"
  cmp "$work/got" "$poem" || { echo "the image did not send $poem byte for byte" >&2; exit 1; }
done
podman healthcheck run "$name" >"$work/health" 2>&1 ||
  { echo "the image's health check failed: $(cat "$work/health")" >&2; exit 1; }
[ "$(podman inspect --format '{{.State.Health.Status}}' "$name")" = healthy ] ||
  { echo "podman calls $name $(podman inspect --format '{{.State.Health.Status}}' "$name")" >&2; exit 1; }
[ "$(podman inspect --format '{{.Config.StopTimeout}}' "$name")" = 10 ] ||
  { echo "podman's default stop timeout is not the 10 s docs/install.md counts on" >&2; exit 1; }
# (--rm: podman removes it once stopped; the stops are checked below.)
podman stop "$name" >/dev/null 2>&1
echo "container: docs/install.md's podman run line served the shipped poems; healthy"

# Read-only, without capabilities, a poem directory from the host mounted read-only over
# nothing in the image, paced: 23 chunks of 10 bytes, 0.1 s apart. The metrics moved to
# another port, where the image's health check does not look.
mkdir "$work/mine"
for i in $(seq 5); do printf 'Line %d of a poem from the host, read-only.\n' "$i"; done \
  >"$work/mine/host.txt"
chmod -R a+rX "$work"
port=$(free_port)
name=poetry-serve-check-mounted-$$
run "$name" --network host --read-only --cap-drop all --volume "$work/mine:/poems:ro" \
  -e POETRY_SERVE_IFACE=127.0.0.1 -e POETRY_SERVE_PORT="$port" \
  -e POETRY_SERVE_METRICS="127.0.0.1:$(free_port)" -e POETRY_SERVE_DELAY=0.1 "$image" /poems
wait_for_log "$name" "listening on 127.0.0.1:$port"
nc_fetch "$port" "$work/got"
cmp "$work/got" "$work/mine/host.txt" || { echo "the mounted poem did not arrive byte for byte" >&2; exit 1; }

! podman healthcheck run "$name" >"$work/health" 2>&1 ||
  { echo "the health check passed with nothing on its port" >&2; exit 1; }
# One line, the binary's error line, naming the address it tried.
output=$(podman inspect --format '{{range .State.Health.Log}}{{.Output}}{{end}}' "$name")
[[ $output == "poetry-serve: error: "*"127.0.0.1:10001"* && $(wc -l <<<"$output") = 1 ]] ||
  { echo "the failed health check said: $output" >&2; exit 1; }

# podman stop sends SIGTERM while a poem is streaming: the server stops accepting, lets that
# poem finish within the image's --shutdown-grace, and exits 0.
nc_fetch "$port" "$work/in-flight" &
pids+=($!)
sleep 0.5
stop "$name"
wait "${pids[-1]}"
cmp "$work/in-flight" "$work/mine/host.txt" ||
  { echo "the poem in flight at podman stop was not let finish" >&2; podman logs "$name" >&2; exit 1; }
podman logs "$name" >"$work/logs" 2>&1
for line in 'letting poems in flight finish streaming=1' 'poetry_serve::stats: stats'; do
  grep -q "$line" "$work/logs" ||
    { echo "no '$line' in podman logs" >&2; podman logs "$name" >&2; exit 1; }
done
echo "container: read-only, no capabilities: a mounted poem; podman stop let the poem in flight finish"

# A poem that outlasts the grace (the first shipped poem, 57 chunks 0.5 s apart): podman stop
# cuts it when the image's grace is over, and the server exits 0, with its stats line, inside
# podman's default 10 s.
# Its metrics on a port of its own, and the health check told so, as docs/install.md says.
port=$(free_port)
metrics=$(free_port)
name=poetry-serve-check-long-$$
run "$name" --network host --read-only --cap-drop all \
  --health-cmd "[\"/usr/bin/poetry-serve\", \"--health-check\", \"127.0.0.1:$metrics\"]" \
  "$image" --iface 127.0.0.1 --port "$port" --metrics "127.0.0.1:$metrics" --delay 0.5
wait_for_log "$name" "listening on 127.0.0.1:$port"
podman healthcheck run "$name" >"$work/health" 2>&1 ||
  { echo "the health check given the moved port failed: $(cat "$work/health")" >&2; exit 1; }
nc_fetch "$port" "$work/cut" &
pids+=($!)
sleep 1
started=$(date +%s%N)
stop "$name"
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
wait "${pids[-1]}" || true
podman logs "$name" >"$work/logs" 2>&1
for line in 'grace period over' 'outcome="shutdown"' 'poetry_serve::stats: stats'; do
  grep -q "$line" "$work/logs" ||
    { echo "no '$line' in podman logs" >&2; podman logs "$name" >&2; exit 1; }
done
echo "container: podman stop cut a poem that outlasted the grace and exited 0 in ${took_ms} ms"
