#!/usr/bin/env bash
# Checks the systemd units: systemd-analyze accepts them (when systemd-analyze is installed),
# the service's hardening is in place, and its ExecStart command line actually serves the
# shipped poems, both binding its own socket and handed one by socket activation
# (systemd-socket-activate, from Debian's systemd package). Needs python3 (installed when
# missing) to find a free port.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

unit=contrib/systemd/poetry-serve.service
socket_unit=contrib/systemd/poetry-serve.socket
mapfile -t missing < <(missing_packages python3=python3 systemd-socket-activate=systemd)
install_packages "${missing[@]}"
bin=$(build_poetry_serve)
scratch

for setting in Type=notify NotifyAccess=main DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
    ReadOnlyPaths=/usr/local/share/poetry-serve 'CapabilityBoundingSet=$' \
    'Documentation=man:poetry-serve(1)$' 'Environment=POETRY_SERVE_MAX_PER_SOURCE=[1-9]' \
    'EnvironmentFile=-/etc/default/poetry-serve$'; do
  grep -q "^$setting" "$unit" || { echo "$unit lacks $setting" >&2; exit 1; }
done
# The command line wins over the environment: ExecStart names the poems and nothing else, so
# that /etc/default/poetry-serve can set every option.
grep -qx 'ExecStart=/usr/local/bin/poetry-serve /usr/local/share/poetry-serve/poems' "$unit" ||
  { echo "$unit's ExecStart names more than the poems: $(grep ^ExecStart= "$unit")" >&2; exit 1; }
if grep -q '^InaccessiblePaths=' "$unit"; then
  echo "$unit hides paths with InaccessiblePaths=, which broke endlessh's start-up" >&2
  exit 1
fi

# The unit as installed, but pointing at this build.
sed "s#/usr/local/bin/poetry-serve#$bin#" "$unit" >"$work/poetry-serve.service"
cp "$socket_unit" "$work/"
grep -q '^ListenStream=' "$socket_unit" || { echo "$socket_unit listens nowhere" >&2; exit 1; }
if command -v systemd-analyze >/dev/null; then
  # --man=no: the man page Documentation= names is not installed here (contrib/debian/check.sh
  # verifies the units with it).
  systemd-analyze verify --man=no "$work/poetry-serve.service" "$work/poetry-serve.socket"
  systemd-analyze security --offline=true "$work/poetry-serve.service" | tail -n 1
else
  echo "systemd-analyze not installed: skipping its checks"
fi

# Run ExecStart's command line with this build and the shipped poems, in the environment of
# the unit's Environment= lines (no quoting in them), with port 0 and no pacing as
# /etc/default/poetry-serve could set them, so that a whole poem arrives at once. (Real
# systemd reads them in contrib/debian/check.sh.)
mapfile -t environment < <(sed -n 's/^Environment=//p' "$unit")
environment+=(POETRY_SERVE_PORT=0 POETRY_SERVE_DELAY=0)
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
read -r -a argv <<<"$exec_start"
argv[0]=$bin
argv[1]=poems
env "${environment[@]}" "${argv[@]}" >"$work/out" 2>"$work/log" &
pids+=($!)
port=$(wait_for_port "$work/out")
fetch "$port" "$work/got"
matches_one_of "$work/got" poems/*.txt || { echo "ExecStart's server sent no poem" >&2; exit 1; }

# The same command line, handed its socket the way poetry-serve.socket would hand it.
port=$(free_port)
# (systemd-socket-activate passes on only the variables named with -E, as systemd would.)
systemd-socket-activate -l "127.0.0.1:$port" "${environment[@]/#/-E}" "${argv[@]}" \
  >"$work/out2" 2>"$work/log2" &
pids+=($!)
wait_for_tcp "$port"
fetch "$port" "$work/got2"
matches_one_of "$work/got2" poems/*.txt ||
  { echo "the socket-activated server sent no poem" >&2; cat "$work/log2" >&2; exit 1; }
grep -q "sockets from systemd" "$work/log2" ||
  { echo "the server did not use the socket it was given" >&2; cat "$work/log2" >&2; exit 1; }
echo "systemd: units verified; ExecStart served a poem on its own socket and on an activated one"
