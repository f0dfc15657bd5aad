#!/usr/bin/env bash
# Checks the Debian package with the tools that consume it: build it (cargo-deb); lintian
# reports no error; dpkg -i installs it; the installed binary, man page, bash completion and
# units work (man -w, bash completing --de to --delay, systemd-analyze verify); the installed
# unit's ExecStart, run by hand on a loopback port, serves the installed poems; dpkg -r leaves
# none of the package's files behind. Installs and removes the package system-wide: it refuses
# to run where poetry-serve is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

if [ "$(dpkg-query -W -f '${db:Status-Status}' poetry-serve 2>/dev/null)" = installed ]; then
  echo "poetry-serve's package is installed here; remove it first (dpkg -r poetry-serve)" >&2
  exit 1
fi
mapfile -t missing < <(missing_packages lintian=lintian dpkg-shlibdeps=dpkg-dev man=man-db \
  systemd-analyze=systemd python3=python3)
[ -e /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
install_packages "${missing[@]}"

deb=$(bash contrib/debian/build.sh)
echo "debian: built $deb ($(stat -c %s "$deb") bytes)"

# Warnings are printed (the README says why each remains); an error fails the check.
lintian --fail-on error "$deb"

scratch
installed=""
remove_package() {
  [ -z "$installed" ] || dpkg -r poetry-serve >/dev/null 2>&1 || true
  stop_scratch
}
trap remove_package EXIT
dpkg -i "$deb" >/dev/null
installed=yes
dpkg -L poetry-serve | sort >"$work/files"

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
[ "$(command -v poetry-serve)" = /usr/bin/poetry-serve ] || { echo "poetry-serve is not /usr/bin's" >&2; exit 1; }
[ "$(/usr/bin/poetry-serve --version)" = "poetry-serve $version" ] ||
  { echo "--version says $(/usr/bin/poetry-serve --version), not $version" >&2; exit 1; }
[ "$(man -w poetry-serve)" = /usr/share/man/man1/poetry-serve.1.gz ] ||
  { echo "man -w finds $(man -w poetry-serve 2>&1), not the package's page" >&2; exit 1; }

# The installed completion, loaded the way an interactive bash does (bash-completion loads a
# command's completion on first use), completes --de to --delay.
completed=$(bash -c '
  source /usr/share/bash-completion/bash_completion
  __load_completion poetry-serve || exit 3
  COMP_WORDS=(poetry-serve --de); COMP_CWORD=1
  COMP_LINE="poetry-serve --de"; COMP_POINT=${#COMP_LINE}
  function=$(complete -p poetry-serve | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
  "$function" poetry-serve --de poetry-serve
  printf "%s\n" "${COMPREPLY[@]}"')
[ "$completed" = --delay ] || { echo "bash completed --de to '$completed'" >&2; exit 1; }
for file in /usr/share/zsh/vendor-completions/_poetry-serve \
    /usr/share/fish/vendor_completions.d/poetry-serve.fish; do
  grep -q -- 'max-per-source' "$file" || { echo "$file does not complete the options" >&2; exit 1; }
done

units=(/usr/lib/systemd/system/poetry-serve.service /usr/lib/systemd/system/poetry-serve.socket)
systemd-analyze verify "${units[@]}"
! grep -q /usr/local "${units[@]}" || { echo "an installed unit points into /usr/local" >&2; exit 1; }

# The installed unit's ExecStart, by hand: its port replaced by a free loopback one, no pacing.
exec_start=$(sed -n 's/^ExecStart=//p' "${units[0]}")
read -r -a argv <<<"$exec_start"
port=$(free_port)
for i in "${!argv[@]}"; do
  [ "${argv[$i]}" != 10000 ] || argv[$i]=$port
done
"${argv[@]}" --delay 0 >"$work/out" 2>"$work/log" &
pids+=($!)
[ "$(wait_for_port "$work/out")" = "$port" ]
for poem in /usr/share/poetry-serve/poems/*.txt; do
  fetch "$port" "$work/got"
  cmp "$work/got" "$poem" || { echo "ExecStart did not serve $poem byte for byte" >&2; exit 1; }
done
kill "${pids[-1]}"
wait "${pids[-1]}" || true

dpkg -r poetry-serve >/dev/null
installed=""
left=()
while read -r path; do
  if [ -d "$path" ]; then
    # Shared directories (/usr/share/man/man1) stay; the package's own must go.
    case "$path" in */poetry-serve) left+=("$path") ;; esac
  elif [ -e "$path" ] || [ -L "$path" ]; then
    left+=("$path")
  fi
done <"$work/files"
[ ${#left[@]} -eq 0 ] || { echo "dpkg -r left behind: ${left[*]}" >&2; exit 1; }
echo "debian: installed, used (man, bash completion, units, ExecStart) and removed without a trace"
