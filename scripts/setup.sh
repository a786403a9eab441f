#!/usr/bin/env bash
# Install the Debian packages that tapwatch's tests and helper scripts need:
#   tshark (+ editcap, capinfos from wireshark-common), tcpdump, iproute2 (ip, tc),
#   python3, jq; for the live-capture tests: tcpreplay, curl, openssl, iptables,
#   ethtool; for the sink tests (cli/tests/sinks.rs, which start their own on
#   loopback ports): redis-server, rsyslog.
# Idempotent: when every command is already present it does nothing and takes
# about a second. Must run as root (or with sudo available) on Debian/Ubuntu.
set -euo pipefail

# command -> Debian package that provides it
declare -A PKG_OF=(
    [tshark]=tshark
    [editcap]=wireshark-common
    [capinfos]=wireshark-common
    [tcpdump]=tcpdump
    [ip]=iproute2
    [python3]=python3
    [jq]=jq
    [tc]=iproute2
    [tcpreplay]=tcpreplay
    [curl]=curl
    [openssl]=openssl
    [iptables]=iptables
    [ethtool]=ethtool
    [redis-server]=redis-server
    [rsyslogd]=rsyslog
)

missing_pkgs=()
for cmd in tshark editcap capinfos tcpdump ip python3 jq tc tcpreplay curl openssl iptables ethtool redis-server rsyslogd; do
    if command -v "$cmd" >/dev/null 2>&1; then
        echo "setup: $cmd present ($(command -v "$cmd"))"
    else
        pkg=${PKG_OF[$cmd]}
        echo "setup: $cmd missing, will install package $pkg"
        case " ${missing_pkgs[*]-} " in
            *" $pkg "*) ;;
            *) missing_pkgs+=("$pkg") ;;
        esac
    fi
done

if [ ${#missing_pkgs[@]} -eq 0 ]; then
    echo "setup: all tools present, nothing to do"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup: need root (or sudo) to install: ${missing_pkgs[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive

echo "setup: preseeding wireshark-common/install-setuid=false"
echo "wireshark-common wireshark-common/install-setuid boolean false" \
    | "${SUDO[@]}" debconf-set-selections

echo "setup: apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq

echo "setup: apt-get install ${missing_pkgs[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing_pkgs[@]}" >/dev/null

for cmd in tshark editcap capinfos tcpdump ip python3 jq tc tcpreplay curl openssl iptables ethtool redis-server rsyslogd; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "setup: $cmd still missing after install" >&2
        exit 1
    fi
done
echo "setup: installed ${missing_pkgs[*]} ($(tshark --version 2>/dev/null | head -n1 || true))"
