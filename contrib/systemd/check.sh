#!/usr/bin/env bash
# Checks the systemd unit: systemd-analyze accepts it (when systemd-analyze is installed), its
# hardening is in place, and its ExecStart command line actually serves the shipped poems.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

unit=contrib/systemd/poetry-serve.service
bin=$(build_poetry_serve)
work=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for setting in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes \
    ReadOnlyPaths=/usr/local/share/poetry-serve 'CapabilityBoundingSet=$'; do
  grep -q "^$setting" "$unit" || { echo "$unit lacks $setting" >&2; exit 1; }
done
grep -q '^ExecStart=.* --max-per-source [1-9]' "$unit" ||
  { echo "$unit does not limit connections per source (--max-per-source)" >&2; exit 1; }
if grep -q '^InaccessiblePaths=' "$unit"; then
  echo "$unit hides paths with InaccessiblePaths=, which broke endlessh's start-up" >&2
  exit 1
fi

# The unit as installed, but pointing at this build.
sed "s#/usr/local/bin/poetry-serve#$bin#" "$unit" >"$work/poetry-serve.service"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$work/poetry-serve.service"
  systemd-analyze security --offline=true "$work/poetry-serve.service" | tail -n 1
else
  echo "systemd-analyze not installed: skipping its checks"
fi

# Run ExecStart's command line with this build, port 0, the shipped poems, and no pacing so
# that a whole poem arrives at once.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
read -r -a argv <<<"$exec_start"
argv[0]=$bin
for i in "${!argv[@]}"; do
  case "${argv[$i]}" in
    10000) argv[$i]=0 ;;
    /usr/local/share/poetry-serve/poems) argv[$i]=poems ;;
  esac
done
"${argv[@]}" --delay 0 >"$work/out" 2>"$work/log" &
pid=$!
port=$(wait_for_port "$work/out")
fetch "$port" "$work/got"
matches_one_of "$work/got" poems/*.txt || { echo "ExecStart's server sent no poem" >&2; exit 1; }
echo "systemd: unit verified; its ExecStart served $(wc -c <"$work/got") bytes of a poem"
