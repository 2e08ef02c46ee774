#!/usr/bin/env bash
# How long `queue add` of a 1000-task campaign and `queue list --json` with the 1000
# queued take, a directory queue beside a Valkey queue on a local server of our build
# (the whole process each time). Prints the add's time and the list's median, minimum and
# maximum of 11 runs, side by side.
# Usage: scripts/queue-bench.sh [PORT]   (default 6490; the server is started and stopped here)
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-6490}
cargo build --release -q -p xtask
x=target/release/xtask
server=$($x build --json | sed -n 's/.*"server":"\([^"]*\)".*/\1/p')
# A server already on the port would be measured instead of ours: refuse.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "error: port $port is in use; give another as the first argument" >&2; exit 2
fi
tmp=$(mktemp -d)
"$server" --port "$port" --bind 127.0.0.1 --save "" --dir "$tmp" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do "$x" queue --queue "valkey://127.0.0.1:$port/bench" list >/dev/null 2>&1 && break; sleep 0.1; done
# The server answering is ours, not another on that port.
kill -0 "$pid" 2>/dev/null || { echo "error: valkey-server did not start on port $port" >&2; exit 1; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.0f", ns / 1e6 }'; }
campaign=(add bench --quick --commands GET --value-sizes 1..1000)
for q in "$tmp/dir" "valkey://127.0.0.1:$port/bench"; do
  start=$(date +%s%N)
  "$x" queue --queue "$q" "${campaign[@]}" >/dev/null
  echo "queue add of 1000 tasks to $q: $(ms $(( $(date +%s%N) - start ))) ms"
done
for q in "$tmp/dir" "valkey://127.0.0.1:$port/bench"; do
  times=()
  for _ in $(seq 11); do
    start=$(date +%s%N)
    "$x" queue --queue "$q" list --json >/dev/null
    times+=($(( ($(date +%s%N) - start) / 1000 )))
  done
  sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  kind=$([[ $q == valkey://* ]] && echo "valkey queue" || echo "directory queue")
  awk -v k="$kind" -v med="${sorted[5]}" -v lo="${sorted[0]}" -v hi="${sorted[10]}" 'BEGIN {
    printf "%-16s 1000 tasks: queue list --json median %.1f ms (min %.1f, max %.1f, 11 runs)\n",
      k, med / 1000, lo / 1000, hi / 1000 }'
done
