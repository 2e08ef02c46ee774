#!/usr/bin/env bash
# Two xtask binaries' control planes side by side, in alternation, on this machine:
#   - the mem suite's preload: items per second the populator wrote (strings and hashes
#     of 16- and 512-byte values, 1,000,000 items a case), from the run's records, as
#     the ratio B/A of each case to the same case of the same round;
#   - `queue list --json` of a Valkey queue holding 1000 tasks (the whole process).
# Prints the medians and ratios. Build each binary from its commit first
# (`cargo build --release -p xtask`, then copy target/release/xtask aside).
# Usage: [PORT=N] scripts/control-plane-bench.sh A_BIN B_BIN [ROUNDS]   (default 3 rounds, port 6491)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-3}
tmp=$(mktemp -d)
port=${PORT:-6491}
# A server already on the port would be measured instead of ours: refuse.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "error: port $port is in use; choose another with PORT=N" >&2; exit 2
fi
server=$("$a" build --json | sed -n 's/.*"server":"\([^"]*\)".*/\1/p')
"$server" --port "$port" --bind 127.0.0.1 --save "" --dir "$tmp" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
queue="valkey://127.0.0.1:$port/bench"
for _ in $(seq 50); do "$a" queue --queue "$queue" list >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null || { echo "error: valkey-server did not start on port $port" >&2; exit 1; }
"$a" queue --queue "$queue" add bench --quick --commands GET --value-sizes 1..1000 >/dev/null

cat >"$tmp/preload.toml" <<'EOF'
suite = "mem"
data_types = ["string", "hash"]
value_sizes = [16, 512]
key_size = 16
field_size = 8
items = 1000000
elements_per_key = 100
expiry = [false]
EOF

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$tmp/a.preload"; : >"$tmp/b.preload"; : >"$tmp/a.list"; : >"$tmp/b.list"
for round in $(seq "$rounds"); do
  for side in a b; do
    bin=${!side}
    out="$tmp/run-$side-$round"
    "$bin" bench --suite-file "$tmp/preload.toml" --out "$out" --json >/dev/null 2>"$tmp/err" ||
      { cat "$tmp/err" >&2; exit 1; }
    # Each case's items per second, one line per round in case order: B's case against
    # A's same case of the same round gives one ratio.
    grep -ho '"populate_items_per_sec":[0-9.e+]*' "$out"/*.jsonl | cut -d: -f2 | paste -sd' ' >>"$tmp/$side.preload"
    for _ in $(seq 11); do
      start=$(date +%s%N)
      "$bin" queue --queue "$queue" list --json >/dev/null
      echo $(( ($(date +%s%N) - start) / 1000 )) >>"$tmp/$side.list"
    done
  done
  echo "round $round of $rounds done" >&2
done
ratios=$(paste -d'\n' "$tmp/a.preload" "$tmp/b.preload" | awk 'NR % 2 { n = split($0, a, " "); next }
  { split($0, b, " "); for (i = 1; i <= n; i++) print b[i] / a[i] }')
pr=$(echo "$ratios" | median); pmin=$(echo "$ratios" | sort -g | head -1); pmax=$(echo "$ratios" | sort -g | tail -1)
la=$(median <"$tmp/a.list"); lb=$(median <"$tmp/b.list")
awk -v pr="$pr" -v lo="$pmin" -v hi="$pmax" -v n="$(echo "$ratios" | wc -l)" -v la="$la" -v lb="$lb" -v m="$(wc -l <"$tmp/a.list")" 'BEGIN {
  printf "mem preload, items/s, B/A of the same case in the same round: median %.3f (min %.3f, max %.3f, %d pairs)\n", pr, lo, hi, n
  printf "queue list --json, 1000 tasks (median of %d runs): A %.1f ms  B %.1f ms  B/A %.3f\n", m, la / 1000, lb / 1000, lb / la
}'
