#!/usr/bin/env python3
"""TLS peers for scripts/make-tls-captures.sh (Python's ssl module, i.e. OpenSSL).

Each sub-command runs exactly one connection and exits; make-tls-captures.sh runs it
inside the twtls-c (client) or twtls-s (server) network namespace. Servers print
"ready" once listening; every peer prints one line per step, so that the script's log
says what each side saw.

Clients (connect to HOST:PORT, SNI server.test):
  client-verify      ssl.create_default_context(cafile=...): verifies the chain and the
                     name; on success sends a GET and reads the answer. Exit 0 if the
                     outcome matches --expect (fail|ok).
  client-pinned      verification off (the app checks a pin itself): handshake, compare
                     the server certificate's SHA-256 with --pin (wrong on purpose),
                     then close() without application data and without close_notify.
  client-notify-rst  trusts --cafile; sends a GET, reads the whole answer, unwrap()
                     (close_notify out, waits for the server's close_notify), then
                     SO_LINGER {1,0} + close(): an RST after an orderly TLS close.
Servers (listen on HOST:PORT, accept one connection):
  server-silent      plain TCP: reads one TLS record (the ClientHello), then closes
                     (FIN) without answering; --http first writes an HTTP 400.
  server-notify      TLS server for client-notify-rst: reads the request, answers,
                     waits for the client's close_notify, answers it, then waits for
                     the client's FIN or RST.
"""
import argparse
import hashlib
import socket
import ssl
import sys
import time

SNI = "server.test"
BODY = b"tapwatch TLS capture payload\n" * 8


def log(*a):
    print(*a, flush=True)


def versions(ctx, v):
    if v == "1.2":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif v == "1.3":
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3


def keylog(ctx, path):
    if path:
        ctx.keylog_filename = path


def request():
    return b"GET / HTTP/1.0\r\nHost: server.test\r\nUser-Agent: tapwatch-tls-capture\r\n\r\n"


def read_http(sock):
    """Read an HTTP/1.0 request head (server) or a response up to Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def connect(a):
    s = socket.create_connection((a.host, a.port), timeout=10)
    log("connected from %s:%d" % s.getsockname())
    return s


def client_verify(a):
    ctx = ssl.create_default_context(cafile=a.cafile)
    versions(ctx, a.version)
    keylog(ctx, a.keylog)
    raw = connect(a)
    try:
        s = ctx.wrap_socket(raw, server_hostname=SNI)
    except ssl.SSLError as e:
        log("handshake failed: %s" % e)
        raw.close()
        return 0 if a.expect == "fail" else 1
    log("handshake ok: %s %s" % (s.version(), s.cipher()[0]))
    s.sendall(request())
    got = read_http(s)
    log("received %d bytes" % len(got))
    s.close()
    return 0 if a.expect == "ok" else 1


def client_pinned(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    versions(ctx, a.version)
    keylog(ctx, a.keylog)
    raw = connect(a)
    s = ctx.wrap_socket(raw, server_hostname=SNI)
    log("handshake ok: %s %s" % (s.version(), s.cipher()[0]))
    der = s.getpeercert(binary_form=True)
    got = hashlib.sha256(der).hexdigest()
    if got == a.pin.lower():
        log("pin matched (unexpected)")
        return 1
    log("pin mismatch: server cert sha256 %s, pinned %s: closing" % (got, a.pin))
    # The time an application takes to decide; it also makes the close deterministic:
    # in TLS 1.3 the server's NewSessionTickets have arrived (unread) by then.
    time.sleep(a.pause)
    s.close()  # no SSL_shutdown: no close_notify, just the TCP close
    return 0


def client_notify_rst(a):
    ctx = ssl.create_default_context(cafile=a.cafile)
    versions(ctx, a.version)
    keylog(ctx, a.keylog)
    raw = connect(a)
    s = ctx.wrap_socket(raw, server_hostname=SNI)
    log("handshake ok: %s %s" % (s.version(), s.cipher()[0]))
    s.sendall(request())
    got = read_http(s)
    log("received %d bytes" % len(got))
    plain = s.unwrap()  # close_notify out, then waits for the server's close_notify
    log("close_notify exchanged")
    plain.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    plain.close()
    log("closed with SO_LINGER {1,0} (RST)")
    return 0


def listener(a):
    l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((a.host, a.port))
    l.listen(4)
    l.settimeout(30)
    log("ready")
    c, peer = l.accept()
    c.settimeout(10)
    log("accepted %s:%d" % peer)
    l.close()
    return c


def recv_exact(c, n):
    data = b""
    while len(data) < n:
        chunk = c.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def server_silent(a):
    c = listener(a)
    hdr = recv_exact(c, 5)
    body = recv_exact(c, int.from_bytes(hdr[3:5], "big")) if len(hdr) == 5 else b""
    log("read a %d-byte record, type %d" % (len(hdr) + len(body), hdr[0] if hdr else -1))
    if a.http:
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        log("sent HTTP/1.1 400")
    c.close()
    log("closed")
    return 0


def server_notify(a):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    versions(ctx, a.version)
    keylog(ctx, a.keylog)
    c = listener(a)
    # No Nagle: the answer must not wait for the client's delayed ACK of a ticket.
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(c, server_side=True)
    log("handshake ok: %s %s" % (s.version(), s.cipher()[0]))
    req = read_http(s)
    log("request %d bytes" % len(req))
    s.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
              % len(BODY) + BODY)
    rest = s.recv(4096)  # b"" once the client's close_notify arrives
    log("client close_notify received" if rest == b"" else "unexpected data %r" % rest)
    plain = s.unwrap()  # our close_notify
    log("close_notify sent")
    try:
        while plain.recv(4096):
            pass
        log("client FIN")
    except ConnectionResetError:
        log("client RST")
    plain.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["client-verify", "client-pinned", "client-notify-rst",
                                    "server-silent", "server-notify"])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--version", choices=["1.2", "1.3", "any"], default="any")
    p.add_argument("--cafile")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--keylog", help="write TLS secrets (NSS key log format) here")
    p.add_argument("--expect", choices=["ok", "fail"], default="ok")
    p.add_argument("--pin", default="00" * 32)
    p.add_argument("--pause", type=float, default=0.2)
    p.add_argument("--http", action="store_true")
    a = p.parse_args()
    log("python %s, %s" % (sys.version.split()[0], ssl.OPENSSL_VERSION))
    fn = {"client-verify": client_verify, "client-pinned": client_pinned,
          "client-notify-rst": client_notify_rst, "server-silent": server_silent,
          "server-notify": server_notify}[a.mode]
    return fn(a)


if __name__ == "__main__":
    sys.exit(main())
