#!/usr/bin/env python3
"""HTTP peers (over TLS or plain TCP) for scripts/make-twopoint-captures.sh.

Each sub-command runs exactly one connection and exits; make-twopoint-captures.sh runs
it inside the twfw-c (client) or twfw-s (server) network namespace. The server prints
"ready" once listening; both peers print one line per step, so that the script's log
says what each side saw.

  server  listens on HOST:PORT, accepts one connection; with --cert/--key it is a TLS
          server (Python ssl, i.e. OpenSSL). It answers HTTP/1.1 keep-alive requests
          (every answer carries the same 232-byte body) until the client closes (over
          TLS, a close_notify is answered with one, a bare FIN is not; then close(): a
          FIN), or until --idle seconds pass without a request (also while waiting for
          the TLS handshake): then it close()s the socket (a FIN, no close_notify), as
          a web server's keep-alive or header timeout does.
  client  connects to HOST:PORT, with --cafile over TLS (SNI server.test, name and chain
          verified). Sends one GET per --path, each after the answer to the previous one.
          With --wait-file, after the first answer it prints "first answer read" and
          waits until that file exists before sending the next request (the script
          inserts a firewall rule meanwhile). Exit status 0 when the outcome matches
          --expect: "ok" (every answer read, then close(): a FIN; with --close-notify
          unwrap() first, which sends a close_notify and waits for the peer's) or
          "reset" (ECONNRESET, or an EOF before the answer: over TLS the ssl module
          may report a reset as an EOF).
  pinned  connects to HOST:PORT over TLS (SNI server.test) WITHOUT verifying the chain
          or the name (CERT_NONE: the application checks a pin itself), as an app that
          pins its server's certificate does. After the handshake it compares the
          SHA-256 of the peer's certificate (DER) with --pin; on a mismatch it waits
          --pause seconds (the time an app takes to decide; in TLS 1.3 the server's
          NewSessionTickets have arrived, unread, by then) and close()s WITHOUT
          unwrap(): no application data, no close_notify, no alert; the kernel sends a
          FIN, or an RST when unread data is left in the receive buffer. Exit status 0
          when the outcome matches --expect ("mismatch", the default, or "match").
"""
import argparse
import hashlib
import os
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


def read_head(sock):
    """Read one HTTP head (up to the blank line); b"" on EOF before any byte."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def read_answer(sock):
    """Read one HTTP/1.1 answer with a Content-Length; returns (status line, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF in the answer's head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("EOF in the answer's body")
        body += chunk
    return head.split(b"\r\n")[0].decode(), body


def server(a):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(1)
    log("ready")
    conn, peer = ls.accept()
    ls.close()
    log(f"accepted {peer[0]}:{peer[1]}")
    conn.settimeout(a.idle)
    sock = conn
    try:
        if a.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            versions(ctx, a.version)
            ctx.load_cert_chain(a.cert, a.key)
            if a.keylog:
                ctx.keylog_filename = a.keylog
            # suppress_ragged_eofs=False: a FIN without close_notify raises SSLEOFError,
            # a close_notify reads as b"".
            sock = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
            log(f"handshake done: {sock.version()} {sock.cipher()[0]}")
        n = 0
        while True:
            head = read_head(sock)
            if not head:
                log("client closed (close_notify)" if sock is not conn else "client closed (FIN)")
                if sock is not conn:
                    # The client's close_notify: answer with ours.
                    try:
                        sock = sock.unwrap()
                        log("close_notify sent")
                    except (ssl.SSLError, OSError) as e:
                        log(f"unwrap: {e!r}")
                break
            n += 1
            log(f"request {n}: {head.split(b' ')[1].decode(errors='replace')}")
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    except ssl.SSLEOFError:
        log("client closed without close_notify: closing (FIN, no close_notify)")
    except socket.timeout:
        log(f"idle for {a.idle} s: closing (FIN, no close_notify)")
    except (ssl.SSLError, OSError) as e:
        log(f"connection error: {e!r}")
    # close() without unwrap(): no close_notify; the kernel sends a FIN (or an RST when
    # unread data is left in the receive buffer).
    sock.close()
    log("closed")
    return 0


def client(a):
    raw = socket.create_connection((a.host, a.port), timeout=10)
    local = raw.getsockname()
    log(f"connected from {local[0]}:{local[1]}")
    sock = raw
    outcome = "ok"
    try:
        if a.cafile:
            ctx = ssl.create_default_context(cafile=a.cafile)
            versions(ctx, a.version)
            if a.keylog:
                ctx.keylog_filename = a.keylog
            sock = ctx.wrap_socket(raw, server_hostname=SNI)
            log(f"handshake done: {sock.version()} {sock.cipher()[0]}")
        for i, path in enumerate(a.path):
            if i == 1 and a.wait_file:
                log("first answer read")
                deadline = time.monotonic() + 10
                while not os.path.exists(a.wait_file):
                    if time.monotonic() > deadline:
                        log("wait-file never appeared")
                        return 1
                    time.sleep(0.05)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {SNI}\r\n"
                         "User-Agent: tapwatch-twopoint-capture\r\n\r\n".encode())
            log(f"sent GET {path}")
            status, body = read_answer(sock)
            log(f"answer: {status}, {len(body)} bytes")
    except ConnectionResetError as e:
        log(f"connection reset: {e!r}")
        outcome = "reset"
    except (ConnectionError, ssl.SSLEOFError) as e:
        # Over TLS the ssl module may report a reset as an EOF (OpenSSL's read saw no
        # errno): the capture says which it was.
        log(f"connection ended (EOF or reset): {e!r}")
        outcome = "reset"
    except (ssl.SSLError, OSError) as e:
        log(f"error: {e!r}")
        outcome = "error"
    if outcome == "ok" and a.close_notify and sock is not raw:
        try:
            sock = sock.unwrap()
            log("close_notify sent and received")
        except (ssl.SSLError, OSError) as e:
            log(f"unwrap: {e!r}")
    sock.close()
    log(f"closed; outcome {outcome}")
    return 0 if outcome == a.expect else 1


def pinned(a):
    raw = socket.create_connection((a.host, a.port), timeout=10)
    local = raw.getsockname()
    log(f"connected from {local[0]}:{local[1]}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    versions(ctx, a.version)
    if a.keylog:
        ctx.keylog_filename = a.keylog
    try:
        sock = ctx.wrap_socket(raw, server_hostname=SNI)
    except (ssl.SSLError, OSError) as e:
        log(f"handshake failed: {e!r}")
        raw.close()
        return 1
    log(f"handshake done: {sock.version()} {sock.cipher()[0]}")
    got = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
    outcome = "match" if got == a.pin.lower() else "mismatch"
    log(f"pin {outcome}: peer certificate sha256 {got}, pinned {a.pin.lower()}")
    time.sleep(a.pause)
    # No unwrap(): Python's ssl sends no close_notify on close(); no data was sent.
    sock.close()
    log(f"closed without application data and without close_notify; outcome {outcome}")
    return 0 if outcome == a.expect else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--host", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--version", choices=["1.2", "1.3"])
    s.add_argument("--idle", type=float, default=2.0)
    s.add_argument("--keylog", help="NSS key log file (TLS secrets)")
    c = sub.add_parser("client")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--cafile")
    c.add_argument("--version", choices=["1.2", "1.3"])
    c.add_argument("--path", action="append", required=True)
    c.add_argument("--wait-file")
    c.add_argument("--expect", choices=["ok", "reset"], default="ok")
    c.add_argument("--keylog", help="NSS key log file (TLS secrets)")
    c.add_argument("--close-notify", action="store_true",
                   help="unwrap() (close_notify both ways) before close()")
    q = sub.add_parser("pinned")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--pin", required=True,
                   help="SHA-256 (hex) of the expected server certificate (DER)")
    q.add_argument("--version", choices=["1.2", "1.3"])
    q.add_argument("--pause", type=float, default=0.2)
    q.add_argument("--expect", choices=["mismatch", "match"], default="mismatch")
    q.add_argument("--keylog", help="NSS key log file (TLS secrets)")
    a = p.parse_args()
    return {"server": server, "client": client, "pinned": pinned}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
