#!/usr/bin/env bash
# The detector benchmark of `cargo xtask compare` (docs/compare.md: "How well compare detects").
#
# Builds a candidate from the pinned 8.1.1 source with a deliberate slowdown in the command
# path: VB_SLOWDOWN_ITERS dependent iterations of a volatile add before every command's
# proc() in call(), read once from the environment. The patched tree lives in a scratch
# directory (never in this repository). Then it runs compares of the whole quick suite
# (20 cases; SUITE=default: the default suite's 46) in the default mode and counts, per run, the exit code, the cases called
# regressions, and the time:
#   A/A:     8.1.1 against 8.1.1: every case called a regression is a false alarm
#   planted: 8.1.1 against the slowed build (~6% on GET/32B/P16)
#   system call: 8.1.1 against a build with one getppid() before every command (kernel
#            time, a handful of instructions): its system-call count must name it
#   release pair (PAIR=1): 8.1.1 against 9.1.2, each case's default-mode verdict beside a
#            time-mode run of the same case with PAIR_MAX_TIME (default 10m), the ground truth
# Usage: scripts/detector-bench.sh [RUNS] [MAX_TIME] [CASES]   (defaults: 10 5m, every case)
# SUITE=default compares the default suite (46 cases) instead of the quick one;
# ITERS_PLANTED overrides the iteration count; MODE picks --mode (default auto); A_A_RUNS,
# PLANTED_RUNS and SYSCALL_RUNS override RUNS per scenario; DETECTOR_KEEP=DIR keeps each run's JSON
# report and stderr there.
set -euo pipefail

runs=${1:-10}
max_time=${2:-5m}
case_filter=${3:-}
# Calibrated on the 2-core VM (see docs/compare.md): one iteration costs 2.27 ns of usec_per_call and
# 5.3 instructions; GET/32B/P16 costs ~1.1 µs of server CPU and ~4,030 instructions, so 29
# iterations are ~6% of its time and ~3.8% of its instructions.
iters=${ITERS_PLANTED:-29}
mode=${MODE:-auto}
suite=${SUITE:-quick}
case $suite in
    quick) suite_flag=(--quick) ;;
    default) suite_flag=() ;;
    *) echo "SUITE=$suite: use quick or default" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --quiet --release --package xtask
scratch=$(mktemp -d /tmp/valkey-bench-detector-XXXXXX)
trap 'rm -rf "$scratch"' EXIT
# A copy: rebuilding the workspace meanwhile does not change the binary under test.
cp target/release/xtask "$scratch/xtask"
xtask=$scratch/xtask
"$xtask" build --valkey-version 8.1.1 >/dev/null

cache=${XDG_CACHE_HOME:-$HOME/.cache}/valkey-bench
tarball=$(ls "$cache"/sources/8.1.1*/valkey_8.1.1*.orig.tar.* | head -n 1)
# plant DIR BLOCK: the pinned source extracted into DIR with BLOCK (C statements) before
# every command's proc() in call(), built.
plant() {
    mkdir -p "$1"
    tar -xf "$tarball" -C "$1" --strip-components=1
    python3 - "$1/src/server.c" "$2" <<'PY'
import sys
path, block = sys.argv[1], sys.argv[2]
text = open(path).read()
call = "    c->cmd->proc(c);\n"
assert text.count(call) == 1, "call() no longer has exactly one proc() call"
open(path, "w").write(text.replace(call, block + call))
PY
    "$xtask" build --valkey-src "$1" >/dev/null
}
tree=$scratch/valkey-slow
plant "$tree" '    {
        static long vb_slowdown_iters = -1;
        static volatile unsigned long vb_slowdown_sink;
        if (vb_slowdown_iters < 0) {
            const char *e = getenv("VB_SLOWDOWN_ITERS");
            vb_slowdown_iters = e ? atol(e) : 0;
        }
        for (long vb_i = 0; vb_i < vb_slowdown_iters; vb_i++) vb_slowdown_sink += (unsigned long)vb_i;
    }
'
# The same source with VB_SYSCALLS (default 1) getppid() calls before every command.
systree=$scratch/valkey-syscall
plant "$systree" '    {
        static long vb_syscalls = -1;
        if (vb_syscalls < 0) {
            const char *e = getenv("VB_SYSCALLS");
            vb_syscalls = e ? atol(e) : 1;
        }
        for (long vb_i = 0; vb_i < vb_syscalls; vb_i++) (void)getppid();
    }
'

# run LABEL ITERS CANDIDATE COUNT: prints a table row: runs flagged (exit 1), inconclusive
# (exit 3), the cases called regressions per run, and the median time.
run() {
    local label=$1 iters=$2 candidate=$3 count=$4
    local flagged=0 open=0 times=() called=() slug filter=()
    slug=$(printf '%s' "$label" | tr -c 'a-zA-Z0-9' '_')
    if [ -n "$case_filter" ]; then filter=(--cases "$case_filter"); fi
    for i in $(seq 1 "$count"); do
        local start code=0 took n
        start=$(date +%s)
        VB_SLOWDOWN_ITERS=$iters "$xtask" compare --baseline 8.1.1 --candidate "$candidate" \
            "${suite_flag[@]}" "${filter[@]}" --mode "$mode" --max-time "$max_time" --json \
            --out "$scratch/out-$slug-$i" >"$scratch/$slug-$i.json" 2>"$scratch/$slug-$i.err" || code=$?
        took=$(($(date +%s) - start))
        times+=("$took")
        if [ -n "${DETECTOR_KEEP:-}" ]; then
            mkdir -p "$DETECTOR_KEEP"
            cp "$scratch/$slug-$i.json" "$scratch/$slug-$i.err" "$DETECTOR_KEEP/"
        fi
        case $code in
            0) ;;
            1) flagged=$((flagged + 1)) ;;
            3) open=$((open + 1)) ;;
            *) echo "$label run $i could not run (exit $code):" >&2; tail -5 "$scratch/$slug-$i.err" >&2; exit 2 ;;
        esac
        n=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(c["verdict"]=="regression" for c in r["cases"]), "of", len(r["cases"]))' "$scratch/$slug-$i.json")
        called+=("${n%% of*}")
        echo "  $label run $i: exit $code, $n cases called regressions, $took s ($(grep -m1 -o 'screen: [^;]*' "$scratch/$slug-$i.err" || true))" >&2
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '| %s | %d/%d | %d/%d | %s | %s s |\n' "$label" "$flagged" "$count" "$open" "$count" "$(IFS=,; echo "${called[*]}")" "$median"
}

echo "| scenario ($mode mode, $suite suite) | runs exiting 1 | runs exiting 3 | cases called regressions, per run | median wall time per compare |"
echo "| ---------------------------------- | -------------: | -------------: | --------------------------------- | ---------------------------: |"
[ "${A_A_RUNS:-$runs}" -gt 0 ] && run "A/A" 0 8.1.1 "${A_A_RUNS:-$runs}"
[ "${PLANTED_RUNS:-$runs}" -gt 0 ] && run "planted ~6% (${iters} iterations)" "$iters" "$tree" "${PLANTED_RUNS:-$runs}"
[ "${SYSCALL_RUNS:-$runs}" -gt 0 ] && run "planted system call (1 getppid per command)" 0 "$systree" "${SYSCALL_RUNS:-$runs}"

# The release pair: the default mode's verdict per case against a long time-mode run of the
# same case (the ground truth), and whether they agree.
if [ "${PAIR:-0}" = 1 ]; then
    "$xtask" build --valkey-version 9.1.2 >/dev/null
    filter=()
    if [ -n "$case_filter" ]; then filter=(--cases "$case_filter"); fi
    start=$(date +%s)
    code=0
    "$xtask" compare --baseline 8.1.1 --candidate 9.1.2 "${suite_flag[@]}" "${filter[@]}" --max-time "$max_time" \
        --json --out "$scratch/pair-auto" >"$scratch/pair-auto.json" 2>"$scratch/pair-auto.err" || code=$?
    echo "release pair, default mode: exit $code in $(($(date +%s) - start)) s" >&2
    start=$(date +%s)
    tcode=0
    "$xtask" compare --baseline 8.1.1 --candidate 9.1.2 "${suite_flag[@]}" "${filter[@]}" --mode time \
        --max-time "${PAIR_MAX_TIME:-10m}" --json --out "$scratch/pair-time" \
        >"$scratch/pair-time.json" 2>"$scratch/pair-time.err" || tcode=$?
    echo "release pair, time mode (truth): exit $tcode in $(($(date +%s) - start)) s" >&2
    if [ -n "${DETECTOR_KEEP:-}" ]; then
        mkdir -p "$DETECTOR_KEEP"
        cp "$scratch"/pair-*.json "$scratch"/pair-*.err "$DETECTOR_KEEP/"
    fi
    if [ "$code" = 2 ] || [ "$tcode" = 2 ]; then
        echo "a release-pair compare could not run:" >&2
        tail -5 "$scratch/pair-auto.err" "$scratch/pair-time.err" >&2
        exit 2
    fi
    python3 - "$scratch/pair-auto.json" "$scratch/pair-time.json" <<'PY'
import json, sys
auto = {c["case"]: c for c in json.load(open(sys.argv[1]))["cases"]}
truth = {c["case"]: c for c in json.load(open(sys.argv[2]))["cases"]}

def change(m):
    r = m["comparison"]["ratio"] if m else None
    return "-" if r is None else f"{(r - 1) * 100:+.1f}%"

print("| case | instructions/req | default mode | time mode (truth), ops/s | reading |")
print("| ---- | ---------------: | ------------ | ------------------------ | ------- |")
tally = {"agree": 0, "disagree": 0, "open": 0}
for name, t in truth.items():
    a = auto[name]
    instr = next((m for m in a["metrics"] if m["metric"] == "instructions_per_request"), None)
    ops = next((m for m in t["metrics"] if m["metric"] == "ops_per_sec"), None)
    decided = lambda v: v in ("regression", "improvement", "no_change")
    if decided(a["verdict"]) and decided(t["verdict"]):
        reading = "agree" if a["verdict"] == t["verdict"] else "disagree"
    else:
        # An inconclusive side claims no direction: neither right nor wrong.
        reading = "open"
    tally[reading] += 1
    print(f"| {name} | {change(instr)} | {a['verdict']} | {change(ops)} {t['verdict']} | {reading} |")
print(f"\n{tally['agree']} agree, {tally['disagree']} disagree, {tally['open']} open (either side inconclusive) of {len(truth)}")
PY
fi
