#!/usr/bin/env bash
# The detector benchmark of `cargo xtask compare` (README: "How well compare detects").
#
# Builds a candidate from the pinned 8.1.1 source with a deliberate slowdown in the command
# path: VB_SLOWDOWN_ITERS dependent iterations of a volatile add before every command's
# proc() in call(), read once from the environment. The patched tree lives in a scratch
# directory (never in this repository). Then it runs compares and counts how often each
# is flagged (exit code 1) and how often it ends inconclusive (exit code 3):
#   time mode:         A/A (8.1.1 vs 8.1.1), 3% and 5% slowdowns
#   instructions mode: A/A and a 1% slowdown
# Usage: scripts/detector-bench.sh [RUNS] [MAX_TIME] [CASE]   (defaults: 10 5m GET/32B/P16)
# ITERS_3PCT, ITERS_5PCT, ITERS_1PCT_INSTR override the calibrated iteration counts;
# INSTR_RUNS and TIME_RUNS override RUNS per mode.
set -euo pipefail

runs=${1:-10}
max_time=${2:-5m}
case_filter=${3:-GET/32B/P16}
# Calibrated on the 2-core VM (see README): one iteration costs 2.27 ns of usec_per_call and
# 5.3 instructions; GET/32B/P16 costs ~1.1 µs of server CPU and ~4,070 instructions.
iters_3=${ITERS_3PCT:-15}
iters_5=${ITERS_5PCT:-24}
iters_1i=${ITERS_1PCT_INSTR:-8}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet --release --package xtask
xtask=target/release/xtask
"$xtask" build --valkey-version 8.1.1 >/dev/null

cache=${XDG_CACHE_HOME:-$HOME/.cache}/valkey-bench
tarball=$(ls "$cache"/sources/8.1.1*/valkey_8.1.1*.orig.tar.* | head -n 1)
scratch=$(mktemp -d /tmp/valkey-bench-detector-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/valkey-slow
mkdir -p "$tree"
tar -xf "$tarball" -C "$tree" --strip-components=1
python3 - "$tree/src/server.c" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
call = "    c->cmd->proc(c);\n"
assert text.count(call) == 1, "call() no longer has exactly one proc() call"
slow = """    {
        static long vb_slowdown_iters = -1;
        static volatile unsigned long vb_slowdown_sink;
        if (vb_slowdown_iters < 0) {
            const char *e = getenv("VB_SLOWDOWN_ITERS");
            vb_slowdown_iters = e ? atol(e) : 0;
        }
        for (long vb_i = 0; vb_i < vb_slowdown_iters; vb_i++) vb_slowdown_sink += (unsigned long)vb_i;
    }
"""
open(path, "w").write(text.replace(call, slow + call))
PY
"$xtask" build --valkey-src "$tree" >/dev/null

# run LABEL ITERS CANDIDATE [compare flags...]: prints "LABEL flagged/runs, median seconds".
run() {
    local label=$1 iters=$2 candidate=$3 count=$4
    shift 4
    local flagged=0 open=0 times=() slug
    slug=$(printf '%s' "$label" | tr -c 'a-zA-Z0-9' '_')
    for i in $(seq 1 "$count"); do
        local start code=0 took
        start=$(date +%s)
        VB_SLOWDOWN_ITERS=$iters "$xtask" compare --baseline 8.1.1 --candidate "$candidate" \
            --cases "$case_filter" --max-time "$max_time" --out "$scratch/out-$slug-$i" \
            "$@" >"$scratch/$slug-$i.txt" 2>"$scratch/$slug-$i.err" || code=$?
        took=$(($(date +%s) - start))
        times+=("$took")
        case $code in
            0) ;;
            1) flagged=$((flagged + 1)) ;;
            3) open=$((open + 1)) ;;
            *) echo "$label run $i could not run (exit $code):" >&2; tail -5 "$scratch/$slug-$i.err" >&2; exit 2 ;;
        esac
        echo "  $label run $i: exit $code, $(grep -m1 -E '\| (regression|no change|inconclusive|improvement) \|' "$scratch/$slug-$i.txt" | tr -s ' ' | cut -c1-200), $took s" >&2
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '| %s | %d/%d | %d/%d | %s s |\n' "$label" "$flagged" "$count" "$open" "$count" "$median"
}

echo "| scenario | flagged as regression (exit 1) | inconclusive (exit 3) | median wall time per compare |"
echo "| -------- | -----------------------------: | --------------------: | ---------------------------: |"
instr_runs=${INSTR_RUNS:-$runs}
time_runs=${TIME_RUNS:-$runs}
if [ "$instr_runs" -gt 0 ]; then
    run "instructions A/A" 0 8.1.1 "$instr_runs" --mode instructions
    run "instructions 1% (${iters_1i} iterations)" "$iters_1i" "$tree" "$instr_runs" --mode instructions
fi
run "time A/A" 0 8.1.1 "$time_runs"
run "time 3% (${iters_3} iterations)" "$iters_3" "$tree" "$time_runs"
run "time 5% (${iters_5} iterations)" "$iters_5" "$tree" "$time_runs"
