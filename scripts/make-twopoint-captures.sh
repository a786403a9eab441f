#!/usr/bin/env bash
# Record real sessions through a middlebox at two capture points (issue 4) into
# tests/captures/twopoint/: for each scenario NAME.inside.pcap (the firewall's interface
# facing the client) and NAME.outside.pcap (its interface facing the server).
#
# Three network namespaces, addresses from 198.18.0.0/15 (RFC 2544 benchmarking range)
# only, joined by two veth pairs that are created inside the namespaces (nothing is
# created, changed or filtered in the root namespace):
#   twfw-c  (client)    twfwc0  198.18.5.1/24  02:00:00:00:05:01  default via 198.18.5.2
#   twfw-fw (firewall)  twfwi0  198.18.5.2/24  02:00:00:00:05:02  "inside", faces the client
#                       twfwo0  198.18.6.1/24  02:00:00:00:06:01  "outside", faces the server
#   twfw-s  (server)    twfws0  198.18.6.2/24  02:00:00:00:06:02  default via 198.18.6.1
# twfw-fw forwards (net.ipv4.ip_forward=1 there only). MTU 1500 and gso_max_segs 1 on
# every veth end (as in make-tls-captures.sh: wire-sized segments); static neighbour
# entries (no ARP); IPv6 off (no ND/MLD). iptables rules exist only in twfw-fw and are
# flushed before and after each scenario. All three namespaces are deleted on exit, on
# error and on SIGINT/SIGTERM.
#
# tcpdump runs inside twfw-fw on both interfaces: NAME.inside.pcap (twfwi0) and
# NAME.outside.pcap (twfwo0). A forwarded packet is in both files, with its TTL one
# lower on the far side; a packet the firewall makes itself (a forged RST, or anything
# mitmproxy sends) is in one file only, with TTL 64.
#
# The client's source port is fixed per scenario (ip_local_port_range "P P" in twfw-c).
# mitmproxy's outside legs get ports from ten per scenario, 41000 + 10 * (P - 40500)
# + 0..9 (ip_local_port_range in twfw-fw; with a single port, mitmproxy's retry in
# mitm-tls13-mtls failed with EADDRNOTAVAIL).
#   40501 fw-pass-tls13             plain forwarding; s_server -tls1_3 -WWW, s_client
#                                   -tls1_3: GET, answer, close_notify both ways
#   40502 fw-reset-sni              iptables in twfw-fw: FORWARD -m string --string
#                                   server.test --algo bm -j REJECT --reject-with
#                                   tcp-reset: the ClientHello is dropped and an RST is
#                                   forged toward the client. The server (Python ssl,
#                                   TLS 1.3) sees the handshake and nothing else; after
#                                   2 s without a ClientHello it closes (FIN), and the
#                                   client's kernel answers that FIN with an RST
#   40503 fw-reset-established-tls  Python client and server, TLS 1.3, HTTP/1.1
#                                   keep-alive: GET /one, answer; then the script inserts
#                                   REJECT --reject-with tcp-reset for the client's data
#                                   segments of this connection; GET /two is dropped and
#                                   an RST forged toward the client; the server closes
#                                   after 2 s idle (FIN), the client's kernel RSTs
#   40504 fw-reset-established-http same over plain HTTP on port 80, the rule set from
#                                   the start: -m string --string "GET /blocked"
#   40505 mitm-tls13-ok             mitmproxy (transparent) intercepts; Python client,
#                                   TLS 1.3, trusts mitmproxy's CA: GET, answer, the
#                                   client's close_notify; Python server
#   40506 mitm-downgrade-tls12      same, client offers TLS 1.3 and 1.2; mitmproxy runs
#                                   with tls_version_client_max=TLS1_2: 1.2 inside,
#                                   1.3 outside
#   40507 mitm-tls12-client-rejects s_client -tls1_2 trusts only the real test CA:
#                                   rejects mitmproxy's certificate (unknown_ca)
#   40508 mitm-tls13-client-rejects same, TLS 1.3
#   40509 mitm-tls12-mtls           s_server -tls1_2 -Verify 1; s_client has a client
#                                   certificate and trusts mitmproxy's CA. mitmproxy asks
#                                   for no certificate inside and sends none outside:
#                                   the server fails the handshake; mitmproxy completes
#                                   the inside handshake anyway and answers 502
#   40510 mitm-tls13-mtls           same, TLS 1.3 (s_server -naccept 2: mitmproxy
#                                   connects a second time for the request). mitmproxy
#                                   never answers the request: the client gives up after
#                                   3 s (timeout(1) sends SIGTERM to s_client)
#   40511 mitm-upstream-tls10       s_server -tls1 (TLS 1.0 only); mitmproxy's upstream
#                                   minimum is TLS 1.2: protocol_version outside, 502
#                                   inside
#   40512 mitm-upstream-cipher      s_server -tls1_2 -cipher ECDHE-ARIA128-GCM-SHA256,
#                                   which mitmproxy's upstream cipher list lacks:
#                                   handshake_failure outside, 502 inside
#   40513 mitm-tls13-pinned         Python "pinned" client, TLS 1.3: no chain or name
#                                   verification; after the handshake it compares the
#                                   SHA-256 of the peer certificate (DER) with the pin
#                                   of the real server.test certificate ($SERVER_PIN,
#                                   from this run's PKI), finds mitmproxy's instead, and
#                                   close()s after 0.2 s without data and without
#                                   close_notify (no unwrap()). Python server, TLS 1.2
#                                   to 1.3 (mitmproxy's upstream leg negotiates 1.3)
#   40514 mitm-tls12-pinned         same, the client forced to TLS 1.2
#   40515 fw-reset-syn              iptables in twfw-fw: FORWARD -p tcp --syn --dport 443
#                                   -j REJECT --reject-with tcp-reset: the client's SYN
#                                   is dropped and answered by an RST in the server's
#                                   name; nothing reaches the server side (the outside
#                                   capture stays empty). s_client fails to connect; the
#                                   Python server (TLS 1.3) never gets a connection and
#                                   is stopped after 1 s (expected)
# (A 3DES-only server was the first idea for the cipher case; Debian's OpenSSL 3.0 has
# no DES-CBC3-SHA even at @SECLEVEL=0, so ARIA is used.)
#
# mitmproxy: mitmdump --mode transparent --showhost --listen-host 198.18.5.2
# --listen-port 8080 --set confdir=TMP --set ssl_verify_upstream_trusted_ca=ca.pem, in
# twfw-fw, with iptables -t nat PREROUTING -i twfwi0 -p tcp --dport 443 -j REDIRECT
# --to-ports 8080. It is started per scenario, after the server, and stopped with
# SIGINT 1 s after the client and the server have exited. It makes its CA
# (CN=mitmproxy, O=mitmproxy) in confdir the first time it starts; the client scenarios
# that trust the proxy use that file. It is installed from PyPI into a venv ($VENV,
# default /opt/tapwatch-venv; version $MITMPROXY_SPEC, default mitmproxy==11.0.2, the
# newest release that installs on Debian 12's Python 3.11).
#
# Keys and certificates are generated fresh in a temporary directory on each run, with
# the same layout as make-tls-captures.sh: CA "tapwatch test CA" (RSA 3072),
# server.test (RSA 2048, SAN DNS:server.test, sent with the CA certificate) and
# client.test (RSA 2048, clientAuth), both signed by that CA.
#
# Outputs: tests/captures/twopoint/NAME.inside.pcap and NAME.outside.pcap (tcpdump -s 0
# -U --immediate-mode: Ethernet, microsecond pcap). If KEYLOG_DIR is set, the TLS
# secrets of each scenario (NSS key log format, from the client, the server and
# mitmproxy, which logs both of its legs) are kept there as NAME.keys; they are never
# written to OUT. For each capture, every frame is printed (source, destination, TTL,
# TCP flags, payload length, TLS record types / alerts / lengths), with the addresses
# written as C, S, FWi and FWo. tests/captures/twopoint/README.md describes them.
#
# Usage: scripts/make-twopoint-captures.sh [SCENARIO...]   (default: all, in the order above)
# Needs root. Installs what is missing (install_deps below): tcpdump, tshark, openssl,
# iptables, iproute2, python3-venv from Debian's packages, mitmproxy from PyPI.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
OUT=${OUT:-$ROOT/tests/captures/twopoint}
KEYLOG_DIR=${KEYLOG_DIR:-}
VENV=${VENV:-/opt/tapwatch-venv}
MITMPROXY_SPEC=${MITMPROXY_SPEC:-mitmproxy==11.0.2}
PY=${PYTHON:-python3}
PEER=$HERE/twopoint-peer.py
ME=make-twopoint-captures

NS_C=twfw-c NS_F=twfw-fw NS_S=twfw-s
IF_C=twfwc0 IF_I=twfwi0 IF_O=twfwo0 IF_S=twfws0 # client, fw inside, fw outside, server
MAC_C=02:00:00:00:05:01 MAC_I=02:00:00:00:05:02
MAC_O=02:00:00:00:06:01 MAC_S=02:00:00:00:06:02
IP_C=198.18.5.1 IP_I=198.18.5.2 IP_O=198.18.6.1 IP_S=198.18.6.2
MITM_PORT=8080

ALL_SCENARIOS=(
    fw-pass-tls13
    fw-reset-sni
    fw-reset-established-tls
    fw-reset-established-http
    mitm-tls13-ok
    mitm-downgrade-tls12
    mitm-tls12-client-rejects
    mitm-tls13-client-rejects
    mitm-tls12-mtls
    mitm-tls13-mtls
    mitm-upstream-tls10
    mitm-upstream-cipher
    mitm-tls13-pinned
    mitm-tls12-pinned
    fw-reset-syn
)

if [ "$(id -u)" -ne 0 ]; then
    echo "$ME: must run as root (network namespaces, iptables, tcpdump)" >&2
    exit 1
fi

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

# ---------------------------------------------------------------------------
# Installation: Debian packages for the commands that are missing, and mitmproxy from
# PyPI into its own venv ($VENV), only when needed. Nothing is installed when all is
# present.
install_deps() {
    local missing=() cmd
    declare -A pkg_of=([ip]=iproute2 [ss]=iproute2 [tcpdump]=tcpdump [tshark]=tshark
                       [openssl]=openssl [iptables]=iptables [timeout]=coreutils
                       [python3]=python3)
    for cmd in ip ss tcpdump tshark openssl iptables timeout python3; do
        command -v "$cmd" >/dev/null 2>&1 && continue
        case " ${missing[*]-} " in *" ${pkg_of[$cmd]} "*) ;; *) missing+=("${pkg_of[$cmd]}") ;; esac
    done
    if [ ! -x "$VENV/bin/mitmdump" ] && ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "$ME: apt-get install ${missing[*]}"
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    if [ ! -x "$VENV/bin/mitmdump" ]; then
        echo "$ME: creating $VENV and installing $MITMPROXY_SPEC from PyPI"
        /usr/bin/python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "$MITMPROXY_SPEC"
    fi
}
install_deps
MITMDUMP=$VENV/bin/mitmdump

WORK=$(mktemp -d /tmp/twfw.XXXXXX)
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
    # Deleting the namespaces also deletes the veth pairs (all their ends live in them)
    # and the firewall's iptables rules (they live in twfw-fw only).
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_F" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsc() { ip netns exec "$NS_C" "$@"; }
nsf() { ip netns exec "$NS_F" "$@"; }
nss() { ip netns exec "$NS_S" "$@"; }

# ---------------------------------------------------------------------------
# Keys and certificates (fresh on every run). mitmproxy makes its own CA
# (CN=mitmproxy, O=mitmproxy) in $MITMCONF the first time it starts.
PKI=$WORK/pki
MITMCONF=$WORK/mitmproxy
mkdir -p "$PKI" "$MITMCONF" "$WORK/www"
echo "$ME: $(openssl version); $(tcpdump --version 2>&1 | head -1); $(tshark --version | head -1)"
echo "$ME: $("$MITMDUMP" --version 2>/dev/null | tr '\n' ' ')"
echo "$ME: $("$PY" -c 'import ssl, sys; print("python", sys.version.split()[0], "with", ssl.OPENSSL_VERSION)')"
echo "$ME: generating keys and certificates in $PKI"
openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -subj "/CN=tapwatch test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
make_leaf() { # $1 = file stem, $2 = CN, $3 = serial, $4 = extensions
    openssl req -new -newkey rsa:2048 -nodes -sha256 \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$4" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -sha256 -days 825 -set_serial "$3" \
        -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -extfile "$PKI/$1.ext" \
        -out "$PKI/$1.pem" 2>/dev/null
}
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
# The pin of the *pinned* scenarios: the SHA-256 of the real server certificate (DER).
SERVER_PIN=$(openssl x509 -in "$PKI/server.pem" -outform DER | sha256sum | cut -d' ' -f1)
echo "$ME: server.test certificate pin (sha256 of the DER): $SERVER_PIN"
cat "$PKI/server.pem" "$PKI/ca.pem" >"$PKI/server-chain.pem" # for the Python server
# The file s_server -WWW serves (GET /hello.txt): 232 bytes.
printf 'tapwatch TLS capture payload\n%.0s' 1 2 3 4 5 6 7 8 >"$WORK/www/hello.txt"

# ---------------------------------------------------------------------------
# Namespaces and the two veth pairs.
for ns in "$NS_C" "$NS_F" "$NS_S"; do # stale namespaces from an aborted run (only ours)
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        echo "$ME: removing stale namespace $ns"
        ip netns del "$ns"
    fi
done
echo "$ME: creating namespaces $NS_C, $NS_F, $NS_S"
for ns in "$NS_C" "$NS_F" "$NS_S"; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
nsf sysctl -qw net.ipv4.ip_forward=1
# Both pairs are created inside a namespace (never in the root namespace).
ip -n "$NS_C" link add "$IF_C" address "$MAC_C" mtu 1500 gso_max_segs 1 type veth \
    peer name "$IF_I" address "$MAC_I" mtu 1500 gso_max_segs 1 netns "$NS_F"
ip -n "$NS_F" link add "$IF_O" address "$MAC_O" mtu 1500 gso_max_segs 1 type veth \
    peer name "$IF_S" address "$MAC_S" mtu 1500 gso_max_segs 1 netns "$NS_S"
ip -n "$NS_C" addr add "$IP_C/24" dev "$IF_C"
ip -n "$NS_F" addr add "$IP_I/24" dev "$IF_I"
ip -n "$NS_F" addr add "$IP_O/24" dev "$IF_O"
ip -n "$NS_S" addr add "$IP_S/24" dev "$IF_S"
for l in "$NS_C $IF_C" "$NS_F $IF_I" "$NS_F $IF_O" "$NS_S $IF_S"; do
    # shellcheck disable=SC2086
    set -- $l
    ip -n "$1" link set "$2" up
done
ip -n "$NS_C" route add default via "$IP_I" dev "$IF_C"
ip -n "$NS_S" route add default via "$IP_O" dev "$IF_S"
ip -n "$NS_C" neigh replace "$IP_I" lladdr "$MAC_I" dev "$IF_C" nud permanent
ip -n "$NS_F" neigh replace "$IP_C" lladdr "$MAC_C" dev "$IF_I" nud permanent
ip -n "$NS_F" neigh replace "$IP_S" lladdr "$MAC_S" dev "$IF_O" nud permanent
ip -n "$NS_S" neigh replace "$IP_O" lladdr "$MAC_O" dev "$IF_S" nud permanent
for _ in $(seq 50); do
    if ip -n "$NS_C" -br link show "$IF_C" | grep -q 'UP' &&
       ip -n "$NS_F" -br link show "$IF_I" | grep -q 'UP' &&
       ip -n "$NS_F" -br link show "$IF_O" | grep -q 'UP' &&
       ip -n "$NS_S" -br link show "$IF_S" | grep -q 'UP'; then
        break
    fi
    sleep 0.1
done
echo "$ME: $(ip -n "$NS_F" -d link show "$IF_I" | grep -o 'mtu [0-9]*' | head -1)," \
     "$(ip -n "$NS_F" -d link show "$IF_I" | grep -o 'gso_max_segs [0-9]*' | head -1)," \
     "ip_forward=$(nsf sysctl -n net.ipv4.ip_forward) in $NS_F"

# ---------------------------------------------------------------------------
# Scenario definitions: each sets
#   CPORT   client source port (the inside leg's, and the only one without a proxy)
#   SPORT   server port (443, or 80 for plain HTTP)
#   FW      pass | reject-sni | reject-later | reject-string | mitm: the firewall's setup
#   MITM_OPTS  extra mitmdump options (FW=mitm)
#   SRV     server command (run in twfw-s, cwd = the -WWW directory)
#   CLI     client command (run in twfw-c)
#   CLI_IN  bytes for the client's stdin (printf %b format); empty: /dev/null
#   EXPECT  ok = the client must exit 0 (the pinned client exits 0 on a pin mismatch);
#           fail = it must exit non-zero; timeout = it must still be running after
#           CLI_TIMEOUT seconds (default 20), when timeout(1) sends it SIGTERM
#   SRV_EXPECT  exit = the server must exit by itself within 10 s after the client
#           (default); timeout = it must still be running 1 s after the client (it
#           never got a connection), when it is sent SIGTERM
# With FW=mitm the firewall's own source ports (mitmproxy's outside legs) come from ten
# ports per scenario: 41000 + 10 * (CPORT - 40500) + 0..9 (ip_local_port_range in
# twfw-fw; a single port would make a retry by mitmproxy fail with EADDRNOTAVAIL).
S_SERVER=(openssl s_server -4 -naccept 1 -cert "$PKI/server.pem" -key "$PKI/server.key"
          -cert_chain "$PKI/ca.pem" -WWW)
S_CLIENT=(openssl s_client -4 -servername server.test -verify_hostname server.test
          -verify_return_error -ign_eof)
GET='GET /hello.txt HTTP/1.0\r\nHost: server.test\r\n\r\n'
MITM_CA=$MITMCONF/mitmproxy-ca-cert.pem
MTLS=(-Verify 1 -CAfile "$PKI/ca.pem")
CCERT=(-cert "$PKI/client.pem" -key "$PKI/client.key")

define() { # $1 = scenario name; $2 = key log file stem
    local k=$2
    CLI_IN= EXPECT=fail SPORT=443 FW=mitm MITM_OPTS=() CLI_TIMEOUT=20 SRV_EXPECT=exit
    S_ACCEPT=(-accept "$IP_S:443")
    S_CONNECT=(-connect "$IP_S:443")
    PYS=("$PY" "$PEER" server --host "$IP_S" --port 443 --idle 2
         --cert "$PKI/server-chain.pem" --key "$PKI/server.key" --keylog "$k.s")
    PYC=("$PY" "$PEER" client --host "$IP_S" --port 443 --keylog "$k.c")
    case $1 in
    fw-pass-tls13)
        CPORT=40501 FW=pass EXPECT=ok CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    fw-reset-sni)
        CPORT=40502 FW=reject-sni CLI_IN=$GET
        SRV=("${PYS[@]}" --version 1.3)
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    fw-reset-established-tls)
        CPORT=40503 FW=reject-later EXPECT=ok
        SRV=("${PYS[@]}" --version 1.3)
        CLI=("${PYC[@]}" --cafile "$PKI/ca.pem" --version 1.3 --path /one --path /two
             --wait-file "$WORK/go" --expect reset) ;;
    fw-reset-established-http)
        CPORT=40504 SPORT=80 FW=reject-string EXPECT=ok
        SRV=("$PY" "$PEER" server --host "$IP_S" --port 80 --idle 2)
        CLI=("$PY" "$PEER" client --host "$IP_S" --port 80 --path /one --path /blocked
             --expect reset) ;;
    mitm-tls13-ok)
        CPORT=40505 EXPECT=ok
        SRV=("${PYS[@]}" --version 1.3)
        CLI=("${PYC[@]}" --cafile "$MITM_CA" --version 1.3 --path /one --close-notify) ;;
    mitm-downgrade-tls12)
        CPORT=40506 EXPECT=ok MITM_OPTS=(--set tls_version_client_max=TLS1_2)
        SRV=("${PYS[@]}")
        CLI=("${PYC[@]}" --cafile "$MITM_CA" --path /one --close-notify) ;;
    mitm-tls12-client-rejects)
        CPORT=40507 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1_2 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_2 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    mitm-tls13-client-rejects)
        CPORT=40508 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1_3 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    mitm-tls12-mtls)
        CPORT=40509 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1_2 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_2 -CAfile "$MITM_CA" "${CCERT[@]}" -keylogfile "$k.c") ;;
    mitm-tls13-mtls)
        CPORT=40510 CLI_IN=$GET
        # mitmproxy connects twice (a retry for the request): the later -naccept wins.
        # It then never answers the request: the client gives up after 3 s.
        EXPECT=timeout CLI_TIMEOUT=3
        SRV=("${S_SERVER[@]}" -naccept 2 "${S_ACCEPT[@]}" -tls1_3 "${MTLS[@]}" -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_3 -CAfile "$MITM_CA" "${CCERT[@]}" -keylogfile "$k.c") ;;
    mitm-upstream-tls10)
        CPORT=40511 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1 -cipher 'DEFAULT:@SECLEVEL=0' -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -CAfile "$MITM_CA" -keylogfile "$k.c") ;;
    mitm-upstream-cipher)
        CPORT=40512 CLI_IN=$GET
        SRV=("${S_SERVER[@]}" "${S_ACCEPT[@]}" -tls1_2 -cipher ECDHE-ARIA128-GCM-SHA256 -keylogfile "$k.s")
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -CAfile "$MITM_CA" -keylogfile "$k.c") ;;
    mitm-tls13-pinned)
        CPORT=40513 EXPECT=ok
        SRV=("${PYS[@]}")
        CLI=("$PY" "$PEER" pinned --host "$IP_S" --port 443 --pin "$SERVER_PIN" --version 1.3
             --keylog "$k.c") ;;
    mitm-tls12-pinned)
        CPORT=40514 EXPECT=ok
        SRV=("${PYS[@]}")
        CLI=("$PY" "$PEER" pinned --host "$IP_S" --port 443 --pin "$SERVER_PIN" --version 1.2
             --keylog "$k.c") ;;
    fw-reset-syn)
        CPORT=40515 FW=reject-syn CLI_IN=$GET SRV_EXPECT=timeout
        SRV=("${PYS[@]}" --version 1.3)
        CLI=("${S_CLIENT[@]}" "${S_CONNECT[@]}" -tls1_3 -CAfile "$PKI/ca.pem" -keylogfile "$k.c") ;;
    *) echo "$ME: no definition for $1" >&2; exit 2 ;;
    esac
}

# ---------------------------------------------------------------------------
# The firewall: every scenario starts from empty tables in twfw-fw (policies ACCEPT).
fw_reset() {
    nsf iptables -F
    nsf iptables -t nat -F
}
fw_setup() { # $1 = FW kind
    fw_reset
    case $1 in
    pass | reject-later) ;;
    reject-sni)
        # The ClientHello carries the SNI in clear: drop it, forge an RST to the client.
        nsf iptables -A FORWARD -i "$IF_I" -p tcp --dport 443 \
            -m string --string server.test --algo bm -j REJECT --reject-with tcp-reset ;;
    reject-syn)
        # A port closed by policy: the SYN is dropped and answered in the server's
        # name, so nothing of the session reaches the server side.
        nsf iptables -A FORWARD -i "$IF_I" -p tcp --syn --dport 443 \
            -j REJECT --reject-with tcp-reset ;;
    reject-string)
        # An IPS-style rule on a plaintext marker in the second request.
        nsf iptables -A FORWARD -i "$IF_I" -p tcp --dport 80 \
            -m string --string 'GET /blocked' --algo bm -j REJECT --reject-with tcp-reset ;;
    mitm)
        nsf iptables -t nat -A PREROUTING -i "$IF_I" -p tcp --dport 443 \
            -j REDIRECT --to-ports "$MITM_PORT" ;;
    esac
}
# reject-later: inserted once the client has read its first answer. It matches only
# the client's segments that carry data (IP length >= 53: a bare ACK with timestamps is
# 52 bytes), so the client kernel's own RST later still passes.
fw_reject_later() {
    nsf iptables -I FORWARD -i "$IF_I" -p tcp -s "$IP_C" --sport "$CPORT" -d "$IP_S" --dport 443 \
        -m length --length 53:65535 -j REJECT --reject-with tcp-reset
}

start_tcpdump() { # $1 = interface, $2 = output file, $3 = stderr log
    # As in make-tls-captures.sh: whole frames, flushed per packet, --immediate-mode
    # (else the last frames can be lost at SIGINT). A simple command, so that $! is
    # tcpdump itself.
    ip netns exec "$NS_F" tcpdump -i "$1" -s 0 -U --immediate-mode -n -Z root -w "$2" 2>"$3" &
    local pid=$!
    PIDS+=("$pid")
    TCPDUMP_PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q 'listening on' "$3" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$3" >&2; return 1; }
        sleep 0.1
    done
    echo "$ME: tcpdump did not start on $1" >&2
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

wait_listen() { # $1 = namespace, $2 = port, $3 = pid, $4 = log
    for _ in $(seq 150); do
        [ -n "$(ip netns exec "$1" ss -Hltn "sport = :$2")" ] && return 0
        kill -0 "$3" 2>/dev/null || { cat "$4" >&2; echo "$ME: $NAME: process died" >&2; exit 1; }
        sleep 0.1
    done
    echo "$ME: $NAME: nothing listens on port $2 in $1" >&2
    exit 1
}

# Per frame: number, source, destination, TTL, TCP flags, payload length, then per TLS
# record content type / opaque type / handshake type / alert level / alert description /
# record length (several records in one frame are joined with "/").
tshark_view() { # $1 = pcap
    tshark -n -o tcp.reassemble_out_of_order:TRUE -r "$1" -T fields -E occurrence=a -E aggregator=/ \
        -e frame.number -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport -e ip.ttl \
        -e tcp.flags.str -e tcp.len -e tls.record.content_type -e tls.record.opaque_type -e tls.handshake.type \
        -e tls.alert_message.level -e tls.alert_message.desc -e tls.record.length \
        2>/dev/null | sed -e "s/\b${IP_C//./\\.}\b/C/g" -e "s/\b${IP_S//./\\.}\b/S/g" \
                          -e "s/\b${IP_I//./\\.}\b/FWi/g" -e "s/\b${IP_O//./\\.}\b/FWo/g" || true
}

record() { # $1 = scenario name
    NAME=$1
    local dir=$WORK/$1 rc=0 srv_rc=0 mitm= p
    mkdir -p "$dir"
    rm -f "$WORK/go"
    define "$NAME" "$dir/keys"
    nsc sysctl -qw net.ipv4.ip_local_port_range="$CPORT $CPORT"
    FPORT=$((41000 + 10 * (CPORT - 40500)))
    nsf sysctl -qw net.ipv4.ip_local_port_range="$FPORT $((FPORT + 9))"
    fw_setup "$FW"

    TCPDUMP_PIDS=()
    start_tcpdump "$IF_I" "$dir/inside.pcap" "$dir/tcpdump-inside.log"
    start_tcpdump "$IF_O" "$dir/outside.pcap" "$dir/tcpdump-outside.log"
    sleep 0.5 # "listening on" comes right at activation; give the rings a moment

    (trap - EXIT INT TERM; cd "$WORK/www" && exec ip netns exec "$NS_S" "${SRV[@]}") \
        >"$dir/server.log" 2>&1 </dev/null &
    local srv=$!
    PIDS+=("$srv")
    wait_listen "$NS_S" "$SPORT" "$srv" "$dir/server.log"

    if [ "$FW" = mitm ]; then
        (trap - EXIT INT TERM; cd "$WORK" && exec env MITMPROXY_SSLKEYLOGFILE="$dir/keys.m" \
            ip netns exec "$NS_F" "$MITMDUMP" --mode transparent --showhost \
            --listen-host "$IP_I" --listen-port "$MITM_PORT" \
            --set confdir="$MITMCONF" --set ssl_verify_upstream_trusted_ca="$PKI/ca.pem" \
            "${MITM_OPTS[@]}") >"$dir/mitmdump.log" 2>&1 </dev/null &
        mitm=$!
        PIDS+=("$mitm")
        wait_listen "$NS_F" "$MITM_PORT" "$mitm" "$dir/mitmdump.log"
        [ -s "$MITM_CA" ] || { echo "$ME: mitmproxy made no CA in $MITMCONF" >&2; exit 1; }
    fi

    # In the background + wait, so that an INT/TERM is handled at once (cleanup trap).
    if [ -n "$CLI_IN" ]; then
        (trap - EXIT INT TERM; printf '%b' "$CLI_IN" | timeout "$CLI_TIMEOUT" ip netns exec "$NS_C" "${CLI[@]}") \
            >"$dir/client.log" 2>&1 &
    else
        timeout "$CLI_TIMEOUT" ip netns exec "$NS_C" "${CLI[@]}" >"$dir/client.log" 2>&1 </dev/null &
    fi
    local cli=$!
    PIDS+=("$cli")
    if [ "$FW" = reject-later ]; then
        for _ in $(seq 100); do
            grep -q 'first answer read' "$dir/client.log" && break
            kill -0 "$cli" 2>/dev/null || break
            sleep 0.05
        done
        fw_reject_later
        touch "$WORK/go"
    fi
    wait "$cli" || rc=$?
    if [ "$SRV_EXPECT" = timeout ]; then
        wait_pid "$srv" 1 || srv_rc=$?
    else
        wait_pid "$srv" 10 || srv_rc=$?
    fi

    sleep 1 # let the last segments (FIN/RST) go through and be captured
    nsf ss -Htan | grep -v LISTEN | grep -E ":($CPORT|$FPORT|$((FPORT + 1))|$((FPORT + 2))) " | sed "s|^|$ME:   fw sockets left: |" || true
    if [ -n "$mitm" ]; then
        kill -INT "$mitm" 2>/dev/null || true
        wait_pid "$mitm" 5 || true
        sleep 0.5
    fi
    for p in "${TCPDUMP_PIDS[@]}"; do
        kill -INT "$p"
        wait "$p" || true
    done
    for p in inside outside; do
        if grep -Eq '^[1-9][0-9]* packets dropped by kernel' "$dir/tcpdump-$p.log"; then
            echo "$ME: $NAME: tcpdump dropped packets ($p)" >&2
            exit 1
        fi
    done
    fw_reset

    local verdict=as-expected
    if [ "$SRV_EXPECT" = timeout ]; then
        # It never got a connection: stopping it was the plan.
        [ "$srv_rc" -eq 124 ] || verdict="UNEXPECTED: the server exited (exit $srv_rc)"
        srv_rc=0
    fi
    if [ "$verdict" != as-expected ]; then
        : # already decided
    elif [ "$EXPECT" = timeout ]; then
        [ "$rc" -eq 124 ] || verdict="UNEXPECTED: the client did not time out (exit $rc)"
        [ "$srv_rc" -ne 124 ] || verdict="TIMEOUT (server)"
    elif [ "$rc" -eq 124 ] || [ "$srv_rc" -eq 124 ]; then
        verdict="TIMEOUT (client $rc, server $srv_rc)"
    elif [ "$EXPECT" = ok ] && [ "$rc" -ne 0 ]; then
        verdict="UNEXPECTED: client failed (exit $rc)"
    elif [ "$EXPECT" = fail ] && [ "$rc" -eq 0 ]; then
        verdict="UNEXPECTED: client succeeded"
    fi
    echo "$ME: $NAME: client port $CPORT, client exit $rc, server exit $srv_rc: $verdict;" \
         "inside $(grep -E 'packets captured' "$dir/tcpdump-inside.log")," \
         "outside $(grep -E 'packets captured' "$dir/tcpdump-outside.log")"
    grep -hE 'error|alert|Verify return code|verify error|reset|answer|closed|handshake|HTTP/1|pin ' \
        "$dir/client.log" | sed "s|^|$ME:   client: |" | head -10 || true
    grep -hE 'error|alert|ACCEPT|handshake|close|idle|request|accepted' \
        "$dir/server.log" | grep -v '^ACCEPT' | sed "s|^|$ME:   server: |" | head -10 || true
    if [ -n "$mitm" ]; then
        sed "s|^|$ME:   mitmdump: |" "$dir/mitmdump.log" | grep -v 'proxy listening' | head -20 || true
    fi
    case $verdict in as-expected) ;; *) FAILED+=("$NAME") ;; esac

    mkdir -p "$OUT"
    cp "$dir/inside.pcap" "$OUT/$NAME.inside.pcap"
    cp "$dir/outside.pcap" "$OUT/$NAME.outside.pcap"
    if [ -n "$KEYLOG_DIR" ]; then
        mkdir -p "$KEYLOG_DIR"
        cat "$dir"/keys.* 2>/dev/null | sort -u >"$KEYLOG_DIR/$NAME.keys" || true
    fi
    for p in inside outside; do
        echo "$ME:   tshark $p:"
        tshark_view "$OUT/$NAME.$p.pcap" | sed "s|^|$ME:     |"
    done
}

START=$SECONDS
FAILED=()
for s in "${SCENARIOS[@]}"; do
    record "$s"
done

for s in "${SCENARIOS[@]}"; do
    echo "$ME: wrote $OUT/$s.inside.pcap ($(stat -c %s "$OUT/$s.inside.pcap") bytes)," \
         "$OUT/$s.outside.pcap ($(stat -c %s "$OUT/$s.outside.pcap") bytes)"
done
echo "$ME: ${#SCENARIOS[@]} scenarios in $((SECONDS - START)) s"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "$ME: scenarios that did not behave as expected: ${FAILED[*]}" >&2
    exit 1
fi
