#!/usr/bin/env bash
# Scale-out recipe, tested: two poetry-serve processes on loopback behind nginx's stream (TCP)
# load balancer. Starts both and nginx, fetches poems through nginx, checks each byte for byte
# and that both instances served some, then stops everything it started.
#
# Needs Debian's nginx and libnginx-mod-stream, which it installs when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

read -r -a missing <<<"$(missing_nginx_stream | tr '\n' ' ')"
install_packages "${missing[@]}"

bin=$(build_poetry_serve)
scratch

ports=()
for n in 1 2; do
  "$bin" --port 0 --delay 0 poems/ >"$work/poet$n.out" 2>"$work/poet$n.log" &
  pids+=($!)
  ports+=("$(wait_for_port "$work/poet$n.out")")
done

front=$(free_port)
run_nginx_stream "
    upstream poets {
        server 127.0.0.1:${ports[0]};
        server 127.0.0.1:${ports[1]};
    }
    server {
        listen 127.0.0.1:$front;
        proxy_pass poets;
    }"
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$front") 2>/dev/null && break
  sleep 0.05
done

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
