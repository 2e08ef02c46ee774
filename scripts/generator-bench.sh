#!/usr/bin/env bash
# Two xtask binaries' load generators side by side, in alternation, against one server:
# GET of 100,000 32-byte keys from 50 connections, closed loop at pipeline 1 and 16, the
# generator pinned to CPU 0 and the server to CPU 1 (where there are two). Prints each
# trial's client CPU per request (the generator's own figure, from getrusage), then the
# medians per binary and depth and the ratio B/A. Build each binary from its commit first
# (`cargo build --release -p xtask`, then copy target/release/xtask aside).
# Usage: [PORT=N] scripts/generator-bench.sh A_BIN B_BIN [ROUNDS]   (default 5 rounds, port 6492)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-5}
tmp=$(mktemp -d)
port=${PORT:-6492}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "error: port $port is in use; choose another with PORT=N" >&2; exit 2
fi
pin_client=(); pin_server=()
if [ "$(nproc)" -ge 2 ]; then pin_client=(taskset -c 0); pin_server=(taskset -c 1); fi
server=$("$a" build --json | sed -n 's/.*"server":"\([^"]*\)".*/\1/p')
cli=$(dirname "$server")/valkey-cli
"${pin_server[@]}" "$server" --port "$port" --bind 127.0.0.1 --save "" --dir "$tmp" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do "$cli" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null || { echo "error: valkey-server did not start on port $port" >&2; exit 1; }
"$cli" -p "$port" debug populate 100000 key 32 >/dev/null

trial() { # BIN PIPELINE REQUESTS -> client CPU µs/request
  "${pin_client[@]}" "$1" loadgen --port "$port" --command GET --keyspace 100000 \
    --value-size 32 --clients 50 --pipeline "$2" --requests "$3" --warmup 0 --json |
    sed -n 's/.*"client_cpu_us_per_request":\([0-9.]*\).*/\1/p'
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

for pipeline in 1 16; do
  requests=$((pipeline == 1 ? 300000 : 3000000))
  : >"$tmp/a$pipeline"; : >"$tmp/b$pipeline"
  for round in $(seq "$rounds"); do
    # Alternate which goes first, so drift over the run falls on both.
    if [ $((round % 2)) -eq 1 ]; then order="a b"; else order="b a"; fi
    for which in $order; do
      bin=$a; [ "$which" = b ] && bin=$b
      cpu=$(trial "$bin" "$pipeline" "$requests")
      [ -n "$cpu" ] || { echo "error: $bin loadgen printed no client_cpu_us_per_request" >&2; exit 1; }
      printf "P%s round %s %s %.3f µs/request\n" "$pipeline" "$round" "$which" "$cpu"
      echo "$cpu" >>"$tmp/$which$pipeline"
    done
  done
done
echo
echo "| pipeline | A µs/request | B µs/request | B/A |"
echo "| -------: | -----------: | -----------: | --: |"
for pipeline in 1 16; do
  ma=$(median <"$tmp/a$pipeline"); mb=$(median <"$tmp/b$pipeline")
  awk -v p="$pipeline" -v a="$ma" -v b="$mb" 'BEGIN {printf "| %s | %.3f | %.3f | %.3f |\n", p, a, b, b/a}'
done
echo "medians over $rounds rounds; client CPU per request as the generator reports it (user + system)"
