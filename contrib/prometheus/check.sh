#!/usr/bin/env bash
# Metrics, tested with the real tools: poetry-serve --metrics on loopback, its page checked by
# `promtool check metrics`, then a real Prometheus, configured by
# contrib/prometheus/prometheus.yml (the metrics port and a 1 s interval put in), scraping it
# and answering a query for one series with the number of poems fetched. Also checks that the
# Grafana dashboard in contrib/grafana is valid JSON whose queries name only metrics the page
# has.
#
# Needs Debian's prometheus (the server and promtool), jq, curl and python3; installs them if
# missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source contrib/lib.sh

mapfile -t missing < <(
  missing_packages prometheus=prometheus promtool=prometheus jq=jq curl=curl python3=python3
)
install_packages "${missing[@]}"

bin=$(build_poetry_serve)
scratch

"$bin" --port 0 --delay 0 --metrics 127.0.0.1:0 poems/ >"$work/out" 2>"$work/log" &
pids+=($!)
port=$(wait_for_port "$work/out")
for _ in $(seq 50); do grep -q '^poetry-serve metrics on ' "$work/out" && break; sleep 0.05; done
metrics=$(sed -n 's#^poetry-serve metrics on http://\(.*\)/metrics$#\1#p' "$work/out")
[ -n "$metrics" ] || { echo "no metrics line" >&2; cat "$work/out" >&2; exit 1; }

fetches=5
for i in $(seq "$fetches"); do fetch "$port" "$work/got$i"; done
curl -sf "http://$metrics/metrics" >"$work/page"
promtool check metrics <"$work/page"

# The dashboard: valid JSON, and every metric its queries use is on the page.
dashboard=contrib/grafana/poetry-serve.json
jq -e '.panels | length > 0' "$dashboard" >/dev/null
for name in $(jq -r '.panels[].targets[].expr' "$dashboard" |
    grep -oE '(poetry|process)_[a-z_]+' | sort -u); do
  base=${name%_bucket}
  grep -q "^$base" "$work/page" || { echo "$dashboard uses $name, not on the page" >&2; exit 1; }
done

# The shipped file as it is, as a user would run it; then with the ports put in.
promtool check config contrib/prometheus/prometheus.yml >/dev/null
prom_port=$(free_port)
configure contrib/prometheus/prometheus.yml "$work/prometheus.yml" \
  "127.0.0.1:9100=$metrics" "scrape_interval: 15s=scrape_interval: 1s"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
query="http://127.0.0.1:$prom_port/api/v1/query?query=poetry_connections_accepted_total"
value=""
for _ in $(seq 120); do
  value=$(curl -sf "$query" | jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)
  [ "$value" = "$fetches" ] && break
  sleep 0.25
done
if [ "$value" != "$fetches" ]; then
  echo "Prometheus answered '$value' for poetry_connections_accepted_total, not $fetches" >&2
  tail -n 20 "$work/prometheus.log" >&2
  exit 1
fi
echo "prometheus: promtool accepts the page; Prometheus scraped it and reports" \
  "poetry_connections_accepted_total = $value; the dashboard's metrics all exist"
