#!/usr/bin/env bash
# Instructions per proxied call in the whole gateway process (HTTP server, checks, guardrails both ways,
# relay, upstream client), counted by Valgrind's callgrind while the load benchmark drives it, and the
# same for the floor proxy (the gateway's transport alone). A count is the same on every run, where
# throughput on this machine moves by several percent between runs of one build, so two builds, or a
# change and what it changes, can be compared exactly. The kernel's work is not counted.
#
#   benches/gateway-instructions.sh [CERBERUS]      (needs valgrind: apt-get install valgrind)
#
# KEEP=1 keeps callgrind's outputs and says where they are, for callgrind_annotate: the difference
# between a function's counts in gateway-300.out.1 and gateway-50.out.1, over 1000, is its share of a
# call. TARGETS="gateway" (or "floor") counts only that one. The binaries come from
# $CARGO_TARGET_DIR/release (target/release by default).
#
# Each binary is counted in two load runs, of 4 clients x 50 and 4 x 300 calls: the difference over the
# 1000 extra calls leaves out start-up and warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install valgrind)" >&2; exit 1; }
done
cargo build --quiet --release --locked -p cerberus-axum -p cerberus-example-server
cargo build --quiet --release --locked -p cerberus-benches --bin load --bin floor-proxy
bin="${CARGO_TARGET_DIR:-target}/release"
cerberus="$(realpath "${1:-$bin/cerberus}")"
floor="$(realpath "$bin/floor-proxy")"
work="$(mktemp -d)"
if [ "${KEEP:-0}" = 1 ]; then
    trap 'pkill -f "callgrind-out-file=$work" 2>/dev/null || true; echo "callgrind outputs kept in $work"' EXIT
else
    trap 'pkill -f "callgrind-out-file=$work" 2>/dev/null || true; rm -rf "$work"' EXIT
fi

# A stand-in for a binary that runs it under callgrind, in a session of its own so that the load
# benchmark's kill at the end leaves it to be dumped here. `cerberus keygen` runs as it is.
wrap() { # REAL NAME
    cat >"$work/$2" <<EOF
#!/bin/sh
if [ "\$1" = keygen ]; then exec "$1" keygen; fi
TOKIO_WORKER_THREADS=1 setsid valgrind --tool=callgrind --fair-sched=yes \\
    --callgrind-out-file="$work/\$COUNT.out" "$1" "\$@" >/dev/null 2>"$work/\$COUNT.log" &
echo \$! >"$work/\$COUNT.pid"
wait
EOF
    chmod +x "$work/$2"
}
wrap "$cerberus" cerberus
wrap "$floor" floor

# Instructions the wrapped process had run when the load ended.
count() { # TARGET CALLS
    local target=$1 calls=$2 args
    export COUNT="$target-$calls"
    if [ "$target" = gateway ]; then
        args=(--cerberus "$work/cerberus")
    else
        args=(--cerberus "$cerberus" --floor "$work/floor")
    fi
    "$bin/load" "${args[@]}" --example-server "$bin/cerberus-example-server" \
        --policy benches/load/policy.json --concurrency 4 --calls "$calls" --rounds 1 >"$work/$COUNT.load" 2>&1 \
        || { echo "error: the load run failed:" >&2; cat "$work/$COUNT.load" >&2; exit 1; }
    local pid
    pid="$(cat "$work/$COUNT.pid")"
    callgrind_control -d "$pid" >/dev/null 2>&1
    kill "$pid" 2>/dev/null || true
    # Start-up and warm-up are the same in both runs, and leave with the difference below.
    awk '/^summary:/ { print $2; exit }' "$work/$COUNT.out.1"
}

for target in ${TARGETS:-gateway floor}; do
    small=$(count "$target" 50)
    large=$(count "$target" 300)
    awk -v t="$target" -v s="$small" -v l="$large" \
        'BEGIN { printf "%-8s %7.0f instructions per proxied call\n", t, (l - s) / 1000 }'
done
