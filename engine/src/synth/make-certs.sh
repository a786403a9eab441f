#!/bin/sh
# Regenerates the certificate chain embedded by engine/src/synth.rs (run once, at
# development time; the DER files are committed and the generator never runs this).
# A self-signed RSA-2048 CA "Synth Test CA" and a leaf for *.example.test signed by
# it (subjectAltName *.example.test, the generator's SNIs srv<N>.example.test), both
# valid ten years from the day they were made (2026-11-29, OpenSSL 3).
set -e
cd "$(dirname "$0")"
tmp=$(mktemp -d)
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -sha256 \
  -subj "/O=tapwatch synth/CN=Synth Test CA" -days 3650 \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -outform DER -out ca.der
openssl req -newkey rsa:2048 -nodes -keyout "$tmp/leaf.key" -subj "/CN=*.example.test" \
  -out "$tmp/leaf.csr"
printf 'subjectAltName=DNS:*.example.test,DNS:example.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA ca.der -CAform DER -CAkey "$tmp/ca.key" \
  -set_serial 0x5e17 -days 3650 -sha256 -extfile "$tmp/ext" -outform DER -out leaf.der
rm -r "$tmp"
