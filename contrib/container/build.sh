#!/usr/bin/env bash
# Builds the image localhost/poetry-serve:latest and :<version> FROM scratch: a release binary
# linked statically against glibc (so the image needs no libc) and stripped, the shipped poems
# and the licence. Needs podman (Debian: podman, runc) and the Rust toolchain; pulls nothing.
# Arguments go to `podman build` (--no-cache, say).
#   bash contrib/container/build.sh          # prints the image's name
#
# Rebuilding an unchanged commit gives the same image, ID and all: every time in it (the
# image's creation, its history, its files' mtimes, the created label) is the commit's
# (podman build --timestamp), the binary is the one cargo built for it, and the context holds
# the same files. contrib/container/check.sh builds twice with --no-cache and compares.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=x86_64-unknown-linux-gnu
# Stripped (symbols go: about a fifth of the binary); a panic's message keeps its file and line.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_STRIP=symbols \
  cargo build --release --locked --quiet --target "$target" --bin poetry-serve
bin=target/$target/release/poetry-serve
# A dynamically linked binary would fail in the image with a bare "no such file or directory".
case "$(ldd "$bin" 2>&1)" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "$bin is not statically linked:" >&2; ldd "$bin" >&2; exit 1 ;;
esac

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, or SOURCE_DATE_EPOCH outside a git checkout (a source tarball, say).
epoch=$(git log -1 --format=%ct 2>/dev/null || echo "${SOURCE_DATE_EPOCH:-0}")
# Where the source lives: Cargo.toml's repository, else the checkout's origin remote.
source=$(grep -m 1 '^repository = ' Cargo.toml | cut -d '"' -f 2 || true)
[ -n "$source" ] || source=$(git remote get-url origin 2>/dev/null || echo unknown)
documentation=unknown
[ "$source" = unknown ] || documentation="${source%.git}/blob/$revision/docs/install.md"

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/poems"
cp "$bin" "$context/poetry-serve"
cp poems/*.txt poems/README.md "$context/poems/"
cp LICENSE "$context/"

# Docker's format: OCI image configs have no HEALTHCHECK, and podman drops it from them. No
# layer cache (the build takes a second anyway): podman 4.3's handed back, after a commit that
# changed no file of the image, the image of the commit before, with its time.
podman build --quiet --format docker --layers=false --timestamp "$epoch" \
  --file contrib/container/Containerfile \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$(date --utc --date "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg SOURCE="$source" \
  --build-arg DOCUMENTATION="$documentation" \
  --tag localhost/poetry-serve:latest \
  --tag "localhost/poetry-serve:$version" \
  "$@" "$context" >/dev/null
echo "localhost/poetry-serve:$version"
