#!/usr/bin/env bash
# Checks docs/install.md's "With cargo" steps as a new user meets them: `cargo install` into
# an empty home directory, then the completion and man-page block, taken from docs/install.md
# itself and run as written with that HOME; then bash, zsh, fish and man are asked, each from
# the same empty-but-for-the-steps home, whether they find what the steps installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(missing_packages zsh=zsh fish=fish man=man-db)
[ -e /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
install_packages "${missing[@]}"

scratch
home=$work/home
mkdir "$home"
# `cargo install --path . --locked`, as docs/install.md says, into what would be this user's
# ~/.cargo; cargo itself keeps its own home (registry, toolchain), and reuses target/.
CARGO_TARGET_DIR=$PWD/target cargo install --quiet --path . --locked --root "$home/.cargo"

# The block docs/install.md marks, exactly as it stands there.
block=$(sed -n '/^<!-- contrib\/install\/check.sh runs the next block -->$/,/^```$/p' docs/install.md |
  sed '1,2d;$d')
[ -n "$block" ] || { echo "docs/install.md has no marked install block" >&2; exit 1; }
as_user() {
  env -i HOME="$home" PATH="$home/.cargo/bin:/usr/local/bin:/usr/bin:/bin" TERM=dumb "$@"
}
as_user bash -euo pipefail -c "$block"
# Twice, as a user who follows the steps again after an upgrade: nothing may pile up.
as_user bash -euo pipefail -c "$block"
[ "$(grep -c poetry-serve "$home/.bashrc")" = 1 ] && [ "$(grep -c zfunc "$home/.zshrc")" = 1 ] ||
  { echo "running the steps twice added lines twice" >&2; exit 1; }

# man: found through ~/.cargo/bin on PATH (man-db's rule), no MANPATH needed.
[ "$(as_user man -w poetry-serve)" = "$home/.cargo/share/man/man1/poetry-serve.1" ] ||
  { echo "man -w finds $(as_user man -w poetry-serve 2>&1)" >&2; exit 1; }

# bash_complete SETUP: what bash completes for `poetry-serve --de` after SETUP.
bash_complete() {
  as_user bash -c "$1"'
    COMP_WORDS=(poetry-serve --de); COMP_CWORD=1
    COMP_LINE="poetry-serve --de"; COMP_POINT=${#COMP_LINE}
    function=$(complete -p poetry-serve | sed -n "s/.* -F \([^ ]*\) .*/\1/p")
    "$function" poetry-serve --de poetry-serve
    printf "%s\n" "${COMPREPLY[@]}"'
}
# An interactive bash reads ~/.bashrc; with the bash-completion package, its loader finds the
# script in the per-user directory on first use.
[ "$(bash_complete 'source ~/.bashrc;')" = --delay ] ||
  { echo "bash, through ~/.bashrc, does not complete --de" >&2; exit 1; }
[ "$(bash_complete 'source /usr/share/bash-completion/bash_completion; __load_completion poetry-serve;')" = --delay ] ||
  { echo "bash-completion's loader does not find the per-user script" >&2; exit 1; }

# zsh: an interactive zsh's compinit registers the completion function for the command.
[ "$(as_user zsh -i -c 'print -r -- ${_comps[poetry-serve]}' 2>/dev/null)" = _poetry-serve ] ||
  { echo "zsh does not know _poetry-serve" >&2; exit 1; }

# fish completes --de to --delay from ~/.config/fish/completions.
[ "$(as_user fish -c 'complete --do-complete "poetry-serve --de"' | cut -f1)" = --delay ] ||
  { echo "fish does not complete --de" >&2; exit 1; }
echo "install: docs/install.md's steps work from an empty home: man, bash (both ways), zsh, fish"
