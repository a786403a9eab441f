#!/usr/bin/env python3
"""Cross-check tapwatch's per-session TLS facts against tshark.

Usage:
    tls-crosscheck.py [--tapwatch BIN] [--tshark BIN] [--verbose] [CAPTURE ...]

Without CAPTURE arguments it reads every capture of tests/captures/tls/ and of
tests/corpus/*/ (captures without any TLS on either side are listed and skipped).

For each capture, tapwatch (`replay -q --workers 1`) and tshark run on it:

    tshark -n -o tcp.reassemble_out_of_order:TRUE -r F -d tcp.port==443,tls
        [-d tcp.port==N,tls ...] -Y tls -T fields -e tcp.stream -e ip.src -e ipv6.src
        -e tcp.srcport -e tcp.dstport -e tls.record.content_type -e tls.handshake.type
        -e tls.alert_message.level -e tls.alert_message.desc -e tls.record.length
        (plus frame.number, frame.time_epoch, ip.dst, ipv6.dst, tls.handshake.ja3)

tshark dissects by port, so every server port of tapwatch's records other than 443 gets
a `-d tcp.port==N,tls`, except the ports whose own dissector follows STARTTLS or a proxy
into TLS (NATIVE_PORTS below): forcing TLS there would hide what tshark sees. The option
tcp.reassemble_out_of_order is needed: without it tshark 4.0 misses records sent out of
order (zeek/hrr frame 11, tls-fingerprint-alert frame 12; docs/design/tls-observation.md
section 6).

Each TLS frame tshark shows is given to the tapwatch record of its endpoint pair whose
time range holds it (port reuse gives several), its sender's role taken from the
record. Then, per session:

  1. alert-missing: every plaintext alert tshark shows (level and description present)
     is in tapwatch's `alerts`, unencrypted, with the same sender role, level and
     description (compared as a multiset);
  2. alert-extra: tapwatch reports no plaintext alert that tshark does not show;
  3. client-hello: if tshark shows a ClientHello (handshake type 1), tapwatch's
     `handshake` is not "none", and `ja4` and `client_random` are present unless
     tapwatch read an SSLv2-format hello (`tls.sslv2_client_hello`, which has no JA4 and
     no random by design);
     server-hello: if tshark shows a ServerHello (type 2 in a TLS record; an SSLv2
     CLIENT-MASTER-KEY is also type 2, so frames without a record content type are not
     counted), `tls_version` is not null;
  4. ja3: tapwatch's `tls.ja3` equals tshark's `tls.handshake.ja3` for the session's
     first ClientHello (tshark computes none for SSLv2 hellos);
  5. no-record: every TLS frame tshark shows belongs to a tapwatch record.

tshark never shows a level or description for an encrypted alert (TLS 1.2 after
ChangeCipherSpec: "Encrypted Alert"; TLS 1.3: an opaque application_data record), so
encrypted and inferred alerts are tapwatch's alone and are not compared.

Known, explained differences are in ALLOWED below: each names a capture, the client port
(or None for every session of the capture), the check, and why. An allowed difference is
reported as "allowed"; an entry that no longer matches any difference is an error (the
list must stay exact).

Prints a report per capture and a final line
    tls-crosscheck: F captures (T with TLS), S sessions, D disagreements, A allowed
and exits 1 on any disagreement or unused allow-list entry, 0 otherwise, 2 on usage or
tool errors (tshark or tapwatch missing).

Python 3.11+ standard library only; needs tshark (scripts/setup.sh installs it) and a
release build of tapwatch (`cargo build --release`).
"""
from __future__ import annotations

import argparse
import calendar
import glob
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tls.record.content_type",
    "tls.handshake.type",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tls.record.length",
    "tls.handshake.ja3",
]

# Ports whose tshark dissector reads the cleartext protocol and then hands over to TLS
# (STARTTLS, a SOCKS proxy): no `-d` for them. tapwatch detects TLS only at the start of
# each direction, so these sessions show no TLS facts (the allow-list says so).
NATIVE_PORTS = {25, 110, 143, 389, 587, 1080, 3306, 5222, 5432}

# IANA TLS Alert registry; independent of tapwatch's own table (engine/src/tls/names.rs).
ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}
LEVELS = {1: "warning", 2: "fatal"}

CHECKS = ("no-record", "alert-missing", "alert-extra", "client-hello", "server-hello", "ja3")


@dataclass(frozen=True)
class Allowed:
    capture: str  # path relative to the repository root
    client_port: int | None  # None: every session of the capture
    checks: tuple[str, ...]  # some of CHECKS
    why: str


# Known differences, each explained. Keep this list exact: an entry (or one of its checks)
# that matches nothing fails the run.
STARTTLS = (
    "STARTTLS (or another cleartext preamble) before TLS: out of scope, tapwatch looks for "
    "TLS only at the start of each direction (docs/design/tls-observation.md section 6); "
    "tshark's own dissector for the port follows the upgrade"
)
# A session whose TLS tapwatch does not see fails these three checks together.
HELLO_CHECKS = ("client-hello", "server-hello", "ja3")
TUNNELLED = (
    "the TCP session is tunnelled; tapwatch does not decapsulate tunnels and writes no "
    "record (scripts/crosscheck-all.sh checks the frames are counted as skipped)"
)
ALLOWED: list[Allowed] = [
    Allowed("tests/corpus/zeek/geneve-47101.pcap", None, ("no-record",), "GENEVE over UDP: " + TUNNELLED),
    Allowed("tests/corpus/zeek/pppoe-over-qinq.pcap", None, ("no-record",), "PPPoE in QinQ: " + TUNNELLED),
    Allowed("tests/corpus/zeek/smtp-starttls.pcap", None, HELLO_CHECKS, "SMTP: " + STARTTLS),
    Allowed("tests/corpus/zeek/pop3-starttls.pcap", None, HELLO_CHECKS, "POP3: " + STARTTLS),
    Allowed("tests/corpus/zeek/xmpp-starttls.pcap", None, HELLO_CHECKS, "XMPP: " + STARTTLS),
    Allowed("tests/corpus/zeek/psql-aws-ssl-require.pcap", None, HELLO_CHECKS, "PostgreSQL SSLRequest: " + STARTTLS),
    Allowed("tests/corpus/zeek/tls-13-amazon-rds.pcap", None, HELLO_CHECKS, "MySQL: " + STARTTLS),
    Allowed("tests/corpus/arkime/mysql-tls.pcap", None, HELLO_CHECKS, "MySQL: " + STARTTLS),
    Allowed("tests/corpus/arkime/ldap-ssl.pcap", None, HELLO_CHECKS, "LDAP StartTLS: " + STARTTLS),
    Allowed("tests/corpus/zeek/socks-with-ssl.pcap", None, HELLO_CHECKS, "SOCKS: " + STARTTLS),
]


# --------------------------------------------------------------------------- helpers


def norm_ip(s: str) -> str:
    s = s.strip().split(",")[-1]  # tunnels: the innermost header is the last
    try:
        return ipaddress.ip_address(s).compressed
    except ValueError:
        return s.lower()


def ints(s: str) -> list[int]:
    out = []
    for x in s.split(","):
        x = x.strip()
        if x:
            try:
                out.append(int(x, 0))
            except ValueError:
                pass
    return out


def epoch_to_ns(s: str) -> int:
    whole, _, frac = s.strip().partition(".")
    return int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9])


def rfc3339_to_ns(s: str) -> int:
    # "2026-11-22T07:12:58.376732000Z": tapwatch always writes nine digits and Z.
    date, _, frac = s.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def rel(p: str) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return p


def ep(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --------------------------------------------------------------------------- both sides


@dataclass
class Frame:
    number: int
    ts: int
    stream: int
    src: tuple[str, int]
    dst: tuple[str, int]
    content_types: list[int]
    hs_types: list[int]
    alerts: list[tuple[int, int]]  # (level, desc)
    ja3: str


@dataclass
class Session:
    rec: dict
    point: dict
    frames: list[Frame] = field(default_factory=list)

    @property
    def client(self) -> tuple[str, int]:
        return (norm_ip(self.rec["client"]["ip"]), int(self.rec["client"]["port"]))

    @property
    def server(self) -> tuple[str, int]:
        return (norm_ip(self.rec["server"]["ip"]), int(self.rec["server"]["port"]))

    def role(self, src: tuple[str, int]) -> str:
        return "client" if src == self.client else "server"


def run_tapwatch(binary: str, capture: str) -> list[dict]:
    proc = subprocess.run(
        [binary, "replay", "-q", "--workers", "1", capture], capture_output=True, text=True
    )
    # Exit status 1: a damaged capture, read up to the damage (crosscheck-all.sh).
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"tapwatch exit {proc.returncode} on {capture}: {proc.stderr.strip()[:300]}")
    return [json.loads(l) for l in proc.stdout.splitlines() if l.strip()]


def run_tshark(binary: str, capture: str, ports: list[int]) -> list[Frame]:
    cmd = [binary, "-n", "-o", "tcp.reassemble_out_of_order:TRUE", "-r", capture, "-d", "tcp.port==443,tls"]
    for p in ports:
        cmd += ["-d", f"tcp.port=={p},tls"]
    cmd += ["-Y", "tls", "-T", "fields", "-E", "separator=/t", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0 and not proc.stdout.strip():
        raise RuntimeError(f"tshark exit {proc.returncode} on {capture}: {proc.stderr.strip()[:300]}")
    frames = []
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        v = line.split("\t")
        v += [""] * (len(FIELDS) - len(v))
        g = dict(zip(FIELDS, v))
        src_ip, dst_ip = g["ip.src"] or g["ipv6.src"], g["ip.dst"] or g["ipv6.dst"]
        sport, dport = ints(g["tcp.srcport"]), ints(g["tcp.dstport"])
        if not src_ip or not dst_ip or not sport or not dport:
            continue
        levels, descs = ints(g["tls.alert_message.level"]), ints(g["tls.alert_message.desc"])
        frames.append(
            Frame(
                number=int(g["frame.number"]),
                ts=epoch_to_ns(g["frame.time_epoch"]),
                stream=(ints(g["tcp.stream"]) or [-1])[-1],
                src=(norm_ip(src_ip), sport[-1]),
                dst=(norm_ip(dst_ip), dport[-1]),
                content_types=ints(g["tls.record.content_type"]),
                hs_types=ints(g["tls.handshake.type"]),
                alerts=list(zip(levels, descs)),
                ja3=g["tls.handshake.ja3"].split(",")[0],
            )
        )
    return frames


def tapwatch_point(rec: dict) -> dict:
    points = rec.get("points") or {}
    # One capture file, one point.
    return next(iter(points.values()), {})


def assign(frames: list[Frame], recs: list[dict]) -> tuple[list[Session], list[Frame]]:
    """Gives each tshark frame to the record of its endpoint pair whose time range holds
    it (the latest-starting one, for port reuse)."""
    sessions = [Session(rec=r, point=tapwatch_point(r)) for r in recs]
    by_key: dict[frozenset, list[tuple[int, int, Session]]] = {}
    for s in sessions:
        key = frozenset((s.client, s.server))
        t0 = rfc3339_to_ns(s.rec["ts_start"])
        t1 = rfc3339_to_ns(s.rec["ts_end"])
        by_key.setdefault(key, []).append((t0, t1, s))
    lone = []
    for f in frames:
        cands = [
            c
            for c in by_key.get(frozenset((f.src, f.dst)), [])
            if c[0] <= f.ts <= c[1]
        ]
        if not cands:
            lone.append(f)
            continue
        max(cands, key=lambda c: c[0])[2].frames.append(f)
    return sessions, lone


# --------------------------------------------------------------------------- checks


def tapwatch_desc_number(name: str) -> int | None:
    for k, v in ALERT_NAMES.items():
        if v == name:
            return k
    try:
        return int(name)
    except ValueError:
        return None


def fmt_alerts(c: Counter) -> str:
    return ", ".join(f"{r} {l} {d}" + (f" x{n}" if n > 1 else "") for (r, l, d), n in sorted(c.items())) or "none"


@dataclass
class Finding:
    check: str
    client_port: int | None
    text: str
    allowed: Allowed | None = None


def check_session(s: Session) -> tuple[list[Finding], str]:
    p = s.point
    tls = p.get("tls") or {}
    port = s.client[1]
    out: list[Finding] = []

    ts_alerts: Counter = Counter()
    for f in s.frames:
        for lvl, desc in f.alerts:
            ts_alerts[(s.role(f.src), LEVELS.get(lvl, str(lvl)), str(desc))] += 1
    tw_alerts: Counter = Counter()
    for a in p.get("alerts") or []:
        if a.get("encrypted"):
            continue
        num = tapwatch_desc_number(a["description"])
        tw_alerts[(a["from"], a["level"], str(num) if num is not None else a["description"])] += 1
    named = lambda c: Counter({(r, l, ALERT_NAMES.get(int(d), d) if d.isdigit() else d): n for (r, l, d), n in c.items()})  # noqa: E731
    missing = ts_alerts - tw_alerts
    extra = tw_alerts - ts_alerts
    if missing:
        frames = [f.number for f in s.frames if f.alerts]
        out.append(
            Finding("alert-missing", port, f"tshark shows plaintext alert(s) {fmt_alerts(named(missing))} (frames {frames}) that tapwatch does not report")
        )
    if extra:
        out.append(Finding("alert-extra", port, f"tapwatch reports plaintext alert(s) {fmt_alerts(named(extra))} that tshark does not show"))

    # A TLS record (content type present) with handshake type 1 / 2. SSLv2 records have
    # no content type in tshark: their type 1 is a CLIENT-HELLO, 2 a CLIENT-MASTER-KEY.
    ch = [f for f in s.frames if 1 in f.hs_types and (f.content_types or s.role(f.src) == "client")]
    sh = [f for f in s.frames if 2 in f.hs_types and 22 in f.content_types]
    sslv2 = bool(tls.get("sslv2_client_hello"))
    if ch:
        probs = []
        if p.get("handshake") in (None, "none"):
            probs.append(f"handshake is {p.get('handshake')!r}")
        if not sslv2:
            if not p.get("ja4"):
                probs.append("no ja4")
            if not p.get("client_random"):
                probs.append("no client_random")
        if probs:
            out.append(Finding("client-hello", port, f"tshark shows a ClientHello (frame {ch[0].number}) but tapwatch has " + ", ".join(probs)))
        first_ja3 = next((f.ja3 for f in ch if f.ja3), "")
        if first_ja3 and tls.get("ja3") != first_ja3:
            out.append(Finding("ja3", port, f"tshark's JA3 of the first ClientHello (frame {ch[0].number}) is {first_ja3}, tapwatch says {tls.get('ja3')}"))
    if sh and p.get("tls_version") is None:
        out.append(Finding("server-hello", port, f"tshark shows a ServerHello (frame {sh[0].number}) but tapwatch's tls_version is null"))

    summary = (
        f"tshark: {len(s.frames)} TLS frames"
        + (", ClientHello" if ch else "")
        + (", ServerHello" if sh else "")
        + f", plaintext alerts: {fmt_alerts(named(ts_alerts))} | tapwatch: handshake {p.get('handshake')}, "
        f"tls_version {p.get('tls_version')}, plaintext alerts: {fmt_alerts(named(tw_alerts))}, "
        f"encrypted alerts: {sum(1 for a in p.get('alerts') or [] if a.get('encrypted'))}, verdict {s.rec.get('verdict')}"
    )
    return out, summary


def tapwatch_saw_tls(rec: dict) -> bool:
    p = tapwatch_point(rec)
    return p.get("handshake") not in (None, "none") or bool(p.get("tls"))


def crosscheck_file(capture: str, tapwatch: str, tshark: str, verbose: bool, used: set[tuple[Allowed, str]]) -> tuple[int, int, int, bool]:
    """Returns (sessions compared, disagreements, allowed, had TLS)."""
    name = rel(capture)
    recs = run_tapwatch(tapwatch, capture)
    ports = sorted({int(r["server"]["port"]) for r in recs} - {443} - NATIVE_PORTS)
    frames = run_tshark(tshark, capture, ports)
    if not frames and not any(tapwatch_saw_tls(r) for r in recs):
        if verbose:
            print(f"{name}: no TLS (tshark and tapwatch agree), skipped")
        return 0, 0, 0, False
    sessions, lone = assign(frames, recs)
    findings: list[Finding] = []
    lines: list[str] = []
    n = 0
    for s in sessions:
        if not s.frames and not tapwatch_saw_tls(s.rec):
            continue
        n += 1
        fs, summary = check_session(s)
        status = "ok"
        for f in fs:
            f.allowed = match_allowed(name, f)
            if f.allowed:
                used.add((f.allowed, f.check))
        if any(not f.allowed for f in fs):
            status = "FAIL"
        elif fs:
            status = "allowed"
        streams = sorted({f.stream for f in s.frames})
        lines.append(
            f"  [{status:7}] {ep(*s.client)} -> {ep(*s.server)} tcp.stream {','.join(map(str, streams)) or '-'}: {summary}"
        )
        for f in fs:
            tag = "ALLOWED " if f.allowed else "MISMATCH"
            lines.append(f"            {tag} {f.check}: {f.text}")
            if f.allowed:
                lines.append(f"                     (allow-list: {f.allowed.why})")
            findings.append(f)
    if lone:
        f = Finding(
            "no-record",
            None,
            f"{len(lone)} TLS frame(s) tshark shows belong to no tapwatch record (frames "
            f"{[x.number for x in lone[:10]]}{' ...' if len(lone) > 10 else ''})",
        )
        f.allowed = match_allowed(name, f)
        if f.allowed:
            used.add((f.allowed, f.check))
        findings.append(f)
        tag = "ALLOWED " if f.allowed else "MISMATCH"
        lines.append(f"  [{'allowed' if f.allowed else 'FAIL':7}] {tag} no-record: {f.text}")
        if f.allowed:
            lines.append(f"                     (allow-list: {f.allowed.why})")
    bad = sum(1 for f in findings if not f.allowed)
    allowed = sum(1 for f in findings if f.allowed)
    status = "FAIL" if bad else ("allowed differences" if allowed else "ok")
    extra = f", -d tcp.port=={','.join(map(str, ports))},tls" if ports else ""
    print(f"{name}: {status} ({n} TLS session(s), {len(frames)} tshark TLS frames{extra})")
    if verbose or bad or allowed:
        for l in lines:
            print(l)
    return n, bad, allowed, True


def match_allowed(capture: str, f: Finding) -> Allowed | None:
    for a in ALLOWED:
        if a.capture == capture and f.check in a.checks and (a.client_port is None or a.client_port == f.client_port):
            return a
    return None


def default_captures() -> list[str]:
    files = sorted(glob.glob(str(ROOT / "tests/captures/tls/*.pcap")))
    for d in sorted(glob.glob(str(ROOT / "tests/corpus/*/"))):
        files += sorted(glob.glob(os.path.join(d, "*.pcap")) + glob.glob(os.path.join(d, "*.pcapng")))
    return files


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Cross-check tapwatch's per-session TLS facts (alerts, hellos) against tshark.",
        epilog="Exit status: 0 agreement, 1 disagreement(s) or a stale allow-list entry, 2 usage or tool error.",
    )
    ap.add_argument("captures", nargs="*", help="captures (default: tests/captures/tls and tests/corpus)")
    ap.add_argument("--tapwatch", default=os.environ.get("TAPWATCH", str(ROOT / "target/release/tapwatch")))
    ap.add_argument("--tshark", default=os.environ.get("TSHARK", "tshark"))
    ap.add_argument("--verbose", "-v", action="store_true", help="print every session, not only the failing ones")
    args = ap.parse_args()
    if shutil.which(args.tshark) is None:
        print(f"tls-crosscheck: {args.tshark} not found (run scripts/setup.sh)", file=sys.stderr)
        return 2
    if not os.access(args.tapwatch, os.X_OK):
        print(f"tls-crosscheck: no tapwatch binary at {args.tapwatch} (cargo build --release)", file=sys.stderr)
        return 2
    for a in ALLOWED:
        unknown = set(a.checks) - set(CHECKS)
        if unknown:
            print(f"tls-crosscheck: allow-list entry for {a.capture} names unknown checks {unknown}", file=sys.stderr)
            return 2
    captures = args.captures or default_captures()
    used: set[tuple[Allowed, str]] = set()
    total = [0, 0, 0, 0]
    for c in captures:
        if not os.path.isfile(c):
            print(f"tls-crosscheck: no such capture: {c}", file=sys.stderr)
            return 2
        try:
            n, bad, allowed, had = crosscheck_file(c, args.tapwatch, args.tshark, args.verbose, used)
        except RuntimeError as e:
            print(f"tls-crosscheck: {e}", file=sys.stderr)
            return 2
        total[0] += n
        total[1] += bad
        total[2] += allowed
        total[3] += int(had)
    stale = 0
    if not args.captures:
        # Only a full run can tell that an entry matches nothing.
        for a in ALLOWED:
            for c in a.checks:
                if (a, c) not in used:
                    print(
                        f"tls-crosscheck: STALE allow-list entry (no such difference any more; "
                        f"remove it): {a.capture} port {a.client_port or 'any'} check {c}"
                    )
                    stale += 1
    print(
        f"tls-crosscheck: {len(captures)} captures ({total[3]} with TLS), {total[0]} sessions, "
        f"{total[1]} disagreements, {total[2]} allowed, {stale} stale allow-list entries"
    )
    return 1 if total[1] or stale else 0


if __name__ == "__main__":
    sys.exit(main())
