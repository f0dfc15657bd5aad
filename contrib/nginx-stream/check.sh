#!/usr/bin/env bash
# Scale-out recipe, tested: two poetry-serve processes on loopback behind nginx's stream (TCP)
# load balancer, configured by contrib/nginx-stream/nginx.conf (its documented ports swapped
# for free ones). Starts both and nginx, fetches poems through nginx, checks each byte for byte
# and that both instances served some, then stops everything it started.
#
# Needs Debian's nginx, libnginx-mod-stream and python3, which it installs when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(missing_nginx_stream; missing_packages python3=python3)
install_packages "${missing[@]}"

bin=$(build_poetry_serve)
scratch

ports=()
for n in 1 2; do
  "$bin" --port 0 --delay 0 poems/ >"$work/poet$n.out" 2>"$work/poet$n.log" &
  pids+=($!)
  ports+=("$(wait_for_port "$work/poet$n.out")")
done

# The shipped file as it is, as a user would run it; then with free ports put in.
nginx -t -q -c "$PWD/contrib/nginx-stream/nginx.conf" -e "$work/nginx-test.log"
front=$(free_port)
configure contrib/nginx-stream/nginx.conf "$work/nginx.conf" "127.0.0.1:10000;=127.0.0.1:$front;" \
  "127.0.0.1:10001;=127.0.0.1:${ports[0]};" "127.0.0.1:10002;=127.0.0.1:${ports[1]};"
run_nginx_stream "$work/nginx.conf"
wait_for_tcp "$front"

fetches=12
for i in $(seq "$fetches"); do
  fetch "$front" "$work/got$i"
  if ! matches_one_of "$work/got$i" poems/*.txt; then
    echo "fetch $i through nginx is not one of the poems ($(wc -c <"$work/got$i") bytes)" >&2
    exit 1
  fi
done
sleep 0.3 # let the last connection-ended lines reach the logs
served1=$(grep -c 'connection ended' "$work/poet1.log" || true)
served2=$(grep -c 'connection ended' "$work/poet2.log" || true)
# nginx's first probe connection above also reached a backend, so the total may be one more.
if [ "$served1" -eq 0 ] || [ "$served2" -eq 0 ] || [ $((served1 + served2)) -lt "$fetches" ]; then
  echo "expected both instances to serve: $served1 and $served2" >&2
  exit 1
fi
echo "nginx-stream: $fetches poems through nginx, byte for byte; instances served $served1 and $served2"
