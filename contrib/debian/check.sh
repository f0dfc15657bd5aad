#!/usr/bin/env bash
# Checks the Debian package with the tools that consume it: build it (cargo-deb); lintian
# reports no error; its summary is whole and under 80 characters; then, on a Debian system
# whose PID 1 is systemd, the package's life as an administrator lives it:
# - `apt install`: the binary, the man page (man -w, and systemd-analyze verify resolving the
#   unit's Documentation=man:poetry-serve(1)), the bash completion (--de to --delay), the zsh
#   and fish ones; neither unit enabled nor started;
# - a port and no pacing set in /etc/default/poetry-serve, then `systemctl enable --now`: the
#   server listens where that file says, on the address the unit's Environment= gives, and
#   serves the installed poems byte for byte; `systemctl enable` of the socket unit too;
# - `apt remove`: the running service is stopped (SIGTERM: its stats line is logged), nothing
#   listens any more, the binary is gone, the units are masked, the edited conffile stays;
# - `apt purge`: the conffile, the links `systemctl enable` made, deb-systemd-helper's state
#   and every file of the package are gone, and no link under /etc/systemd dangles.
#
# That system is a container (podman, host network, so every byte stays on loopback): Debian
# of this host's release with systemd, procps, man-db and bash-completion, made once with
# mmdebstrap and kept as the image localhost/poetry-serve-check-systemd:<release>-<hash of that
# list> (20 to 40 s the first time). systemd runs as its PID 1, with CAP_SYS_ADMIN so that it can set up the unit's
# sandbox (DynamicUser=, ProtectSystem= and the rest); apt, dpkg, deb-systemd-helper and
# deb-systemd-invoke are Debian's own. Nothing is installed on this host but the tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(missing_packages lintian=lintian dpkg-shlibdeps=dpkg-dev podman=podman \
  runc=runc mmdebstrap=mmdebstrap python3=python3 ss=iproute2)
install_packages "${missing[@]}"
export CONTAINERS_CONF=$PWD/contrib/container/containers.conf

deb=$(bash contrib/debian/build.sh)
echo "debian: built $deb ($(stat -c %s "$deb") bytes)"

# Warnings are printed (docs/install.md says why each remains); an error fails the check.
lintian --fail-on error "$deb"

# The summary, whole on its line, and the long description straight after it.
dpkg-deb --field "$deb" Description >"${deb%.deb}.description"
summary=$(head -n 1 "${deb%.deb}.description")
(( ${#summary} < 80 )) || { echo "the summary has ${#summary} characters: $summary" >&2; exit 1; }
first=$(sed -n 's/^extended-description = """\\$//; T; n; s/^\([^ ]* [^ ]* [^ ]*\).*/\1/p' Cargo.toml)
[[ $(sed -n 2p "${deb%.deb}.description") == " $first "* ]] ||
  { echo "the long description does not follow the summary:" >&2; cat "${deb%.deb}.description" >&2; exit 1; }
[ "$(dpkg-deb --info "$deb" conffiles)" = /etc/default/poetry-serve ] ||
  { echo "/etc/default/poetry-serve is not the package's conffile" >&2; exit 1; }

scratch
name=poetry-serve-check-debian-$$
stop_container() {
  podman rm --force --time 0 "$name" >/dev/null 2>&1 || true
  stop_scratch
}
trap stop_container EXIT

# The packages the package depends on are there already: apt has no package lists inside.
release=$(. /etc/os-release && echo "$VERSION_CODENAME")
include=systemd,systemd-sysv,procps,man-db,bash-completion
image=localhost/poetry-serve-check-systemd:$release-$(md5sum <<<"$include" | cut -c 1-8)
if ! podman image exists "$image"; then
  mmdebstrap --quiet --variant=apt --include="$include" "$release" "$work/root.tar"
  podman import --quiet "$work/root.tar" "$image" >/dev/null
  rm "$work/root.tar"
fi
podman run --detach --name "$name" --network host --systemd=always --cap-add SYS_ADMIN \
  "$image" /sbin/init >/dev/null
inside() { podman exec "$name" "$@"; }
# Once systemd listens on its private socket, wait for it to finish booting.
for _ in $(seq 200); do inside test -S /run/systemd/private && break; sleep 0.05; done
state=$(timeout 60 podman exec "$name" systemctl is-system-running --wait 2>&1 || true)
case "$state" in
  running | degraded) ;;
  *) echo "systemd in the container is '$state'" >&2; exit 1 ;;
esac

podman cp "$deb" "$name:/tmp/poetry-serve.deb"
inside env DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet=2 /tmp/poetry-serve.deb \
  >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
inside dpkg-query --listfiles poetry-serve >"$work/files"

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
[ "$(inside poetry-serve --version)" = "poetry-serve $version" ] ||
  { echo "--version says $(inside poetry-serve --version), not $version" >&2; exit 1; }
[ "$(inside man -w poetry-serve)" = /usr/share/man/man1/poetry-serve.1.gz ] ||
  { echo "man -w finds $(inside man -w poetry-serve 2>&1), not the package's page" >&2; exit 1; }
# The installed completion, loaded the way an interactive bash does (bash-completion loads a
# command's completion on first use), completes --de to --delay.
completed=$(inside bash -c '
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
  inside grep -q -- 'max-per-source' "$file" || { echo "$file does not complete the options" >&2; exit 1; }
done

units=(/usr/lib/systemd/system/poetry-serve.service /usr/lib/systemd/system/poetry-serve.socket)
# With the man page installed, verify also checks that Documentation= names one that exists.
inside systemd-analyze verify "${units[@]}"
! inside grep -q /usr/local "${units[@]}" || { echo "an installed unit points into /usr/local" >&2; exit 1; }
for unit in poetry-serve.service poetry-serve.socket; do
  [ "$(inside systemctl is-enabled "$unit" || true)" = disabled ] &&
    [ "$(inside systemctl is-active "$unit" || true)" = inactive ] ||
    { echo "$unit is enabled or started on install" >&2; exit 1; }
done

# The administrator's settings, in the conffile: a free port, no pacing. The unit's own
# Environment= still gives what the file does not (the address, the limit per source).
port=$(free_port)
inside sh -c "printf 'POETRY_SERVE_PORT=%s\nPOETRY_SERVE_DELAY=0\n' $port >>/etc/default/poetry-serve"
inside systemctl enable --quiet --now poetry-serve.service ||
  { echo "the service did not start:" >&2; inside journalctl -u poetry-serve >&2; exit 1; }
# Type=notify: systemctl returned once the server said READY=1, that is, once it listened.
for poem in poems/*.txt; do
  fetch "$port" "$work/got" 2>/dev/null ||
    { echo "no poem on 127.0.0.1:$port, the port /etc/default/poetry-serve names" >&2;
      inside journalctl -u poetry-serve >&2; exit 1; }
  cmp "$work/got" "$poem" ||
    { echo "the service did not send $poem byte for byte" >&2; inside journalctl -u poetry-serve >&2; exit 1; }
done
inside journalctl --quiet --unit poetry-serve.service >"$work/journal"
grep -q "listening on 127.0.0.1:$port\$" "$work/journal" ||
  { echo "the service does not listen on 127.0.0.1:$port:" >&2; cat "$work/journal" >&2; exit 1; }
pid=$(inside systemctl show --property MainPID --value poetry-serve.service)
inside cat "/proc/$pid/environ" | tr '\0' '\n' >"$work/environ"
grep -qx POETRY_SERVE_MAX_PER_SOURCE=16 "$work/environ" ||
  { echo "the unit's default limit per source did not reach the server" >&2; exit 1; }
[ "$(inside systemctl show --property Documentation --value poetry-serve.service)" = '"man:poetry-serve(1)"' ] ||
  { echo "the unit's Documentation= is not the man page" >&2; exit 1; }
echo "debian: a value in /etc/default/poetry-serve reached the server under systemd; it served every poem"

# Enabled both ways, as an administrator might have left them; then removed.
inside systemctl enable --quiet poetry-serve.socket
find_units() { inside find /etc/systemd /var/lib/systemd -name '*poetry-serve*' | sort; }
find_units >"$work/enabled"
grep -q 'multi-user.target.wants/poetry-serve.service$' "$work/enabled" &&
  grep -q 'sockets.target.wants/poetry-serve.socket$' "$work/enabled" ||
  { echo "systemctl enable made no links:" >&2; cat "$work/enabled" >&2; exit 1; }

inside env DEBIAN_FRONTEND=noninteractive apt-get remove --yes --quiet=2 poetry-serve \
  >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
[ "$(inside systemctl is-active poetry-serve.service || true)" = inactive ] ||
  { echo "apt remove left the service running" >&2; exit 1; }
! ss -Hltn "sport = :$port" | grep -q . || { echo "something still listens on $port after apt remove" >&2; exit 1; }
inside journalctl --quiet --unit poetry-serve.service >"$work/journal"
grep -q 'poetry_serve::stats: stats' "$work/journal" ||
  { echo "the service was not stopped with SIGTERM (no stats line):" >&2; cat "$work/journal" >&2; exit 1; }
! inside test -e /usr/bin/poetry-serve || { echo "apt remove left the binary" >&2; exit 1; }
inside grep -q "^POETRY_SERVE_PORT=$port\$" /etc/default/poetry-serve ||
  { echo "apt remove did not keep the edited conffile" >&2; exit 1; }
# The units are masked while their files are gone, so that the links left cannot start them.
for unit in poetry-serve.service poetry-serve.socket; do
  [ "$(inside readlink "/etc/systemd/system/$unit")" = /dev/null ] ||
    { echo "apt remove did not mask $unit" >&2; exit 1; }
done

inside env DEBIAN_FRONTEND=noninteractive apt-get purge --yes --quiet=2 poetry-serve \
  >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
left=$(find_units)
[ -z "$left" ] || { echo "apt purge left behind: $left" >&2; exit 1; }
dangling=$(inside find /etc/systemd -xtype l)
[ -z "$dangling" ] || { echo "dangling links after apt purge: $dangling" >&2; exit 1; }
while read -r path; do
  # Shared directories (/usr/share/man/man1) stay; the package's own must go.
  if inside test -e "$path" -o -L "$path" && { ! inside test -d "$path" || [[ $path == */poetry-serve ]]; }; then
    echo "apt purge left behind: $path" >&2
    exit 1
  fi
done <"$work/files"
echo "debian: apt remove stopped the running service; apt purge left nothing, no link, no state"
