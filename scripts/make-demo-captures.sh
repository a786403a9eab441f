#!/usr/bin/env bash
# Recreate the small demo captures in tests/captures/ with real Linux TCP stacks.
#
# Two network namespaces (twdemo-c = client, twdemo-s = server) joined by a veth
# pair, addresses from 198.18.0.0/15 (RFC 2544 benchmarking range) only:
#   twdemo-c / twc0  198.18.0.1/24  02:00:00:00:00:01
#   twdemo-s / tws0  198.18.0.2/24  02:00:00:00:00:02
# Nothing outside these namespaces is touched; both are deleted on exit.
#
# Scenarios (one client port each, in this order):
#   40001  a. clean close      -> 198.18.0.2:8080  request, ~2000-byte answer, FIN both ways
#   40002  b. reset by client  -> 198.18.0.2:8080  request, client closes with SO_LINGER {1,0} (RST)
#   40003  c. reset by server  -> 198.18.0.2:8081  request, server closes with SO_LINGER {1,0} (RST)
#   40004  d. rejected         -> 198.18.0.2:9     nothing listens: SYN answered by RST/ACK
#   40005  e. no response      -> 198.18.0.99:443  static neighbour, nobody answers; SYN + retransmissions
#
# Outputs (tests/captures/):
#   demo.pcap      tcpdump -i twc0 (Ethernet, microsecond pcap, little-endian)
#   demo-any.pcap  tcpdump -i any in the client namespace, same run (Linux cooked capture)
#   demo.pcapng    demo.pcap converted to pcapng with nanosecond timestamp resolution
#   demo-be.pcap   demo.pcap rewritten big-endian by scripts/pcap-byteswap.py
#
# Needs root, tcpdump, editcap, iproute2, python3 (scripts/setup.sh installs them).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$ROOT/tests/captures}
NS_C=twdemo-c
NS_S=twdemo-s
IF_C=twc0
IF_S=tws0
IP_C=198.18.0.1
IP_S=198.18.0.2
IP_DEAD=198.18.0.99
PY=${PYTHON:-python3}

if [ "$(id -u)" -ne 0 ]; then
    echo "make-demo-captures: must run as root (network namespaces, tcpdump)" >&2
    exit 1
fi
for cmd in ip tcpdump editcap "$PY"; do
    command -v "$cmd" >/dev/null || { echo "make-demo-captures: $cmd missing (run scripts/setup.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/twdemo.XXXXXX)
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]-}"; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -INT "$pid" 2>/dev/null || true
            sleep 0.3
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsc() { ip netns exec "$NS_C" "$@"; }
nss() { ip netns exec "$NS_S" "$@"; }

# Stale namespaces from an aborted run (only ours, by name).
for ns in "$NS_C" "$NS_S"; do
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        echo "make-demo-captures: removing stale namespace $ns"
        ip netns del "$ns"
    fi
done

echo "make-demo-captures: creating namespaces $NS_C, $NS_S"
ip netns add "$NS_C"
ip netns add "$NS_S"
for ns in "$NS_C" "$NS_S"; do
    # No IPv6 (no router solicitations, MLD or DAD chatter in the captures).
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
    # Kernels >= 6.x may retry SYNs at linear 1 s intervals first
    # (net.ipv4.tcp_syn_linear_timeouts, default 4); use the classic exponential
    # backoff (SYN at 0 s, 1 s, 3 s, 7 s ...) so scenario e is the same everywhere.
    if ip netns exec "$ns" test -e /proc/sys/net/ipv4/tcp_syn_linear_timeouts; then
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_syn_linear_timeouts=0
    fi
done
# The veth pair is created inside the client namespace: the host's namespace is never touched.
ip -n "$NS_C" link add "$IF_C" address 02:00:00:00:00:01 type veth \
    peer name "$IF_S" address 02:00:00:00:00:02 netns "$NS_S"
ip -n "$NS_C" addr add "$IP_C/24" dev "$IF_C"
ip -n "$NS_S" addr add "$IP_S/24" dev "$IF_S"
ip -n "$NS_C" link set "$IF_C" up
ip -n "$NS_S" link set "$IF_S" up
# Scenario e: a neighbour that exists at layer 2 but never answers.
ip -n "$NS_C" neigh add "$IP_DEAD" lladdr 02:00:00:00:00:99 dev "$IF_C" nud permanent

# Wait for both ends to have carrier (veth comes up as soon as both peers are up).
for _ in $(seq 50); do
    if ip -n "$NS_C" -br link show "$IF_C" | grep -q 'UP' &&
       ip -n "$NS_S" -br link show "$IF_S" | grep -q 'UP'; then
        break
    fi
    sleep 0.1
done

start_tcpdump() { # $1 = interface, $2 = output file, $3 = stderr log
    # -Z root: keep root so the file can be written wherever; -U: flush per packet.
    ip netns exec "$NS_C" tcpdump -i "$1" -U -n -Z root -w "$2" 2>"$3" &
    PIDS+=("$!")
    local pid=$!
    for _ in $(seq 100); do
        if grep -q 'listening on' "$3" 2>/dev/null; then
            echo "make-demo-captures: tcpdump on $1: $(grep 'listening on' "$3" | sed 's/^tcpdump: //')"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$3" >&2; return 1; }
        sleep 0.1
    done
    echo "make-demo-captures: tcpdump on $1 did not start" >&2
    cat "$3" >&2
    return 1
}

start_tcpdump "$IF_C" "$WORK/demo.pcap" "$WORK/tcpdump-eth.log"
TCPDUMP_ETH=${PIDS[-1]}
start_tcpdump any "$WORK/demo-any.pcap" "$WORK/tcpdump-any.log"
TCPDUMP_ANY=${PIDS[-1]}
sleep 0.5 # the "listening on" line comes right after activation; give the ring a moment

# ---------------------------------------------------------------------------
# Server: handles exactly the three connections of scenarios a, b, c, then exits.
SERVER_PY=$(cat <<'EOF'
import socket, struct, sys, time
IP = sys.argv[1]
def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((IP, port)); s.listen(8); s.settimeout(20)
    return s
l8080, l8081 = listener(8080), listener(8081)
print("ready", flush=True)

def read_request(c):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    return data

# a. clean close: answer ~2000 bytes in 4 segments, close (FIN), wait for the client's FIN.
c, _ = l8080.accept(); c.settimeout(10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
read_request(c)
body = (b"tapwatch demo payload line\n" * 80)[:1900]
resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body
for i in range(0, len(resp), 500):
    c.sendall(resp[i:i + 500]); time.sleep(0.01)
c.shutdown(socket.SHUT_WR)
while c.recv(4096):
    pass
c.close()

# b. reset by client: read the request, then wait for the client's RST.
c, _ = l8080.accept(); c.settimeout(10)
read_request(c)
try:
    while c.recv(4096):
        pass
except ConnectionResetError:
    pass
c.close()

# c. reset by server: read the request, then abort with SO_LINGER {1,0} (RST).
c, _ = l8081.accept(); c.settimeout(10)
read_request(c)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
print("done", flush=True)
EOF
)

# Client: the five scenarios in order, one source port each, short pauses between.
CLIENT_PY=$(cat <<'EOF'
import socket, struct, sys, time
IP_C, IP_S, IP_DEAD = sys.argv[1:4]
PAUSE = 0.3

def request(path):
    r = b"GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: tapwatch-demo\r\nX-Pad: " % (path.encode(), IP_S.encode())
    return r + b"x" * max(0, 96 - len(r)) + b"\r\n\r\n"   # ~100 bytes

def sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((IP_C, port))
    return s

# a. clean close
s = sock(40001); s.settimeout(10)
s.connect((IP_S, 8080))
s.sendall(request("/clean"))
got = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
s.close()
print("a clean close: received %d bytes" % len(got), flush=True)
time.sleep(PAUSE)

# b. reset by client
s = sock(40002); s.settimeout(10)
s.connect((IP_S, 8080))
s.sendall(request("/client-reset"))
time.sleep(0.1)  # let the server ACK the data
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
print("b reset by client: sent RST", flush=True)
time.sleep(PAUSE)

# c. reset by server
s = sock(40003); s.settimeout(10)
s.connect((IP_S, 8081))
s.sendall(request("/server-reset"))
try:
    data = s.recv(4096)
    print("c reset by server: unexpected recv %r" % data, flush=True)
except ConnectionResetError:
    print("c reset by server: connection reset by peer", flush=True)
s.close()
time.sleep(PAUSE)

# d. rejected: nothing listens on port 9
s = sock(40004); s.settimeout(5)
try:
    s.connect((IP_S, 9))
    print("d rejected: unexpectedly connected", flush=True)
except ConnectionRefusedError:
    print("d rejected: connection refused", flush=True)
s.close()
time.sleep(PAUSE)

# e. no response: SYN to a silent neighbour, give up after 3.5 s (SYN at 0 s, ~1 s, ~3 s)
s = sock(40005); s.settimeout(3.5)
try:
    s.connect((IP_DEAD, 443))
    print("e no response: unexpectedly connected", flush=True)
except (socket.timeout, TimeoutError):
    print("e no response: gave up after 3.5 s", flush=True)
s.close()
time.sleep(PAUSE)
EOF
)

echo "make-demo-captures: starting server in $NS_S"
nss "$PY" -c "$SERVER_PY" "$IP_S" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 100); do
    grep -q '^ready' "$WORK/server.log" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done
grep -q '^ready' "$WORK/server.log" || { echo "server did not start" >&2; cat "$WORK/server.log" >&2; exit 1; }

echo "make-demo-captures: running client scenarios in $NS_C"
# In the background + wait, so that an INT/TERM is handled at once (cleanup trap).
nsc "$PY" -c "$CLIENT_PY" "$IP_C" "$IP_S" "$IP_DEAD" >"$WORK/client.log" 2>&1 &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
client_rc=0
wait "$CLIENT_PID" || client_rc=$?
sed 's/^/make-demo-captures: client: /' "$WORK/client.log"
if [ "$client_rc" -ne 0 ]; then
    echo "make-demo-captures: client failed (exit $client_rc)" >&2
    exit 1
fi

wait "$SERVER_PID" || { echo "server failed:" >&2; cat "$WORK/server.log" >&2; exit 1; }
grep -q '^done' "$WORK/server.log" || { echo "server did not finish:" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "make-demo-captures: server finished"

sleep 0.3
for pid in "$TCPDUMP_ETH" "$TCPDUMP_ANY"; do
    kill -INT "$pid"
    wait "$pid" || true
done
echo "make-demo-captures: tcpdump (eth): $(grep -E 'packets (captured|dropped by kernel)' "$WORK/tcpdump-eth.log" | tr '\n' ' ')"
echo "make-demo-captures: tcpdump (any): $(grep -E 'packets (captured|dropped by kernel)' "$WORK/tcpdump-any.log" | tr '\n' ' ')"
if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$WORK/tcpdump-eth.log" "$WORK/tcpdump-any.log"; then
    echo "make-demo-captures: tcpdump dropped packets, aborting" >&2
    exit 1
fi

mkdir -p "$OUT"
cp "$WORK/demo.pcap" "$OUT/demo.pcap"
cp "$WORK/demo-any.pcap" "$OUT/demo-any.pcap"
# editcap 4.0 (Debian 12) has no --set-tsprecision: converting to nanosecond pcap
# first makes the pcapng writer emit an IDB with if_tsresol = 9.
editcap -F nsecpcap "$OUT/demo.pcap" "$WORK/demo-ns.pcap"
editcap -F pcapng "$WORK/demo-ns.pcap" "$OUT/demo.pcapng"
"$PY" "$HERE/pcap-byteswap.py" "$OUT/demo.pcap" "$OUT/demo-be.pcap"

for f in demo.pcap demo-any.pcap demo.pcapng demo-be.pcap; do
    echo "make-demo-captures: wrote $OUT/$f ($(stat -c %s "$OUT/$f") bytes)"
done
