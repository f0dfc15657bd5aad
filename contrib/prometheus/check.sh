#!/usr/bin/env bash
# Metrics, tested with the real tools: poetry-serve --metrics on loopback, its page checked by
# `promtool check metrics` (and process_start_time_seconds on it, a time just past); the
# alerting rules checked by `promtool check rules` and exercised by `promtool test rules`
# (contrib/prometheus/alerts.test.yml); then a real Prometheus, configured by
# contrib/prometheus/prometheus.yml (the ports and 1 s intervals put in), scraping poetry-serve
# and itself, answering a query for one series with the number of poems fetched, and
# evaluating the rules without error and without an alert. The Grafana dashboard in
# contrib/grafana: valid JSON whose queries name only metrics the page has, each of them
# filtered by the dashboard's job and instance variables; the variables' own queries list
# poetry-serve's job and instance (not Prometheus's), and every panel's query, run against
# that Prometheus as Grafana would run it, finds poetry-serve's series and, for a job that
# does not exist, none.
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
# The process's start, in Unix seconds: a moment ago.
started=$(sed -n 's/^process_start_time_seconds \([0-9.e+]*\)$/\1/p' "$work/page")
[ -n "$started" ] && python3 -c "import sys, time; s = float(sys.argv[1]); sys.exit(not time.time() - 60 < s <= time.time())" "$started" ||
  { echo "process_start_time_seconds is '$started', not a time just past" >&2; exit 1; }

# The alerting rules: valid, and each fires on the series that should fire it and on no
# other (alerts.test.yml).
promtool check rules contrib/prometheus/alerts.yml >/dev/null
(cd contrib/prometheus && promtool test rules alerts.test.yml >/dev/null) ||
  { (cd contrib/prometheus && promtool test rules alerts.test.yml) >&2; exit 1; }
# Every metric the rules and the dashboard use is on the page.
dashboard=contrib/grafana/poetry-serve.json
jq -e '.panels | length > 0' "$dashboard" >/dev/null
for name in $( (jq -r '.panels[].targets[].expr' "$dashboard"; grep 'expr:' -A 3 contrib/prometheus/alerts.yml) |
    grep -oE '(poetry|process)_[a-z_]+' | sort -u); do
  base=${name%_bucket}
  grep -q "^$base" "$work/page" || { echo "$name is used but not on the page" >&2; exit 1; }
done
# Every metric selector of every panel is filtered by both variables.
jq -r '.panels[].targets[].expr' "$dashboard" >"$work/exprs"
unfiltered=$(grep -oE '(poetry|process)_[a-z_]+(\{[^}]*\})?' "$work/exprs" |
  grep -vE '^[a-z_]+\{job=~"\$job", instance=~"\$instance"' || true)
[ -z "$unfiltered" ] || { echo "$dashboard has selectors without the job and instance filter:" >&2; echo "$unfiltered" >&2; exit 1; }

# The shipped file as it is, as a user would run it; then with the ports and intervals put in.
promtool check config contrib/prometheus/prometheus.yml >/dev/null
prom_port=$(free_port)
configure contrib/prometheus/prometheus.yml "$work/prometheus.yml" \
  "127.0.0.1:9100=$metrics" "127.0.0.1:9090=127.0.0.1:$prom_port" \
  "scrape_interval: 15s=scrape_interval: 1s" "evaluation_interval: 15s=evaluation_interval: 1s"
cp contrib/prometheus/alerts.yml "$work/"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$prom_port/api/v1"
# query PROMQL: the result of an instant query, as JSON.
query() { curl -sf --get "$api/query" --data-urlencode "query=$1"; }
value=""
for _ in $(seq 120); do
  value=$(query poetry_connections_accepted_total | jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)
  [ "$value" = "$fetches" ] && break
  sleep 0.25
done
if [ "$value" != "$fetches" ]; then
  echo "Prometheus answered '$value' for poetry_connections_accepted_total, not $fetches" >&2
  tail -n 20 "$work/prometheus.log" >&2
  exit 1
fi

# Both targets up, and rates over a few scrapes of each, before the dashboard's queries run.
for _ in $(seq 120); do
  up=$(query 'sum(up)' | jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)
  rated=$(query 'count(rate(process_cpu_seconds_total[5m]))' | jq -r '.data.result[0].value[1] // empty' 2>/dev/null || true)
  [ "$up" = 2 ] && [ "$rated" = 2 ] && break
  sleep 0.25
done
[ "$up" = 2 ] && [ "$rated" = 2 ] || { echo "Prometheus does not scrape both targets" >&2; exit 1; }

# The rules, evaluated by Prometheus against the real series: every one healthy, none firing.
for _ in $(seq 120); do
  curl -sf "$api/rules" >"$work/rules"
  jq -e '[.data.groups[].rules[] | select(.lastEvaluation | startswith("0001"))] | length == 0' \
    "$work/rules" >/dev/null && break
  sleep 0.25
done
[ "$(jq '[.data.groups[].rules[]] | length' "$work/rules")" = 4 ] &&
  jq -e '[.data.groups[].rules[] | select(.health != "ok" or .state != "inactive")] | length == 0' \
    "$work/rules" >/dev/null ||
  { echo "Prometheus's rules are not all loaded, healthy and quiet:" >&2; jq . "$work/rules" >&2; exit 1; }

# The dashboard's variables: their queries, as Grafana's label_values runs them.
label_values() { curl -sf --get "$api/label/$1/values" --data-urlencode "match[]=$2" | jq -c .data; }
jq -r '.templating.list[] | select(.type == "query") | .definition' "$dashboard" >"$work/variables"
grep -qx 'label_values(poetry_build_info, job)' "$work/variables" &&
  grep -qx 'label_values(poetry_build_info{job=~"$job"}, instance)' "$work/variables" ||
  { echo "the dashboard's variables are not the ones checked here:" >&2; cat "$work/variables" >&2; exit 1; }
[ "$(label_values job poetry_build_info)" = '["poetry-serve"]' ] &&
  [ "$(label_values instance 'poetry_build_info{job=~"poetry-serve"}')" = "[\"$metrics\"]" ] ||
  { echo "the variables list $(label_values job poetry_build_info)" >&2; exit 1; }
# Every panel's query with the variables as Grafana fills them in: poetry-serve's series, and
# only its; with a job that does not exist, nothing.
while read -r expr; do
  for job in poetry-serve nothing; do
    filled=${expr//\$job/$job}
    filled=${filled//\$instance/$metrics}
    query "$filled" >"$work/result" || { echo "Prometheus refused: $filled" >&2; exit 1; }
    count=$(jq '.data.result | length' "$work/result")
    others=$(jq '[.data.result[].metric.job // empty | select(. != "poetry-serve")] | length' "$work/result")
    if [ "$job" = poetry-serve ] && { [ "$count" = 0 ] || [ "$others" != 0 ]; }; then
      echo "the panel query $filled found $count series, $others of another job" >&2; exit 1
    fi
    if [ "$job" = nothing ] && [ "$count" != 0 ]; then
      echo "the panel query $filled ignores the job variable: $(jq -c .data.result "$work/result")" >&2; exit 1
    fi
  done
done <"$work/exprs"
echo "prometheus: promtool accepts the page and the rules, whose tests pass; Prometheus scraped" \
  "poetry_connections_accepted_total = $value, evaluates the 4 rules quietly, and every one of" \
  "the dashboard's $(wc -l <"$work/exprs") queries keeps to the job and instance chosen"
