#!/usr/bin/env bash
# PROXY protocol, tested with the real balancers: poetry-serve --proxy-protocol behind nginx's
# stream module (`proxy_protocol on;`, version 1) and behind HAProxy (`send-proxy-v2`), all on
# loopback, configured by contrib/proxy-protocol/nginx.conf and haproxy.cfg (their documented
# ports swapped for free ones). Clients connect from 127.0.0.2 and 127.0.0.3 while the
# balancers reach poetry-serve from 127.0.0.1; the check passes only if every poem arrives byte
# for byte and poetry-serve logs the real clients as the peers, with the balancer as `via`.
#
# Needs Debian's nginx, libnginx-mod-stream, haproxy, iproute2 (ss) and python3, which it
# installs when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(
  missing_nginx_stream
  missing_packages haproxy=haproxy ss=iproute2 python3=python3
)
install_packages "${missing[@]}"

bin=$(build_poetry_serve)
scratch

"$bin" --port 0 --delay 0 --proxy-protocol poems/ >"$work/poet.out" 2>"$work/poet.log" &
pids+=($!)
poet=$(wait_for_port "$work/poet.out")

# The shipped files as they are, as a user would run them; then with free ports put in.
nginx -t -q -c "$PWD/contrib/proxy-protocol/nginx.conf" -e "$work/nginx-test.log"
haproxy -c -q -f contrib/proxy-protocol/haproxy.cfg

nginx_port=$(free_port)
configure contrib/proxy-protocol/nginx.conf "$work/nginx.conf" \
  "127.0.0.1:10000;=127.0.0.1:$nginx_port;" "127.0.0.1:10001;=127.0.0.1:$poet;"
run_nginx_stream "$work/nginx.conf"

haproxy_port=$(free_port)
configure contrib/proxy-protocol/haproxy.cfg "$work/haproxy.cfg" \
  "127.0.0.1:10000=127.0.0.1:$haproxy_port" "127.0.0.1:10001=127.0.0.1:$poet"
haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
pids+=($!)

# Wait for the balancers without connecting through them: a probe would reach poetry-serve.
wait_for_listen "$nginx_port"
wait_for_listen "$haproxy_port"

check() { # NAME PORT SOURCE
  local name=$1 port=$2 src=$3 i
  for i in 1 2 3; do
    fetch_from "$src" "$port" "$work/$name$i"
    if ! matches_one_of "$work/$name$i" poems/*.txt; then
      echo "$name: fetch $i is not one of the poems ($(wc -c <"$work/$name$i") bytes)" >&2
      exit 1
    fi
  done
}
check nginx "$nginx_port" 127.0.0.2
check haproxy "$haproxy_port" 127.0.0.3

expect_peers() { # SOURCE COUNT
  local n
  for _ in $(seq 100); do
    n=$(grep -c "connection ended peer=$1:[0-9]* via=127.0.0.1:" "$work/poet.log" || true)
    [ "$n" -ge "$2" ] && return 0
    sleep 0.05
  done
  echo "expected $2 connections logged from $1 via 127.0.0.1, found ${n:-0}:" >&2
  cat "$work/poet.log" >&2
  exit 1
}
expect_peers 127.0.0.2 3
expect_peers 127.0.0.3 3
if grep -q 'outcome="bad_header"' "$work/poet.log"; then
  echo "a balancer's header was refused:" >&2
  cat "$work/poet.log" >&2
  exit 1
fi
echo "proxy-protocol: 3 poems through nginx (v1) and 3 through HAProxy (v2), byte for byte;" \
  "poetry-serve logged the real clients 127.0.0.2 and 127.0.0.3"
