#!/usr/bin/env bash
# Builds the image localhost/poetry-serve:latest and :<version> FROM scratch: a release binary
# linked statically against glibc (so the image needs no libc), the shipped poems and the
# licence. Needs podman (Debian: podman, runc) and the Rust toolchain; pulls nothing.
#   bash contrib/container/build.sh          # prints the image's name
set -euo pipefail
cd "$(dirname "$0")/../.."

target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --quiet --target "$target" --bin poetry-serve
bin=target/$target/release/poetry-serve
# A dynamically linked binary would fail in the image with a bare "no such file or directory".
case "$(ldd "$bin" 2>&1)" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "$bin is not statically linked:" >&2; ldd "$bin" >&2; exit 1 ;;
esac

version=$(grep -m 1 '^version = ' Cargo.toml | cut -d '"' -f 2)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/poems"
cp "$bin" "$context/poetry-serve"
cp poems/*.txt poems/README.md "$context/poems/"
cp LICENSE "$context/"

podman build --quiet \
  --file contrib/container/Containerfile \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg CREATED="$(git log -1 --format=%cd --date=iso-strict 2>/dev/null || echo unknown)" \
  --tag localhost/poetry-serve:latest \
  --tag "localhost/poetry-serve:$version" \
  "$context" >/dev/null
echo "localhost/poetry-serve:$version"
