#!/usr/bin/env bash
# Cross-checks tapwatch's per-session TCP facts against tshark on every capture
# shipped in tests/ (scripts/tshark-crosscheck.py does the comparison).
#
# --lenient-reuse: tapwatch starts a new record when a new SYN follows a close, or
# when stray packets (a late FIN retransmission) arrive after a session was judged;
# tshark keeps one tcp.stream. The script then regroups packets by the records'
# time ranges and warns instead of failing.
#
# Two captures are expected to disagree, and are checked for that instead: their TCP
# sessions are tunnelled (GENEVE over UDP, PPPoE) and tapwatch does not decapsulate
# tunnels (their frames are counted as skipped: udp, other_ethertype).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TAPWATCH:-target/release/tapwatch}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A TUNNELLED=(
    [tests/corpus/zeek/geneve-47101.pcap]=udp
    [tests/corpus/zeek/pppoe-over-qinq.pcap]=other_ethertype
)

failed=0
checked=0
for f in tests/captures/*.pcap* tests/corpus/*/*.pcap*; do
    # Exit status 1 means a damaged capture, read up to the damage: still checked.
    "$bin" replay -q --stats "$tmp/stats.json" "$f" >"$tmp/v.jsonl" 2>"$tmp/err" || [ $? -eq 1 ]
    if [ -n "${TUNNELLED[$f]-}" ]; then
        skip=${TUNNELLED[$f]}
        if [ -s "$tmp/v.jsonl" ] || ! jq -e ".points[].skipped.$skip > 0" "$tmp/stats.json" >/dev/null; then
            echo "crosscheck-all: $f: expected no records and skipped $skip frames"
            failed=$((failed + 1))
        fi
        continue
    fi
    checked=$((checked + 1))
    if ! python3 scripts/tshark-crosscheck.py --lenient-reuse "$f" "$tmp/v.jsonl" >"$tmp/report" 2>&1; then
        echo "crosscheck-all: MISMATCH in $f:"
        grep -i mismatch "$tmp/report" | head -20
        failed=$((failed + 1))
    fi
done
echo "crosscheck-all: $checked captures agree with tshark, ${#TUNNELLED[@]} tunnelled ones checked as skipped, $failed failed"
[ "$failed" -eq 0 ]
