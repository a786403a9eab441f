#!/usr/bin/env bash
# Record real TLS sessions (OpenSSL s_server / s_client, Python's ssl module, and GnuTLS's
# gnutls-cli / gnutls-serv) into tests/captures/tls/, one small pcap per scenario.
#
# Two network namespaces (twtls-c = client, twtls-s = server) joined by a veth pair,
# addresses from 198.18.0.0/15 (RFC 2544 benchmarking range) only:
#   twtls-c / twtlsc0  198.18.3.1/24  02:00:00:00:03:01
#   twtls-s / twtlss0  198.18.3.2/24  02:00:00:00:03:02
# MTU 1500 and GSO/TSO limited to one segment (gso_max_segs 1), so that the server's
# certificate flight leaves as several wire-sized segments (a veth passes GSO packets
# through unsegmented: without gso_max_segs 1, tcpdump saw 2496-byte frames). Static neighbour
# entries: no ARP in the captures. No IPv6. Nothing outside these two namespaces is
# touched (the veth is created inside twtls-c); both are deleted on exit, even on error.
#
# Every server listens on 198.18.3.2:443 and handles one connection. The client's source
# port is fixed per scenario (net.ipv4.ip_local_port_range = "P P" in twtls-c):
#   40301 tls12-ok                        s_server -tls1_2 -WWW, s_client -tls1_2: GET, answer
#   40302 tls13-ok                        same, TLS 1.3
#   40303 tls12-client-rejects-ca         s_client trusts "other CA" -> unknown_ca
#   40304 tls13-client-rejects-ca         same, TLS 1.3 (middlebox compatibility on)
#   40305 tls13-client-rejects-ca-nomb    same, s_client -no_middlebox
#   40306 tls12-mtls-no-client-cert       s_server -Verify 1, client has no certificate
#   40307 tls13-mtls-no-client-cert       same, TLS 1.3
#   40308 tls12-mtls-ok                   s_server -Verify 1, s_client -cert/-key: GET, answer
#   40309 tls13-mtls-ok                   same, TLS 1.3
#   40310 tls-version-mismatch            s_server -tls1_2, s_client -tls1_3
#   40311 tls12-cipher-mismatch           disjoint -cipher lists, TLS 1.2
#   40312 py-client-rejects-ca            Python create_default_context(cafile=other CA)
#   40313 py-pinned-abandon-tls13         Python, no verification, wrong pin: close()
#   40314 py-pinned-abandon-tls12         same, TLS 1.2
#   40315 no-server-hello                 Python TCP server reads the ClientHello, FIN
#   40316 no-server-hello-http            same, answers "HTTP/1.1 400 Bad Request" first
#   40317 tls13-ok-rst-after-close-notify Python both ends: GET, answer, close_notify both
#                                         ways, then the client closes with SO_LINGER {1,0}
#   40318 tls13-mtls-no-client-cert-request  as 40307, but the client sends its GET at
#                                         once (like curl), before the server's alert
#   40319 gnutls13-client-rejects-ca      s_server -tls1_3; gnutls-cli (TLS 1.3 only) trusts
#                                         "other CA": its alert is *encrypted* (OpenSSL
#                                         3.0's is plaintext, see 40304/40305)
#   40320 gnutls13-client-rejects-ca-nomb same, priority %DISABLE_TLS13_COMPAT_MODE (no CCS)
#   40321 gnutls13-mtls-no-client-cert    gnutls-serv --require-client-cert (TLS 1.3 only),
#                                         s_client -tls1_3 without a certificate
# gnutls-serv cannot be told to serve one connection nor which address to bind: it
# listens on 0.0.0.0:443 in twtls-s (whose only addresses are 198.18.3.2 and lo) and is
# sent SIGTERM 1 s after the client exited (SRV_STOP below).
# Keys and certificates are generated fresh in a temporary directory on each run:
# CA "tapwatch test CA" (RSA 3072), CA "other CA", server.test (RSA 2048, SAN
# DNS:server.test, sent with the CA certificate as its chain) and client.test, both
# signed by "tapwatch test CA".
#
# Outputs: tests/captures/tls/NAME.pcap (tcpdump -i twtlsc0 -s 0 inside twtls-c:
# Ethernet, microsecond pcap). If KEYLOG_DIR is set, the TLS secrets of each scenario
# (NSS key log format, from both peers) are kept there as NAME.keys, so that tshark can
# decrypt the captures (-o tls.keylog_file:NAME.keys); they are never written to OUT.
# If tshark is present, every frame of each capture is printed (direction, TCP flags,
# payload length, TLS record types / alerts / lengths). tcpdump runs with
# --immediate-mode and is stopped with SIGINT 0.5 s after both peers exited.
# tests/captures/tls/README.md describes what each capture holds.
#
# Usage: scripts/make-tls-captures.sh [SCENARIO...]   (default: all, in the order above)
# Needs root, openssl, tcpdump, iproute2 (ip, ss), python3 with the ssl module; the
# gnutls13-* scenarios also need gnutls-cli and gnutls-serv (apt-get install gnutls-bin).
# GnuTLS writes its key log where SSLKEYLOGFILE says.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$ROOT/tests/captures/tls}
KEYLOG_DIR=${KEYLOG_DIR:-}
NS_C=twtls-c
NS_S=twtls-s
IF_C=twtlsc0
IF_S=twtlss0
MAC_C=02:00:00:00:03:01
MAC_S=02:00:00:00:03:02
IP_C=198.18.3.1
IP_S=198.18.3.2
PORT=443
PY=${PYTHON:-python3}
PEER=$HERE/tls-capture-peer.py
ME=make-tls-captures

ALL_SCENARIOS=(
    tls12-ok tls13-ok
    tls12-client-rejects-ca tls13-client-rejects-ca tls13-client-rejects-ca-nomb
    tls12-mtls-no-client-cert tls13-mtls-no-client-cert
    tls12-mtls-ok tls13-mtls-ok
    tls-version-mismatch tls12-cipher-mismatch
    py-client-rejects-ca py-pinned-abandon-tls13 py-pinned-abandon-tls12
    no-server-hello no-server-hello-http
    tls13-ok-rst-after-close-notify
    tls13-mtls-no-client-cert-request
    gnutls13-client-rejects-ca gnutls13-client-rejects-ca-nomb
    gnutls13-mtls-no-client-cert
)

if [ "$(id -u)" -ne 0 ]; then
    echo "$ME: must run as root (network namespaces, tcpdump)" >&2
    exit 1
fi
for cmd in ip ss tcpdump openssl timeout "$PY"; do
    command -v "$cmd" >/dev/null || { echo "$ME: $cmd missing" >&2; exit 1; }
done

if [ $# -gt 0 ]; then
    SCENARIOS=("$@")
    for s in "${SCENARIOS[@]}"; do
        case " ${ALL_SCENARIOS[*]} " in
            *" $s "*) ;;
            *) echo "$ME: unknown scenario $s (known: ${ALL_SCENARIOS[*]})" >&2; exit 2 ;;
        esac
    done
else
    SCENARIOS=("${ALL_SCENARIOS[@]}")
fi
case " ${SCENARIOS[*]}" in
    *" gnutls"*)
        for cmd in gnutls-cli gnutls-serv; do
            command -v "$cmd" >/dev/null || {
                echo "$ME: $cmd missing (the gnutls13-* scenarios need it):" \
                     "apt-get install gnutls-bin, or leave those scenarios out" >&2
                exit 1
            }
        done ;;
esac

WORK=$(mktemp -d /tmp/twtls.XXXXXX)
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
    # Deleting the namespaces also deletes the veth pair (both ends live in them).
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsc() { ip netns exec "$NS_C" "$@"; }
nss() { ip netns exec "$NS_S" "$@"; }

# ---------------------------------------------------------------------------
# Keys and certificates (fresh on every run).
PKI=$WORK/pki
mkdir -p "$PKI" "$WORK/www"
echo "$ME: $(openssl version), $("$PY" -c 'import ssl, sys; print("python", sys.version.split()[0], "with", ssl.OPENSSL_VERSION)')"
if command -v gnutls-cli >/dev/null; then echo "$ME: $(gnutls-cli --version | head -1)"; fi
echo "$ME: generating keys and certificates in $PKI"
make_ca() { # $1 = file stem, $2 = CN
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
        -keyout "$PKI/$1.key" -out "$PKI/$1.pem" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
make_leaf() { # $1 = file stem, $2 = CN, $3 = serial, $4 = extensions
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$4" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -sha256 -days 825 -set_serial "$3" \
        -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -extfile "$PKI/$1.ext" \
        -out "$PKI/$1.pem" 2>/dev/null
}
make_ca ca "tapwatch test CA"
make_ca other-ca "other CA"
make_leaf server server.test 0x5e17e4 "$(printf '%s\n' \
    'basicConstraints=critical,CA:FALSE' \
    'keyUsage=critical,digitalSignature,keyEncipherment' \
    'extendedKeyUsage=serverAuth' \
    'subjectAltName=DNS:server.test')"
make_leaf client client.test 0xc11e47 "$(printf '%s\n' \
    'basicConstraints=critical,CA:FALSE' \
    'keyUsage=critical,digitalSignature' \
    'extendedKeyUsage=clientAuth' \
    'subjectAltName=DNS:client.test')"
openssl verify -CAfile "$PKI/ca.pem" "$PKI/server.pem" "$PKI/client.pem" | sed "s|^|$ME: |"
# The file s_server -WWW serves (GET /hello.txt).
printf 'tapwatch TLS capture payload\n%.0s' 1 2 3 4 5 6 7 8 >"$WORK/www/hello.txt"

# ---------------------------------------------------------------------------
# Namespaces and the veth pair.
for ns in "$NS_C" "$NS_S"; do # stale namespaces from an aborted run (only ours, by name)
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        echo "$ME: removing stale namespace $ns"
        ip netns del "$ns"
    fi
done
echo "$ME: creating namespaces $NS_C, $NS_S"
ip netns add "$NS_C"
ip netns add "$NS_S"
for ns in "$NS_C" "$NS_S"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$NS_C" link add "$IF_C" address "$MAC_C" mtu 1500 gso_max_segs 1 type veth \
    peer name "$IF_S" address "$MAC_S" mtu 1500 gso_max_segs 1 netns "$NS_S"
ip -n "$NS_C" addr add "$IP_C/24" dev "$IF_C"
ip -n "$NS_S" addr add "$IP_S/24" dev "$IF_S"
ip -n "$NS_C" neigh replace "$IP_S" lladdr "$MAC_S" dev "$IF_C" nud permanent
ip -n "$NS_S" neigh replace "$IP_C" lladdr "$MAC_C" dev "$IF_S" nud permanent
ip -n "$NS_C" link set "$IF_C" up
ip -n "$NS_S" link set "$IF_S" up
for _ in $(seq 50); do
    if ip -n "$NS_C" -br link show "$IF_C" | grep -q 'UP' &&
       ip -n "$NS_S" -br link show "$IF_S" | grep -q 'UP'; then
        break
    fi
    sleep 0.1
done
echo "$ME: $(ip -n "$NS_C" -d link show "$IF_C" | grep -o 'mtu [0-9]*' | head -1)," \
     "$(ip -n "$NS_C" -d link show "$IF_C" | grep -o 'gso_max_segs [0-9]*' | head -1)"

# ---------------------------------------------------------------------------
# Scenario definitions: each sets
#   CPORT   client source port
#   SRV     server command (run in twtls-s, cwd = the -WWW directory)
#   CLI     client command (run in twtls-c)
#   CLI_IN  bytes for the client's stdin (printf %b format); empty: /dev/null
#   EXPECT  ok = the client must exit 0; fail = it must exit non-zero
#   SRV_STOP  empty: the server exits by itself after its one connection; otherwise
#           (gnutls-serv, which has no "one connection" option) the server is sent
#           SIGTERM this many seconds after the client exited. Its own TCP close of the
#           connection has happened by then: that is checked in the capture, not here.
S_SERVER=(openssl s_server -4 -accept "$IP_S:$PORT" -naccept 1
          -cert "$PKI/server.pem" -key "$PKI/server.key" -cert_chain "$PKI/ca.pem" -WWW)
S_CLIENT=(openssl s_client -4 -connect "$IP_S:$PORT" -servername server.test
          -verify_hostname server.test -verify_return_error -ign_eof)
GET='GET /hello.txt HTTP/1.0\r\n\r\n'
MTLS=(-Verify 1 -CAfile "$PKI/ca.pem")
PYC=("$PY" "$PEER" --host "$IP_S" --port "$PORT")
G13=NORMAL:-VERS-ALL:+VERS-TLS1.3 # GnuTLS priority string: TLS 1.3 only
G_CLI=(gnutls-cli -p "$PORT" --sni-hostname server.test --verify-hostname server.test)
G_SERV=(gnutls-serv -p "$PORT" --priority "$G13"
        --x509certfile "$PKI/server-chain.pem" --x509keyfile "$PKI/server.key")

define() { # $1 = scenario name; $2 = key log file
    local k=$2
    CLI_IN= EXPECT=fail SRV_STOP=
    case $1 in
    tls12-ok)
        CPORT=40301 EXPECT=ok CLI_IN=$GET
        SRV=("${S_SERVER[@]}" -tls1_2 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_2 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    tls13-ok)
        CPORT=40302 EXPECT=ok CLI_IN=$GET
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    tls12-client-rejects-ca)
        CPORT=40303
        SRV=("${S_SERVER[@]}" -tls1_2 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_2 -CAfile "$PKI/other-ca.pem" -keylogfile "$k.c") ;;
    tls13-client-rejects-ca)
        CPORT=40304
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/other-ca.pem" -keylogfile "$k.c") ;;
    tls13-client-rejects-ca-nomb)
        CPORT=40305
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -no_middlebox -CAfile "$PKI/other-ca.pem" -keylogfile "$k.c") ;;
    tls12-mtls-no-client-cert)
        CPORT=40306
        SRV=("${S_SERVER[@]}" -tls1_2 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_2 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    tls13-mtls-no-client-cert)
        CPORT=40307
        SRV=("${S_SERVER[@]}" -tls1_3 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    tls12-mtls-ok)
        CPORT=40308 EXPECT=ok CLI_IN=$GET
        SRV=("${S_SERVER[@]}" -tls1_2 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_2 -CAfile "$PKI/ca.pem"
             -cert "$PKI/client.pem" -key "$PKI/client.key" -keylogfile "$k.c") ;;
    tls13-mtls-ok)
        CPORT=40309 EXPECT=ok CLI_IN=$GET
        SRV=("${S_SERVER[@]}" -tls1_3 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem"
             -cert "$PKI/client.pem" -key "$PKI/client.key" -keylogfile "$k.c") ;;
    tls-version-mismatch)
        CPORT=40310
        SRV=("${S_SERVER[@]}" -tls1_2 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    tls12-cipher-mismatch)
        CPORT=40311
        SRV=("${S_SERVER[@]}" -tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305
             -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    py-client-rejects-ca)
        CPORT=40312 EXPECT=ok # the helper exits 0 when the handshake failed as --expect says
        SRV=("${S_SERVER[@]}" -keylogfile "$k.s")
        CLI=("${PYC[@]}" client-verify --cafile "$PKI/other-ca.pem" --expect fail --keylog "$k.c") ;;
    py-pinned-abandon-tls13)
        CPORT=40313 EXPECT=ok
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${PYC[@]}" client-pinned --version 1.3 --pin "$(printf 'ab%.0s' $(seq 32))" --keylog "$k.c") ;;
    py-pinned-abandon-tls12)
        CPORT=40314 EXPECT=ok
        SRV=("${S_SERVER[@]}" -tls1_2 -keylogfile "$k.s")
        CLI=("${PYC[@]}" client-pinned --version 1.2 --pin "$(printf 'ab%.0s' $(seq 32))" --keylog "$k.c") ;;
    no-server-hello)
        CPORT=40315
        SRV=("$PY" "$PEER" server-silent --host "$IP_S" --port "$PORT")
        CLI=("${S_CLIENT[@]}" -CAfile "$PKI/ca.pem") ;;
    no-server-hello-http)
        CPORT=40316
        SRV=("$PY" "$PEER" server-silent --http --host "$IP_S" --port "$PORT")
        CLI=("${S_CLIENT[@]}" -CAfile "$PKI/ca.pem") ;;
    tls13-ok-rst-after-close-notify)
        CPORT=40317 EXPECT=ok
        SRV=("$PY" "$PEER" server-notify --version 1.3 --host "$IP_S" --port "$PORT"
             --cert "$PKI/server-chain.pem" --key "$PKI/server.key" --keylog "$k.s")
        CLI=("${PYC[@]}" client-notify-rst --version 1.3 --cafile "$PKI/ca.pem" --keylog "$k.c") ;;
    tls13-mtls-no-client-cert-request)
        CPORT=40318 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" -tls1_3 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    gnutls13-client-rejects-ca)
        CPORT=40319
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=(env SSLKEYLOGFILE="$k.c" "${G_CLI[@]}" --priority "$G13"
             --x509cafile "$PKI/other-ca.pem" "$IP_S") ;;
    gnutls13-client-rejects-ca-nomb)
        CPORT=40320
        SRV=("${S_SERVER[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=(env SSLKEYLOGFILE="$k.c" "${G_CLI[@]}" --priority "$G13:%DISABLE_TLS13_COMPAT_MODE"
             --x509cafile "$PKI/other-ca.pem" "$IP_S") ;;
    gnutls13-mtls-no-client-cert)
        CPORT=40321 SRV_STOP=1
        SRV=(env SSLKEYLOGFILE="$k.s" "${G_SERV[@]}" --require-client-cert --x509cafile "$PKI/ca.pem")
        CLI=("${S_CLIENT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    *) echo "$ME: no definition for $1" >&2; exit 2 ;;
    esac
}
cat "$PKI/server.pem" "$PKI/ca.pem" >"$PKI/server-chain.pem" # for the Python server, gnutls-serv

# ---------------------------------------------------------------------------
start_tcpdump() { # $1 = output file, $2 = stderr log
    # -s 0: whole frames; -U: flush per packet; -Z root: keep root to write anywhere.
    # --immediate-mode: without it libpcap (TPACKET_V3) hands packets over in blocks
    # that are retired only after tcpdump's 1 s buffer timeout, and the packets of a
    # block not yet retired when SIGINT arrives are lost: the last ~second of a
    # scenario (the closes) went missing in a first version of this script.
    # A simple command, not the nsc function: $! is then tcpdump itself (ip netns exec
    # execs it), not a subshell copy of this script that would run its traps.
    ip netns exec "$NS_C" tcpdump -i "$IF_C" -s 0 -U --immediate-mode -n -Z root -w "$1" 2>"$2" &
    TCPDUMP_PID=$!
    PIDS+=("$TCPDUMP_PID")
    for _ in $(seq 100); do
        grep -q 'listening on' "$2" 2>/dev/null && return 0
        kill -0 "$TCPDUMP_PID" 2>/dev/null || { cat "$2" >&2; return 1; }
        sleep 0.1
    done
    echo "$ME: tcpdump did not start" >&2
    cat "$2" >&2
    return 1
}

wait_pid() { # $1 = pid, $2 = seconds; returns the exit status, 124 on timeout
    local i
    for i in $(seq $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
        sleep 0.1
    done
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    return 124
}

record() { # $1 = scenario name
    local name=$1 dir=$WORK/$1 rc=0 srv_rc=0
    mkdir -p "$dir"
    define "$name" "$dir/keys"
    nsc sysctl -qw net.ipv4.ip_local_port_range="$CPORT $CPORT"

    start_tcpdump "$dir/cap.pcap" "$dir/tcpdump.log"
    sleep 0.5 # "listening on" comes right at activation; give the ring a moment

    (trap - EXIT INT TERM; cd "$WORK/www" && exec ip netns exec "$NS_S" "${SRV[@]}") >"$dir/server.log" 2>&1 </dev/null &
    local srv=$!
    PIDS+=("$srv")
    for _ in $(seq 100); do # poll until the server really listens
        [ -n "$(nss ss -Hltn "sport = :$PORT")" ] && break
        kill -0 "$srv" 2>/dev/null || { cat "$dir/server.log" >&2; echo "$ME: $name: server died" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$(nss ss -Hltn "sport = :$PORT")" ] || { echo "$ME: $name: server not listening" >&2; exit 1; }

    # In the background + wait, so that an INT/TERM is handled at once (cleanup trap).
    if [ -n "$CLI_IN" ]; then
        # (The subshell drops the inherited traps: a signal must not run cleanup there.)
        (trap - EXIT INT TERM; printf '%b' "$CLI_IN" | timeout 20 ip netns exec "$NS_C" "${CLI[@]}") >"$dir/client.log" 2>&1 &
    else
        timeout 20 ip netns exec "$NS_C" "${CLI[@]}" >"$dir/client.log" 2>&1 </dev/null &
    fi
    local cli=$!
    PIDS+=("$cli")
    wait "$cli" || rc=$?
    if [ -n "$SRV_STOP" ]; then
        sleep "$SRV_STOP"
        if kill -0 "$srv" 2>/dev/null; then
            kill -TERM "$srv" 2>/dev/null || true
            wait "$srv" 2>/dev/null || true # the status of a SIGTERMed server: not counted
        else
            wait "$srv" || srv_rc=$?
        fi
    else
        wait_pid "$srv" 10 || srv_rc=$?
    fi

    sleep 0.5 # let the last segments (FIN/RST) be captured
    kill -INT "$TCPDUMP_PID"
    wait "$TCPDUMP_PID" || true
    if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$dir/tcpdump.log"; then
        echo "$ME: $name: tcpdump dropped packets" >&2
        exit 1
    fi

    local verdict=as-expected
    if [ "$rc" -eq 124 ] || [ "$srv_rc" -eq 124 ]; then
        verdict="TIMEOUT (client $rc, server $srv_rc)"
    elif [ "$EXPECT" = ok ] && [ "$rc" -ne 0 ]; then
        verdict="UNEXPECTED: client failed (exit $rc)"
    elif [ "$EXPECT" = fail ] && [ "$rc" -eq 0 ]; then
        verdict="UNEXPECTED: client succeeded"
    fi
    echo "$ME: $name: client port $CPORT, client exit $rc, server exit $srv_rc: $verdict," \
         "$(grep -E 'packets captured' "$dir/tcpdump.log")"
    # The peers' own words: OpenSSL errors, verification results, the helper's steps.
    grep -hE 'error|alert|Verify return code|verify error|handshake|pin |close|RST|FIN|read a|sent HTTP|received' \
        "$dir/client.log" | sed "s|^|$ME:   client: |" | head -8 || true
    grep -hE 'error|alert|ACCEPT|handshake|close|RST|FIN|read a|sent HTTP|request' \
        "$dir/server.log" | grep -v '^ACCEPT' | sed "s|^|$ME:   server: |" | head -8 || true
    case $verdict in as-expected) ;; *) FAILED+=("$name") ;; esac

    mkdir -p "$OUT"
    cp "$dir/cap.pcap" "$OUT/$name.pcap"
    if [ -n "$KEYLOG_DIR" ]; then
        mkdir -p "$KEYLOG_DIR"
        cat "$dir"/keys.* 2>/dev/null | sort -u >"$KEYLOG_DIR/$name.keys" || true
    fi
    if command -v tshark >/dev/null; then
        # Every frame: number, direction, TCP flags, payload length, then per TLS record
        # content type / opaque type / handshake type / alert level / alert description /
        # record length (several records in one frame are joined with "/").
        tshark -n -o tcp.reassemble_out_of_order:TRUE -r "$OUT/$name.pcap" \
            -d "tcp.port==$PORT,tls" -T fields -E occurrence=a -E aggregator=/ \
            -e frame.number -e ip.src -e tcp.flags.str -e tcp.len \
            -e tls.record.content_type -e tls.record.opaque_type -e tls.handshake.type \
            -e tls.alert_message.level -e tls.alert_message.desc -e tls.record.length \
            2>/dev/null | sed -e "s/\t$IP_C\t/\tC>S\t/" -e "s/\t$IP_S\t/\tS>C\t/" \
                              -e "s|^|$ME:   tshark: |" || true
    fi
}

FAILED=()
for s in "${SCENARIOS[@]}"; do
    record "$s"
done

for s in "${SCENARIOS[@]}"; do
    echo "$ME: wrote $OUT/$s.pcap ($(stat -c %s "$OUT/$s.pcap") bytes)"
done
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "$ME: scenarios that did not behave as expected: ${FAILED[*]}" >&2
    exit 1
fi
