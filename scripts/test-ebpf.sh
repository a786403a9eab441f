#!/usr/bin/env bash
# Check, for real, that the kernel's verifier accepts the committed XDP program
# (ebpf/xdp_tapwatch.o) and that it does what ebpf/README.md says, counters included.
#
# Two network namespaces, created here, joined by one veth pair created inside them
# (nothing is created, changed or filtered in the root namespace; eth0, the host's
# routes and firewall are never touched):
#   twxdp-PID-a  (sender)  twxa0  198.18.7.1/24  02:00:00:00:07:01
#   twxdp-PID-b  (sensor)  twxb0  198.18.7.2/24  02:00:00:00:07:02   <- XDP program
# IPv6 is disabled in both namespaces and the neighbour entries are static, so the
# only packets the program sees are the ones this script sends. Both namespaces (and
# with them the veth pair, the program and its maps) and every process started here
# are removed on exit, on error and on SIGINT/SIGTERM. An existing namespace of the
# same name is an error, never reused or removed.
#
# What is checked, in generic (SKB) mode (ip link set ... xdpgeneric obj ... sec xdp):
#   - the verifier accepts it and it attaches; its maps (config, xsks, counters) have
#     the types and sizes of ebpf/xdp_tapwatch.h; it is GPL-compatible and has BTF;
#   - --not-matched pass: UDP and TCP (whose redirect finds no socket, as no AF_XDP
#     socket exists here, and falls back) reach the other namespace;
#   - --not-matched drop: neither does; the TCP SYNs are counted as
#     redirect_failed_no_socket, the UDP as not_tcp;
#   - a port filter: TCP on a filtered port passes as port_filtered, TCP on a kept
#     port as redirect_failed_no_socket;
#   - ~40 hand-made frames (VLAN and QinQ, a third tag, ARP, IPv4 options, fragments,
#     IPv6 extension chains, AH, truncated and malformed headers, source and
#     destination port matches) sent with an AF_PACKET socket: every counter's
#     change must be exactly what the program's rules give;
# then the same frames and a TCP exchange in driver (native) mode, and the verifier's
# statistics (bpftool -d prog load, in a private mount namespace with its own bpffs).
# Every counter change also obeys: redirected + passed + dropped = packets seen, and
# passed + dropped = the sum of the reasons. Not checked here: a successful redirect
# (that needs an AF_XDP socket, the Rust side's test) and a queue >= 64.
#
# IPv6 frames use 2001:2::/48 (RFC 5180, benchmarking) inside the headers only; no
# IPv6 address is configured anywhere.
#
# Usage: scripts/test-ebpf.sh   (as root; installs iproute2, bpftool and python3 from
# Debian's packages if missing; does not need clang: it tests the committed object)
# Prints one line per check and ends with "test-ebpf: N passed, M failed".
set -euo pipefail

ME=test-ebpf
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OBJ=ebpf/xdp_tapwatch.o
HDR=ebpf/xdp_tapwatch.h

if [ "$(id -u)" -ne 0 ]; then
    echo "$ME: must run as root (network namespaces, XDP, bpftool)" >&2
    exit 1
fi
if [ ! -f "$OBJ" ]; then
    echo "$ME: $OBJ is missing; build it with scripts/build-ebpf.sh" >&2
    exit 1
fi

install_deps() {
    local missing=() cmd
    declare -A pkg_of=([ip]=iproute2 [bpftool]=bpftool [python3]=python3 [unshare]=util-linux)
    for cmd in ip bpftool python3 unshare; do
        command -v "$cmd" >/dev/null 2>&1 && continue
        missing+=("${pkg_of[$cmd]}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "$ME: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}
install_deps

NS_A=twxdp-$$-a NS_B=twxdp-$$-b
IF_A=twxa0 IF_B=twxb0
MAC_A=02:00:00:00:07:01 MAC_B=02:00:00:00:07:02
IP_A=198.18.7.1 IP_B=198.18.7.2
PORT_KEPT=8080 PORT_OTHER=9090 PORT_UDP=9999

WORK=$(mktemp -d /tmp/twxdp.XXXXXX)
CREATED_NS=()
PIDS=()
RESULTS=$WORK/results
: >"$RESULTS"

# shellcheck disable=SC2317  # reached through the traps below
cleanup() {
    local rc=$? pid ns
    trap - EXIT INT TERM
    for pid in "${PIDS[@]-}"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${CREATED_NS[@]-}"; do
        [ -n "$ns" ] || continue
        ip netns del "$ns" 2>/dev/null || echo "$ME: could not delete namespace $ns" >&2
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# The Python helper: traffic (UDP, TCP echo), hand-made frames, counter arithmetic.
cat >"$WORK/peer.py" <<'PY'
import json, os, re, select, socket, struct, subprocess, sys, time

def counter_names(header):
    """Counter names by index, from the TW_CNT_* enum of xdp_tapwatch.h."""
    found = {}
    for name, idx in re.findall(r'TW_CNT_(\w+)\s*=\s*(\d+)', open(header).read()):
        if name != 'MAX':
            found[int(idx)] = name.lower()
    names = [found[i] for i in range(len(found))]
    return names

def read_counters(map_id, path):
    """bpftool's dump of the per-CPU counters, summed over CPUs, as {index: total}."""
    out = subprocess.run(['bpftool', '-j', 'map', 'dump', 'id', str(map_id)],
                         check=True, capture_output=True, text=True).stdout
    sums = {}
    for e in json.loads(out):
        key = int.from_bytes(bytes(int(x, 16) for x in e['key']), sys.byteorder)
        sums[key] = sum(int.from_bytes(bytes(int(x, 16) for x in c['value']), sys.byteorder)
                        for c in e['values'])
    json.dump(sums, open(path, 'w'))

def config_value(action, ports):
    """The 20 bytes of struct tw_config, as bpftool's hex arguments."""
    ports = [int(p) for p in ports] + [0] * (8 - len(ports))
    raw = struct.pack('=I8H', {'pass': 2, 'drop': 1}[action], *ports)
    print(' '.join('0x%02x' % b for b in raw))

# --- traffic ---------------------------------------------------------------

def udp_recv(ip, port, ready, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, int(port)))
    open(ready, 'w').close()
    n, deadline = 0, time.monotonic() + float(seconds)
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        s.recv(2048)
        n += 1
    print(n)

def udp_send(ip, port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(count)):
        s.sendto(b'tapwatch %d' % i, (ip, int(port)))

def serve(ip, ready, *ports):
    """TCP echo of one line per connection, on every port, until killed."""
    ls = []
    for p in ports:
        l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((ip, int(p)))
        l.listen(16)
        ls.append(l)
    open(ready, 'w').close()
    while True:
        for l in select.select(ls, [], [])[0]:
            c, _ = l.accept()
            c.settimeout(3)
            try:
                c.sendall(c.recv(100))
            except OSError:
                pass
            c.close()

def tcp_echo(ip, port, timeout):
    """Exit 0 when the server echoed our line, 1 otherwise."""
    try:
        c = socket.create_connection((ip, int(port)), timeout=float(timeout))
        c.sendall(b'tapwatch\n')
        ok = c.recv(100) == b'tapwatch\n'
        c.close()
    except OSError as e:
        print('tcp %s:%s: %s' % (ip, port, e))
        sys.exit(1)
    print('tcp %s:%s: echoed' % (ip, port))
    sys.exit(0 if ok else 1)

# --- hand-made frames -----------------------------------------------------

MAC_A = bytes.fromhex('020000000701')
MAC_B = bytes.fromhex('020000000702')
# Sent to the sensor's MAC address but to an IPv4 address nobody has: when a frame is
# passed, the sensor's stack drops it (no forwarding) and answers nothing, so nothing
# comes back through the program to spoil the exact counts.
V4_A, V4_B = socket.inet_aton('198.18.7.1'), socket.inet_aton('198.18.7.99')
V6_A = socket.inet_pton(socket.AF_INET6, '2001:2::1')
V6_B = socket.inet_pton(socket.AF_INET6, '2001:2::2')

def eth(etype, payload, tags=()):
    b = MAC_B + MAC_A
    for tpid, vid in tags:
        b += struct.pack('!HH', tpid, vid)
    return b + struct.pack('!H', etype) + payload

def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def tcp(sport, dport, doff=5):
    opts = b'\x01' * (4 * max(doff - 5, 0))
    return struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, doff << 4, 0x02, 65535, 0, 0) + opts

def udp(sport=40000, dport=53):
    return struct.pack('!HHHH', sport, dport, 16, 0) + b'tapwatch'

def ipv4(proto, payload, ihl=5, frag=0x4000, version=4):
    opts = b'\x01' * (4 * max(ihl - 5, 0))  # NOP options
    hlen = 20 + len(opts)
    h = struct.pack('!BBHHHBBH4s4s', version << 4 | ihl, 0, hlen + len(payload), 1, frag,
                    64, proto, 0, V4_A, V4_B) + opts
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload

def ipv6(nh, payload):
    return struct.pack('!IHBB16s16s', 6 << 28, len(payload), nh, 64, V6_A, V6_B) + payload

def opts6(nh, units=0):
    """Hop-by-hop, routing or destination options header: 8 * (units + 1) bytes."""
    body = b'\x01\x04\0\0\0\0' + b'\0' * (8 * units)  # PadN
    return bytes([nh, units]) + body

def ah6(nh):
    """AH with a 12-byte ICV: 24 bytes, payload length (24 / 4) - 2 = 4."""
    return struct.pack('!BBHII', nh, 4, 0, 0x100, 1) + b'\0' * 12

def frag6(nh, offset, more):
    return struct.pack('!BBHI', nh, 0, offset << 3 | more, 0x1234)

TCP, UDP, ICMP, ESP, NONXT = 6, 17, 1, 50, 59
HOP, RT, FRAG, AH, DST = 0, 43, 44, 51, 60
ETH_IP, ETH_IP6, ETH_ARP, ETH_LLDP = 0x0800, 0x86dd, 0x0806, 0x88cc
Q, AD, OLDQ = 0x8100, 0x88a8, 0x9100
K = 8080  # kept by the filter (with 443); 9999 is not

def frames():
    """(description, frame, reason) with reason the counter for a TCP packet we want
    ('match') or the reason the program gives for not redirecting."""
    arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, MAC_A, V4_A, b'\0' * 6, V4_B)
    return [
        ('ipv4 tcp dport kept', eth(ETH_IP, ipv4(TCP, tcp(40000, K))), 'match'),
        ('ipv4 tcp sport kept', eth(ETH_IP, ipv4(TCP, tcp(K, 40000))), 'match'),
        ('ipv4 tcp dport 443 (second slot)', eth(ETH_IP, ipv4(TCP, tcp(40000, 443))), 'match'),
        ('ipv4 tcp neither port kept', eth(ETH_IP, ipv4(TCP, tcp(40000, 9999))), 'port_filtered'),
        ('ipv4 tcp data offset 15', eth(ETH_IP, ipv4(TCP, tcp(40000, K, doff=15))), 'match'),
        ('802.1Q ipv4 tcp', eth(ETH_IP, ipv4(TCP, tcp(40000, K)), [(Q, 7)]), 'match'),
        ('QinQ 88a8+8100 ipv4 tcp', eth(ETH_IP, ipv4(TCP, tcp(40000, K)), [(AD, 7), (Q, 8)]), 'match'),
        ('QinQ 9100+8100 ipv6 tcp', eth(ETH_IP6, ipv6(TCP, tcp(40000, K)), [(OLDQ, 7), (Q, 8)]), 'match'),
        ('three VLAN tags', eth(ETH_IP, ipv4(TCP, tcp(40000, K)), [(AD, 7), (Q, 8), (Q, 9)]), 'not_ip'),
        ('802.1Q filtered port', eth(ETH_IP, ipv4(TCP, tcp(40000, 9999)), [(Q, 7)]), 'port_filtered'),
        ('arp', eth(ETH_ARP, arp), 'not_ip'),
        ('lldp', eth(ETH_LLDP, b'\0' * 46), 'not_ip'),
        ('ipv4 udp', eth(ETH_IP, ipv4(UDP, udp())), 'not_tcp'),
        ('ipv4 icmp', eth(ETH_IP, ipv4(ICMP, b'\x08\0\0\0\0\0\0\0')), 'not_tcp'),
        ('ipv4 options (ihl 6) tcp', eth(ETH_IP, ipv4(TCP, tcp(40000, K), ihl=6)), 'match'),
        ('ipv4 options (ihl 15) tcp', eth(ETH_IP, ipv4(TCP, tcp(40000, K), ihl=15)), 'match'),
        ('ipv4 tcp first fragment (MF)', eth(ETH_IP, ipv4(TCP, tcp(40000, K), frag=0x2000)), 'ip_fragment'),
        ('ipv4 tcp later fragment', eth(ETH_IP, ipv4(TCP, b'\0' * 24, frag=100)), 'ip_fragment'),
        ('ipv4 udp fragment', eth(ETH_IP, ipv4(UDP, udp(), frag=0x2000)), 'not_tcp'),
        ('ipv4 ihl 4', eth(ETH_IP, ipv4(TCP, tcp(40000, K), ihl=4)), 'malformed'),
        ('ipv4 ethertype, version 6', eth(ETH_IP, ipv4(TCP, tcp(40000, K), version=6)), 'malformed'),
        ('ipv4 tcp data offset 4', eth(ETH_IP, ipv4(TCP, tcp(40000, K, doff=4))), 'malformed'),
        ('ethernet header only', eth(ETH_IP, b''), 'truncated'),
        ('VLAN tag cut', (MAC_B + MAC_A + struct.pack('!HH', Q, 7)), 'truncated'),
        ('ipv4 header cut at 10 bytes', eth(ETH_IP, ipv4(TCP, tcp(40000, K))[:10]), 'truncated'),
        ('ipv4 options beyond the frame', eth(ETH_IP, ipv4(TCP, b'', ihl=15)[:40]), 'truncated'),
        ('tcp header cut at 10 bytes', eth(ETH_IP, ipv4(TCP, tcp(40000, K))[:30]), 'truncated'),
        ('ipv6 tcp', eth(ETH_IP6, ipv6(TCP, tcp(40000, K))), 'match'),
        ('ipv6 tcp filtered port', eth(ETH_IP6, ipv6(TCP, tcp(40000, 9999))), 'port_filtered'),
        ('ipv6 udp', eth(ETH_IP6, ipv6(UDP, udp())), 'not_tcp'),
        ('ipv6 esp', eth(ETH_IP6, ipv6(ESP, b'\0' * 24)), 'not_tcp'),
        ('ipv6 no next header', eth(ETH_IP6, ipv6(NONXT, b'')), 'not_tcp'),
        ('ipv6 hop-by-hop, tcp', eth(ETH_IP6, ipv6(HOP, opts6(TCP) + tcp(40000, K))), 'match'),
        ('ipv6 hbh(16 B), dst, rt, tcp',
         eth(ETH_IP6, ipv6(HOP, opts6(DST, 1) + opts6(RT) + opts6(TCP) + tcp(40000, K))), 'match'),
        ('ipv6 4 extension headers, tcp',
         eth(ETH_IP6, ipv6(HOP, opts6(DST) + opts6(RT) + opts6(DST) + opts6(TCP) + tcp(40000, K))), 'match'),
        ('ipv6 5 extension headers, tcp',
         eth(ETH_IP6, ipv6(HOP, opts6(DST) + opts6(RT) + opts6(DST) + opts6(DST) + opts6(TCP)
                           + tcp(40000, K))), 'ipv6_ext_unhandled'),
        ('ipv6 ah, tcp', eth(ETH_IP6, ipv6(AH, ah6(TCP) + tcp(40000, K))), 'match'),
        ('ipv6 atomic fragment, tcp', eth(ETH_IP6, ipv6(FRAG, frag6(TCP, 0, 0) + tcp(40000, K))), 'match'),
        ('ipv6 tcp first fragment (M)', eth(ETH_IP6, ipv6(FRAG, frag6(TCP, 0, 1) + tcp(40000, K))), 'ip_fragment'),
        ('ipv6 tcp later fragment', eth(ETH_IP6, ipv6(FRAG, frag6(TCP, 185, 0) + b'\0' * 24)), 'ip_fragment'),
        ('ipv6 udp fragment', eth(ETH_IP6, ipv6(FRAG, frag6(UDP, 0, 1) + udp())), 'not_tcp'),
        ('ipv6 header cut at 30 bytes', eth(ETH_IP6, ipv6(TCP, tcp(40000, K))[:30]), 'truncated'),
        ('ipv6 hop-by-hop beyond the frame', eth(ETH_IP6, ipv6(HOP, opts6(TCP, 10) + tcp(40000, K))[:80]), 'truncated'),
        ('ipv6 fragment header cut', eth(ETH_IP6, ipv6(FRAG, frag6(TCP, 0, 1))[:44]), 'truncated'),
        ('ipv6 ethertype, version 4', eth(ETH_IP6, ipv4(TCP, tcp(40000, K)) + b'\0' * 20), 'malformed'),
    ]

def craft(iface, expected_path, fallback):
    """Send every frame once; write the counter changes they must cause."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    expected = {}
    for desc, frame, reason in frames():
        s.send(frame)
        r = 'redirect_failed_no_socket' if reason == 'match' else reason
        expected[r] = expected.get(r, 0) + 1
        expected[fallback] = expected.get(fallback, 0) + 1
    json.dump(expected, open(expected_path, 'w'))
    print(len(frames()))

# --- checks ----------------------------------------------------------------

def check(header, results, step, before, after, *conds):
    """Evaluate conditions over the counter changes (names from the header; 'exact:F'
    compares every counter with the JSON in F). Appends pass/fail lines to results."""
    names = counter_names(header)
    b, a = json.load(open(before)), json.load(open(after))
    d = {n: a.get(str(i), 0) - b.get(str(i), 0) for i, n in enumerate(names)}
    reasons = sum(v for n, v in d.items() if n not in ('redirected', 'passed', 'dropped'))
    shown = ' '.join('%s=%d' % (n, v) for n, v in d.items() if v)
    lines = []
    def record(ok, what):
        lines.append('%s %s: %s' % ('pass' if ok else 'FAIL', step, what))
    record(d['passed'] + d['dropped'] == reasons,
           'passed + dropped = sum of reasons (%d + %d, %d)' % (d['passed'], d['dropped'], reasons))
    record(d['redirected'] == 0, 'redirected == 0 without an AF_XDP socket')
    for c in conds:
        if c.startswith('exact:'):
            exp = json.load(open(c[6:]))
            wrong = ['%s %d (want %d)' % (n, d[n], exp.get(n, 0))
                     for n in names if d[n] != exp.get(n, 0)]
            record(not wrong, 'every counter as expected' + ('' if not wrong else ': ' + ', '.join(wrong)))
        else:
            record(bool(eval(c, {}, dict(d))), c)
    with open(results, 'a') as f:
        for l in lines:
            f.write(l + '\n')
    for l in lines:
        print('  ' + l)
    print('    counters changed: ' + (shown or 'none'))

if __name__ == '__main__':
    cmd, args = sys.argv[1], sys.argv[2:]
    {'names': lambda h: print(' '.join(counter_names(h))),
     'read': read_counters, 'config': lambda a, *p: config_value(a, p),
     'udp-recv': udp_recv, 'udp-send': udp_send, 'serve': serve, 'tcp-echo': tcp_echo,
     'craft': craft, 'check': check}[cmd](*args)
PY
PEER=(python3 "$WORK/peer.py")

note() { printf '%s\n' "$*"; }
result() { # result pass|FAIL TEXT
    echo "$1 $2" >>"$RESULTS"
    echo "  $1 $2"
}
expect() { # expect STEP TEXT CONDITION-COMMAND...
    local step=$1 what=$2
    shift 2
    if "$@"; then result pass "$step: $what"; else result FAIL "$step: $what"; fi
}

# ---------------------------------------------------------------------------
note "$ME: object $OBJ, sha256 $(sha256sum "$OBJ" | cut -d' ' -f1), kernel $(uname -r), $(ip -V)"
note "$ME: namespaces $NS_A and $NS_B, veth $IF_A <-> $IF_B, 198.18.7.0/24"

for ns in "$NS_A" "$NS_B"; do
    if ip netns list | grep -qw "^$ns"; then
        echo "$ME: namespace $ns already exists; not touching it" >&2
        exit 1
    fi
    ip netns add "$ns"
    CREATED_NS+=("$ns")
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$NS_A" link add "$IF_A" address "$MAC_A" type veth \
    peer name "$IF_B" address "$MAC_B" netns "$NS_B"
ip -n "$NS_A" addr add "$IP_A/24" dev "$IF_A"
ip -n "$NS_B" addr add "$IP_B/24" dev "$IF_B"
ip -n "$NS_A" neigh add "$IP_B" lladdr "$MAC_B" dev "$IF_A" nud permanent
ip -n "$NS_B" neigh add "$IP_A" lladdr "$MAC_A" dev "$IF_B" nud permanent
ip -n "$NS_A" link set "$IF_A" up
ip -n "$NS_B" link set "$IF_B" up

# attach MODE (xdpgeneric|xdpdrv) EXPECTED-MODE-NUMBER: attach, find the maps.
PROG_ID='' MAP_CONFIG='' MAP_COUNTERS='' MAP_XSKS=''
attach() {
    local flag=$1 want_mode=$2 step="attach $1" info
    if ! ip -n "$NS_B" link set dev "$IF_B" "$flag" obj "$OBJ" sec xdp 2>"$WORK/attach.log"; then
        cat "$WORK/attach.log" >&2
        result FAIL "$step: ip link set $flag obj $OBJ sec xdp (verifier log above)"
        return 1
    fi
    result pass "$step: the verifier accepted the program and it is attached"
    info=$(ip -j -d -n "$NS_B" link show dev "$IF_B" | python3 -c '
import json, sys
x = json.load(sys.stdin)[0].get("xdp", {})
print(x.get("mode", "none"), x.get("prog", {}).get("id", ""), x.get("prog", {}).get("name", ""))')
    read -r mode PROG_ID name <<<"$info"
    expect "$step" "ip link reports mode $want_mode, program xdp_tapwatch (id $PROG_ID)" \
        test "$mode $name" = "$want_mode xdp_tapwatch"
    bpftool -j prog show id "$PROG_ID" >"$WORK/prog.json"
    expect "$step" "gpl_compatible and BTF loaded" python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
sys.exit(0 if p.get("gpl_compatible") and p.get("btf_id") else 1)' "$WORK/prog.json"
    note "    $(bpftool prog show id "$PROG_ID" | tr -s '\t\n' '  ')"
    MAP_CONFIG='' MAP_COUNTERS='' MAP_XSKS=''
    local m
    for m in $(python3 -c 'import json,sys; print(*json.load(open(sys.argv[1]))["map_ids"])' "$WORK/prog.json"); do
        bpftool -j map show id "$m" >"$WORK/map.json"
        read -r name type key value entries < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["name"], m["type"], m["bytes_key"], m["bytes_value"], m["max_entries"])' "$WORK/map.json")
        note "    map $m: $name $type key $key value $value max_entries $entries"
        case "$name" in
            config) MAP_CONFIG=$m
                expect "$step" "config is an array of 1 x 20-byte struct tw_config" \
                    test "$type $key $value $entries" = "array 4 20 1" ;;
            counters) MAP_COUNTERS=$m
                expect "$step" "counters is a percpu_array of $ncounters x u64" \
                    test "$type $key $value $entries" = "percpu_array 4 8 $ncounters" ;;
            xsks) MAP_XSKS=$m
                expect "$step" "xsks is an xskmap of 64 queues" \
                    test "$type $key $value $entries" = "xskmap 4 4 64" ;;
        esac
    done
    expect "$step" "maps config, counters and xsks found" \
        test -n "$MAP_CONFIG" -a -n "$MAP_COUNTERS" -a -n "$MAP_XSKS"
}

configure() { # configure pass|drop [PORT...]
    # shellcheck disable=SC2046  # the 20 bytes are separate arguments
    bpftool map update id "$MAP_CONFIG" key 0 0 0 0 value $("${PEER[@]}" config "$@")
    note "    config: not_matched_action=$1 tcp_ports=[${*:2}]"
}
snap() { "${PEER[@]}" read "$MAP_COUNTERS" "$WORK/$1.json"; }
check() { # check STEP BEFORE AFTER CONDITION...
    local step=$1 b=$2 a=$3
    shift 3
    "${PEER[@]}" check "$HDR" "$RESULTS" "$step" "$WORK/$b.json" "$WORK/$a.json" "$@"
}
settle() { sleep 0.5; } # let softirq processing of what was just sent finish

udp_exchange() { # udp_exchange COUNT -> prints how many arrived in NS_B
    rm -f "$WORK/udp.ready"
    ip netns exec "$NS_B" "${PEER[@]}" udp-recv "$IP_B" "$PORT_UDP" "$WORK/udp.ready" 1.5 \
        >"$WORK/udp.out" &
    local pid=$!
    PIDS+=("$pid")
    while [ ! -f "$WORK/udp.ready" ]; do sleep 0.05; done
    ip netns exec "$NS_A" "${PEER[@]}" udp-send "$IP_B" "$PORT_UDP" "$1"
    wait "$pid"
    cat "$WORK/udp.out"
}
tcp_exchange() { # tcp_exchange PORT TIMEOUT -> exit status 0 if echoed
    ip netns exec "$NS_A" "${PEER[@]}" tcp-echo "$IP_B" "$1" "$2" | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}
craft() { # craft FALLBACK-COUNTER -> $WORK/expected.json
    local n
    n=$(ip netns exec "$NS_A" "${PEER[@]}" craft "$IF_A" "$WORK/expected.json" "$1")
    note "    sent $n hand-made frames from $IF_A"
}

finish() { # the summary line, and the exit status: 1 if any check failed
    local npass nfail
    npass=$(grep -c '^pass ' "$RESULTS" || true)
    nfail=$(grep -c '^FAIL ' "$RESULTS" || true)
    note ""
    if [ "$nfail" -gt 0 ]; then
        grep '^FAIL ' "$RESULTS" | sed "s/^/$ME: /" >&2
    fi
    echo "$ME: $npass passed, $nfail failed"
    [ "$nfail" -eq 0 ] || exit 1
    exit 0
}

read -r -a counter_names <<<"$("${PEER[@]}" names "$HDR")"
ncounters=${#counter_names[@]}
note "$ME: counters (from $HDR): ${counter_names[*]}"

# The TCP echo server in NS_B, on a kept and a filtered port.
rm -f "$WORK/serve.ready"
ip netns exec "$NS_B" "${PEER[@]}" serve "$IP_B" "$WORK/serve.ready" "$PORT_KEPT" "$PORT_OTHER" &
PIDS+=($!)
while [ ! -f "$WORK/serve.ready" ]; do sleep 0.05; done

# ---------------------------------------------------------------------------
note ""
note "== generic (SKB) mode"
attach xdpgeneric 2 || finish

note "-- not_matched=pass, no port filter (the map as loaded: all zero)"
snap s0
n=$(udp_exchange 5)
expect "pass" "5 UDP datagrams sent, $n arrived" test "$n" -eq 5
tcp_ok=0; tcp_exchange "$PORT_KEPT" 3 || tcp_ok=$?
expect "pass" "TCP to port $PORT_KEPT echoed (redirect found no socket, fell back to pass)" \
    test "$tcp_ok" -eq 0
settle; snap s1
check "pass" s0 s1 'not_tcp == 5' 'redirect_failed_no_socket >= 3' \
    'passed == not_tcp + redirect_failed_no_socket' 'dropped == 0'

note "-- not_matched=drop, no port filter"
configure drop
snap s2
n=$(udp_exchange 5)
expect "drop" "5 UDP datagrams sent, $n arrived" test "$n" -eq 0
tcp_ok=0; tcp_exchange "$PORT_KEPT" 2 || tcp_ok=$?
expect "drop" "TCP to port $PORT_KEPT fails (SYNs dropped)" test "$tcp_ok" -ne 0
settle; snap s3
check "drop" s2 s3 'not_tcp == 5' 'redirect_failed_no_socket >= 1' \
    'dropped == not_tcp + redirect_failed_no_socket' 'passed == 0'

note "-- not_matched=pass, port filter [$PORT_KEPT, 443]"
configure pass "$PORT_KEPT" 443
snap s4
tcp_ok=0; tcp_exchange "$PORT_OTHER" 3 || tcp_ok=$?
expect "filter" "TCP to port $PORT_OTHER (filtered out) echoed" test "$tcp_ok" -eq 0
settle; snap s5
check "filter $PORT_OTHER" s4 s5 'port_filtered >= 3' 'redirect_failed_no_socket == 0' \
    'passed == port_filtered'
tcp_ok=0; tcp_exchange "$PORT_KEPT" 3 || tcp_ok=$?
expect "filter" "TCP to port $PORT_KEPT (kept) echoed" test "$tcp_ok" -eq 0
settle; snap s6
check "filter $PORT_KEPT" s5 s6 'redirect_failed_no_socket >= 3' 'port_filtered == 0' \
    'passed == redirect_failed_no_socket'

note "-- hand-made frames, not_matched=drop, port filter [$PORT_KEPT, 443]"
configure drop "$PORT_KEPT" 443
snap s7
craft dropped
settle; snap s8
check "frames generic" s7 s8 "exact:$WORK/expected.json"

note "-- hand-made frames, not_matched=pass, port filter [$PORT_KEPT, 443]"
configure pass "$PORT_KEPT" 443
snap s9
craft passed
settle; snap s10
check "frames generic pass" s9 s10 "exact:$WORK/expected.json"

ip -n "$NS_B" link set dev "$IF_B" xdpgeneric off
expect "detach generic" "no XDP program left on $IF_B" \
    sh -c "! ip -n '$NS_B' link show dev '$IF_B' | grep -q 'prog/xdp'"

# ---------------------------------------------------------------------------
note ""
note "== driver (native) mode"
if attach xdpdrv 1; then
    configure drop "$PORT_KEPT" 443
    snap d0
    craft dropped
    settle; snap d1
    check "frames driver" d0 d1 "exact:$WORK/expected.json"
    configure pass
    tcp_ok=0; tcp_exchange "$PORT_KEPT" 3 || tcp_ok=$?
    expect "driver pass" "TCP to port $PORT_KEPT echoed" test "$tcp_ok" -eq 0
    settle; snap d2
    check "driver pass" d1 d2 'redirect_failed_no_socket >= 3' \
        'passed == redirect_failed_no_socket'
    ip -n "$NS_B" link set dev "$IF_B" xdpdrv off
fi

# ---------------------------------------------------------------------------
note ""
note "== the verifier's statistics (bpftool -d prog load in a private mount namespace)"
mkdir "$WORK/bpffs"
# shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
if unshare --mount --propagation private sh -c \
    'mount -t bpf bpf "$1" && bpftool -d prog load "$2" "$1/prog" type xdp' \
    sh "$WORK/bpffs" "$OBJ" >"$WORK/verifier.log" 2>&1; then
    grep -E '^(processed|stack depth|verification time)' "$WORK/verifier.log" | sed 's/^/    /'
    result pass "verifier: bpftool prog load accepted it"
else
    grep -vE '^libbpf: ' "$WORK/verifier.log" | tail -n 30 >&2
    result FAIL "verifier: bpftool prog load refused it (log above)"
fi

# ---------------------------------------------------------------------------
finish
