#!/usr/bin/env bash
# Instructions per proxied call spent in the guardrail pipeline (parse, every guardrail of the load
# policy, both directions), counted by Valgrind: the same on every run, so two builds can be compared
# on a noisy machine where timings cannot tell a few percent apart.
#
#   benches/instructions.sh [CALLS]        (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
calls="${1:-2000}"
for tool in valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install valgrind)" >&2; exit 1; }
done
cargo build --quiet --release --locked -p cerberus-benches --bin pipeline-instructions
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Instructions the whole run took; the run with no call is the set-up, left out below.
count() {
    valgrind --tool=callgrind --callgrind-out-file="$work/$1.out" \
        target/release/pipeline-instructions "$1" >/dev/null 2>&1
    awk '/^summary:/ { print $2; exit }' "$work/$1.out"
}
setup=$(count 0)
total=$(count "$calls")
awk -v t="$total" -v s="$setup" -v n="$calls" \
    'BEGIN { printf "%d calls: %.0f instructions per call (request and result)\n", n, (t - s) / n }'
