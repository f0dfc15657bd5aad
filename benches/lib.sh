# Shell helpers shared by benches/profile and benches/compare (beside contrib/lib.sh, which
# they source first).

# rate_poem FILE: writes the rate scenario's poem, 1.5 KB of letters and newlines.
rate_poem() {
  awk 'BEGIN { s = "abcdefghijklmnopqrstuvwxyz\n"; for (i = 0; i < 1500; i++) printf "%s", substr(s, i % 27 + 1, 1) }' \
    >"$1"
}

# switches PID: the context switches and CPU time (the scheduler's count, ns) of every thread
# of PID so far, summed by kind of thread (worker-N counted as worker-*): "thread voluntary
# involuntary nanoseconds" lines.
switches() {
  for task in /proc/"$1"/task/*; do
    printf '%s %s %s %s\n' "$(sed 's/-[0-9]*$/-*/' "$task/comm")" \
      "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$task/status")" \
      "$(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$task/status")" \
      "$(cut -d' ' -f1 "$task/schedstat")"
  done | awk '{v[$1] += $2; n[$1] += $3; c[$1] += $4} END {for (t in v) print t, v[t], n[t], c[t]}' \
    | sort
}
