#!/usr/bin/env bash
# What running on other hosts costs, measured on a test network made here (as the tests
# make one): a network namespace on a bridge (198.18.250.0/24, the benchmark range) with
# its own sshd, host `s`, runs the servers; host `here` is this machine's own network
# namespace, reached by an sshd of ours on the bridge's address, port 2222.
#   1. Client CPU per request of the generator as an agent on this machine
#      (`--client-hosts here`) against the same generator in this process
#      (`--client-hosts local`): the same machine, the same network path to the server on
#      `s`; alternated, per case and round, the ratio agent / in-process.
#   2. Start-up: the wall time of one short run with its server on `s` (the binaries
#      already there: 0 bytes copied) against the same run with a local server.
# Both "hosts" share this machine's cores: the ratios are what to read, not the figures.
# Needs root, sshd (openssh-server), iproute2, jq and bc. Builds nothing: uses
# target/release/xtask.
# Usage: sudo scripts/hosts-bench.sh [ROUNDS]   (default 3; port 2222 must be free)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
xtask=$(realpath target/release/xtask)
[ -x "$xtask" ] || { echo "error: build first: cargo build --release -p xtask" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "error: network namespaces need root" >&2; exit 2; }
command -v /usr/sbin/sshd >/dev/null || { echo "error: install openssh-server" >&2; exit 2; }
tmp=$(mktemp -d)
bridge=vbhb$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "vbhb-$$-s" 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
if ip -o addr show to 198.18.250.0/24 | grep -q .; then
  echo "error: 198.18.250.0/24 is in use here" >&2; exit 2
fi
ip link add "$bridge" type bridge
ip link set "$bridge" type bridge nf_call_iptables 0 2>/dev/null || true
ip addr add 198.18.250.1/24 dev "$bridge"
ip link set "$bridge" up
ssh-keygen -q -t ed25519 -N '' -f "$tmp/id"
cp "$tmp/id.pub" "$tmp/authorized_keys"
mkdir -p /run/sshd
: >"$tmp/known_hosts"
echo "known_hosts = \"known_hosts\"" >"$tmp/hosts.toml"
i=10
for h in s; do
  ns="vbhb-$$-$h"; addr="198.18.250.$i"
  ip netns add "$ns"
  ip link add "vbhb$$$h" type veth peer name "vbhi$$$h" netns "$ns"
  ip link set "vbhb$$$h" master "$bridge" up
  ip -n "$ns" addr add "$addr/24" dev "vbhi$$$h"
  ip -n "$ns" link set "vbhi$$$h" up
  ip -n "$ns" link set lo up
  ssh-keygen -q -t ed25519 -N '' -f "$tmp/$h-key"
  printf 'Port 22\nListenAddress %s\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n' \
    "$addr" "$tmp/$h-key" "$tmp/authorized_keys" "$tmp/$h.pid" >"$tmp/$h-sshd"
  ip netns exec "$ns" /usr/sbin/sshd -D -f "$tmp/$h-sshd" &
  pids+=($!)
  echo "$addr $(cut -d' ' -f1,2 "$tmp/$h-key.pub")" >>"$tmp/known_hosts"
  printf '\n[[host]]\nname = "%s"\naddress = "%s"\nuser = "root"\nidentity = "id"\nwork_dir = "%s/work-%s"\n' \
    "$h" "$addr" "$tmp" "$h" >>"$tmp/hosts.toml"
  i=$((i + 1))
done
# `here`: this machine, through an sshd of ours on the bridge's address.
ssh-keygen -q -t ed25519 -N '' -f "$tmp/here-key"
printf 'Port 2222\nListenAddress 198.18.250.1\nHostKey %s\nAuthorizedKeysFile %s\nPidFile %s\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n' \
  "$tmp/here-key" "$tmp/authorized_keys" "$tmp/here.pid" >"$tmp/here-sshd"
/usr/sbin/sshd -D -f "$tmp/here-sshd" &
pids+=($!)
echo "[198.18.250.1]:2222 $(cut -d' ' -f1,2 "$tmp/here-key.pub")" >>"$tmp/known_hosts"
printf '\n[[host]]\nname = "here"\naddress = "198.18.250.1"\nport = 2222\nuser = "root"\nidentity = "id"\nroles = ["client"]\nwork_dir = "%s/work-here"\n' \
  "$tmp" >>"$tmp/hosts.toml"
sleep 0.5
cat >"$tmp/suite.toml" <<'EOF'
suite = "perf"
commands = ["GET"]
value_sizes = [32]
pipelines = [1, 16]
clients = [50]
keyspaces = [10000]
repetitions = 1
warmup_seconds = 0.5
measure_seconds = 3
EOF
hosts=(--hosts "$tmp/hosts.toml" --server-hosts s)
# One run first so both hosts have the binaries (its figures are not kept).
"$xtask" bench --suite-file "$tmp/suite.toml" "${hosts[@]}" --client-hosts here --out "$tmp/warm" >/dev/null 2>&1
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cpu() { # the client host's CPU per request, per case, from a run's records
  jq -r '"\(.case) \(.metrics.client_hosts[0].client_cpu_us_per_request)"' "$1/results.jsonl"
}
: >"$tmp/cpu"
for r in $(seq "$rounds"); do
  order=(local here); [ $((r % 2)) = 0 ] && order=(here local)
  for side in "${order[@]}"; do
    "$xtask" bench --suite-file "$tmp/suite.toml" "${hosts[@]}" --client-hosts "$side" \
      --out "$tmp/run-$r-$side" >/dev/null 2>&1
    cpu "$tmp/run-$r-$side" | sed "s/^/$r $side /" >>"$tmp/cpu"
  done
done
echo "client CPU per request (µs), median of $rounds rounds; agent = --client-hosts here, in-process = local"
printf '%-32s %12s %12s %8s\n' case in-process agent ratio
for case in $(awk '{print $3}' "$tmp/cpu" | sort -u); do
  l=$(awk -v c="$case" '$2 == "local" && $3 == c {print $4}' "$tmp/cpu" | median)
  a=$(awk -v c="$case" '$2 == "here" && $3 == c {print $4}' "$tmp/cpu" | median)
  ratios=$(for r in $(seq "$rounds"); do
    x=$(awk -v c="$case" -v r="$r" '$1 == r && $2 == "local" && $3 == c {print $4}' "$tmp/cpu")
    y=$(awk -v c="$case" -v r="$r" '$1 == r && $2 == "here" && $3 == c {print $4}' "$tmp/cpu")
    awk -v x="$x" -v y="$y" 'BEGIN { print y / x }'
  done | median)
  printf '%-32s %12.3f %12.3f %8.3f\n' "$case" "$l" "$a" "$ratios"
done
# Start-up: a one-case run of 0.2 s, its server on `s` (0 bytes copied) or here.
cat >"$tmp/tiny.toml" <<'EOF'
suite = "perf"
commands = ["PING"]
value_sizes = [32]
pipelines = [1]
clients = [10]
keyspaces = [1000]
repetitions = 1
warmup_seconds = 0.05
measure_seconds = 0.2
EOF
: >"$tmp/wall"
for r in $(seq "$rounds"); do
  for side in local s; do
    start=$(date +%s.%N)
    if [ "$side" = s ]; then
      "$xtask" bench --suite-file "$tmp/tiny.toml" "${hosts[@]}" --out "$tmp/tiny-$r-$side" 2>"$tmp/tiny-$r.err" >/dev/null
      echo "copies: $(grep -c "copying" "$tmp/tiny-$r.err" || true)" >>"$tmp/copies"
    else
      "$xtask" bench --suite-file "$tmp/tiny.toml" --out "$tmp/tiny-$r-$side" >/dev/null 2>&1
    fi
    echo "$side $(echo "$(date +%s.%N) - $start" | bc)" >>"$tmp/wall"
  done
done
ls_=$(awk '$1 == "local" {print $2}' "$tmp/wall" | median)
rs_=$(awk '$1 == "s" {print $2}' "$tmp/wall" | median)
echo "one short run, wall seconds (median of $rounds): server here $ls_, server on a host $rs_ (+$(echo "$rs_ - $ls_" | bc) s); files copied on the later runs: $(grep -o '[0-9]*' "$tmp/copies" | paste -sd+ | bc)"
