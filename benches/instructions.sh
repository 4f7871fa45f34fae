#!/usr/bin/env bash
# Instructions per proxied call spent in the guardrail pipeline (parse, every guardrail of the load
# policy, both directions), counted by Valgrind: the same on every run, so two builds can be compared
# on a noisy machine where timings cannot tell a few percent apart.
#
#   benches/instructions.sh [CALLS]        (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-2000}"
command -v valgrind >/dev/null || { echo "error: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --release --locked -p cerberus-benches --bin pipeline-instructions
count() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        target/release/pipeline-instructions "$1" 2>&1 | awk '/I *refs:/ {gsub(",", "", $NF); print $NF}'
}
setup=$(count 0)
total=$(count "$calls")
awk -v t="$total" -v s="$setup" -v n="$calls" \
    'BEGIN { printf "%d calls: %.0f instructions per call (request and result)\n", n, (t - s) / n }'
