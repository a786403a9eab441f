#!/bin/sh
# Regenerates the certificate chains embedded by engine/src/synth.rs (run once, at
# development time; the DER files are committed and the generator never runs this).
#
# `make-certs.sh server` (ca.der, leaf.der): a self-signed RSA-2048 CA "Synth Test
# CA" and a leaf for *.example.test signed by it (subjectAltName *.example.test, the
# generator's SNIs srv<N>.example.test), both valid ten years from the day they were
# made (2026-11-29, OpenSSL 3). The real servers' chain.
#
# `make-certs.sh inspect` (inspect-ca.der, inspect-leaf.der): the TLS-inspecting
# middlebox of `tapwatch synth --two-point`: its own RSA-2048 CA "Synth Inspection
# CA" and the leaf it re-signs for the client, with the real leaf's subject and
# subjectAltName but its own key, serial and issuer (made 2026-11-29, OpenSSL 3).
#
# With no argument, both (which changes the one-point generator's bytes: the server
# chain is in every TLS 1.2 session it writes).
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -r "$tmp"' EXIT
printf 'subjectAltName=DNS:*.example.test,DNS:example.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tmp/ext"

# make_chain CA_SUBJECT CA_FILE LEAF_FILE SERIAL
make_chain() {
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -sha256 \
    -subj "$1" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -outform DER -out "$2"
  openssl req -newkey rsa:2048 -nodes -keyout "$tmp/leaf.key" -subj "/CN=*.example.test" \
    -out "$tmp/leaf.csr"
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$2" -CAform DER -CAkey "$tmp/ca.key" \
    -set_serial "$4" -days 3650 -sha256 -extfile "$tmp/ext" -outform DER -out "$3"
}

case "${1:-all}" in
  server) make_chain "/O=tapwatch synth/CN=Synth Test CA" ca.der leaf.der 0x5e17 ;;
  inspect) make_chain "/O=tapwatch synth inspection/CN=Synth Inspection CA" inspect-ca.der inspect-leaf.der 0x1a5e17 ;;
  all)
    make_chain "/O=tapwatch synth/CN=Synth Test CA" ca.der leaf.der 0x5e17
    make_chain "/O=tapwatch synth inspection/CN=Synth Inspection CA" inspect-ca.der inspect-leaf.der 0x1a5e17
    ;;
  *) echo "usage: $0 [server|inspect|all]" >&2; exit 2 ;;
esac
