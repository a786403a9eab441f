#!/usr/bin/env bash
# Live-capture benchmark (issue 5): what `tapwatch live` delivers and drops on a veth
# pair at the highest rate the generators here reach, beside AF_PACKET (tcpdump) at
# the same offered load and the generator with no reader attached (the ceiling).
#
#   scripts/bench-live.sh [PACKETS]     (root; default 2000000 packets per run)
#
# A namespace twbl-PID holds a veth pair g0 -> g1 (one queue; g1 has no address, so
# the kernel drops what no reader takes). Generators on g0:
#   tcp64   trafgen -P 1: 64-byte TCP ACK+PSH frames, source port stepping over
#           64,512 values (as many flows)
#   tcp600  the same at 600 bytes
#   tlsmix  tcpreplay --topspeed --preload-pcap --unique-ip --loop of the 21 TLS
#           captures in tests/captures/tls (handshakes, alerts, resets: 307 frames a
#           loop; --unique-ip changes the addresses every loop, so that each loop's
#           sessions are new ones, not retransmissions of the last loop's)
# Readers on g1, one at a time, for each generator:
#   none      nothing: the generator's own rate (the ceiling)
#   tapwatch  tapwatch live g1 --workers 1 (XDP driver mode, copy bind)
#   af_packet tcpdump -i g1 -Q in -n -w /dev/null
# For each run: offered = g0's tx_packets delta / the generator's time; delivered =
# what the reader got (tapwatch: packets its workers analysed; tcpdump: "packets
# captured", written to /dev/null unanalysed); dropped = offered - delivered, and
# the reader's own drop counters.
# Prints a markdown table. The namespace is removed on every exit path.
set -euo pipefail

ME=bench-live
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKETS=${1:-2000000}
NS=twbl-$$
WORK=$(mktemp -d /tmp/tapwatch-bench-live.XXXXXX)
TW=$ROOT/target/release/tapwatch

cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" -eq 0 ] || { echo "$ME: must run as root" >&2; exit 1; }
for cmd in trafgen tcpreplay tcpdump mergecap jq; do
    command -v "$cmd" >/dev/null || {
        echo "$ME: $cmd missing (apt-get install netsniff-ng tcpreplay tcpdump wireshark-common jq)" >&2
        exit 1
    }
done
[ -x "$TW" ] || (cd "$ROOT" && cargo build --release --locked -q -p tapwatch)

n() { ip netns exec "$NS" "$@"; }
ip netns add "$NS"
n ip link set lo up
n ip link add g0 type veth peer name g1
n ip link set g0 up
n ip link set g1 up
MAC0=$(n cat /sys/class/net/g0/address)
MAC1=$(n cat /sys/class/net/g1/address)
tx() { n cat /sys/class/net/g0/statistics/tx_packets; }

trafgen_conf() { # SIZE -> a trafgen config: SIZE-byte TCP frames, stepping source port
    local fill=$(($1 - 54))
    cat <<EOF
{
  eth(da=$MAC1, sa=$MAC0),
  ipv4(saddr=198.18.30.1, daddr=198.18.30.2, ttl=64),
  tcp(sp=dinc(1024, 65535), dp=443, seq=1000, ackseq=1, ack, psh),
  fill(0x41, $fill)
}
EOF
}
trafgen_conf 64 >"$WORK/tcp64.cfg"
trafgen_conf 600 >"$WORK/tcp600.cfg"
mergecap -a -F pcap -w "$WORK/tlsmix.pcap" "$ROOT"/tests/captures/tls/*.pcap
MIX_FRAMES=$(tcpdump -nr "$WORK/tlsmix.pcap" 2>/dev/null | wc -l)
LOOPS=$(( (PACKETS + MIX_FRAMES - 1) / MIX_FRAMES ))

generate() { # KIND -> runs the generator; prints "SECONDS"
    local kind=$1 t0 t1
    t0=$(date +%s.%N)
    case $kind in
        tcp64 | tcp600)
            n trafgen -P 1 -o g0 -i "$WORK/$kind.cfg" -n "$PACKETS" -q >/dev/null 2>&1 ;;
        tlsmix)
            n tcpreplay -q --topspeed --preload-pcap --unique-ip --loop "$LOOPS" -i g0 "$WORK/tlsmix.pcap" \
                >/dev/null 2>&1 ;;
    esac
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

wait_for() { # FILE TEXT
    for _ in $(seq 1 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$ME: $1 never said $2" >&2
    cat "$1" >&2
    exit 1
}

echo "| traffic | reader | offered (kpps) | delivered | dropped | reader's own drop counters |"
echo "|---|---|---|---|---|---|"
for kind in tcp64 tcp600 tlsmix; do
    for reader in none tapwatch af_packet; do
        pid=
        # Started with ip netns exec directly (not through n()), so that $! is the
        # reader itself (ip execs it) and the signal reaches it.
        case $reader in
            tapwatch)
                ip netns exec "$NS" "$TW" live g1 --workers 1 --xdp-mode driver -o /dev/null \
                    --stats "$WORK/stats.json" 2>"$WORK/tw.err" &
                pid=$!
                wait_for "$WORK/tw.err" "tapwatch: capturing" ;;
            af_packet)
                ip netns exec "$NS" tcpdump -i g1 -Q in -n -w /dev/null 2>"$WORK/td.err" &
                pid=$!
                wait_for "$WORK/td.err" "listening on" ;;
        esac
        before=$(tx)
        secs=$(generate "$kind")
        sent=$(( $(tx) - before ))
        sleep 1
        delivered=$sent
        extra="-"
        case $reader in
            tapwatch)
                kill -TERM "$pid"
                wait "$pid" || true
                delivered=$(jq '.packets_processed' "$WORK/stats.json")
                extra=$(jq -r '"xdp redirected \([.live.xdp[].counters.redirected] | add), read from the socket \([.live.sockets[].frames] | add), xsk rx_dropped \([.live.sockets[].kernel.rx_dropped] | add), fill ring empty \([.live.sockets[].kernel.rx_fill_ring_empty_descs] | add), worker ring full \(.dropped.dispatch_ring_full)"' "$WORK/stats.json") ;;
            af_packet)
                kill -INT "$pid"
                wait "$pid" || true
                delivered=$(awk '/packets captured/ {print $1}' "$WORK/td.err")
                extra="dropped by kernel $(awk '/dropped by kernel/ {print $1}' "$WORK/td.err")" ;;
            none) delivered="-" ;;
        esac
        kpps=$(echo "$sent / $secs / 1000" | bc -l)
        if [ "$delivered" = "-" ]; then
            dropped="-"
        else
            dropped=$((sent - delivered))
        fi
        printf "| %s | %s | %.0f | %s | %s | %s |\n" "$kind" "$reader" "$kpps" \
            "$delivered of $sent" "$dropped" "$extra"
    done
done
