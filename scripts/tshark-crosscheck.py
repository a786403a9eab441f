#!/usr/bin/env python3
"""Cross-check tapwatch's per-session TCP facts against tshark.

Usage:
    tshark-crosscheck.py CAPTURE VERDICTS.jsonl [--point NAME] [--verbose] [--lenient-reuse]
    tshark-crosscheck.py CAPTURE --tshark-only [--json]

VERDICTS.jsonl is the output of `tapwatch replay NAME=CAPTURE` (one JSON object per
line); NAME, the capture point, defaults to the capture file's stem (demo.pcap -> demo).

tshark dissects CAPTURE; its TCP packets are grouped into sessions by the unordered
endpoint pair {(ip, port), (ip, port)} (as tapwatch keys them), and, when tshark splits
one endpoint pair into several tcp.stream values (port reuse), into one session per
stream. Each session is matched with the tapwatch record(s) for the same endpoint pair
(by time range when there are several) and, per direction as tapwatch decided the
roles, these facts are compared:

    packets, bytes (sum of frame.len), payload_bytes (sum of tcp.len), syn_count
    (segments with SYN set and RST clear: normally the client's SYN and the server's
    SYN-ACK), fin_count (FIN set, RST clear), rst_count,
    the first SYN / SYN-ACK, FIN and RST events (ts, raw seq, raw ack, ttl, ip_id,
    payload_len), the point totals (packets, bytes, which roles sent FIN / RST), the
    role decision, and that every packet lies within [ts_start, ts_end].

Retransmission counts are compared too, but a difference is a warning (tshark's
tcp.analysis.retransmission also flags fast/spurious retransmissions its own way).
Every tshark session must have exactly one tapwatch record and vice versa. Where the
two split one endpoint pair differently (tshark's tcp.stream port-reuse heuristics are
not tapwatch's), --lenient-reuse regroups that pair's packets by the records' time
ranges and reports a warning instead of unmatched sessions.

Prints a per-session report and a final line
    crosscheck: N sessions, M mismatches, W warnings
and exits 1 on any mismatch, 0 otherwise (2 on usage or tool errors).

--tshark-only prints the sessions derived from tshark (no VERDICTS needed); with
--json, one JSON object per session, in the shape of the tapwatch record's TCP facts
(roles guessed: SYN sender, else SYN-ACK receiver, else the lower port is the server).

Python 3.11+ standard library only; needs tshark (scripts/setup.sh installs it).
"""
from __future__ import annotations

import argparse
import calendar
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.flags.fin",
    "tcp.flags.reset",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.len",
    "tcp.stream",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "ip.ttl",
    "ipv6.hlim",
    "ip.id",
]
DISPLAY_FILTER = "tcp && !icmp && !icmpv6"
TSHARK_PREFS = [
    # Fragments are skipped, not reassembled: tapwatch sees frames, not datagrams.
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "tcp.analyze_sequence_numbers:TRUE",
    "tcp.desegment_tcp_streams:FALSE",
]

Endpoint = tuple[str, int]


# --------------------------------------------------------------------------- helpers


def norm_ip(s: str) -> str:
    try:
        return ipaddress.ip_address(s.strip()).compressed
    except ValueError:
        return s.strip().lower()


def ep_str(ep: Endpoint) -> str:
    ip, port = ep
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def epoch_to_ns(s: str) -> int:
    """tshark frame.time_epoch ("1795320947.825172000") -> integer nanoseconds, exactly."""
    s = s.strip()
    neg = s.startswith("-")
    if neg:
        s = s[1:]
    whole, _, frac = s.partition(".")
    ns = int(whole or "0") * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns


RFC3339_RE = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)
RFC3339_STRICT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def rfc3339_to_ns(s: str) -> int:
    m = RFC3339_RE.match(s)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {s!r}")
    y, mo, d, h, mi, sec, frac, tz = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(sec), 0, 0, 0))
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        secs -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return secs * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


def ns_to_rfc3339(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def to_int(s: str, default: int | None = None) -> int | None:
    s = s.strip()
    if not s:
        return default
    s = s.split(",")[-1]  # defensive: several occurrences -> last
    try:
        return int(s, 0)
    except ValueError:
        try:
            return int(s)
        except ValueError:
            return default


def flag(s: str) -> bool:
    s = s.strip().split(",")[-1].lower()
    return s in ("1", "true")


# --------------------------------------------------------------------------- tshark side


@dataclass
class Pkt:
    frame: int
    ts: int  # ns
    src: Endpoint
    dst: Endpoint
    syn: bool
    ack: bool
    fin: bool
    rst: bool
    seq: int | None
    ackno: int | None
    tcp_len: int
    frame_len: int
    stream: int
    retrans: bool
    fast: bool
    spurious: bool
    ttl: int | None
    ip_id: int | None


@dataclass
class TSession:
    key: frozenset
    stream: str  # tcp.stream index ("3"), or several joined ("13+14") with --lenient-reuse
    pkts: list[Pkt] = field(default_factory=list)

    @property
    def first_ts(self) -> int:
        return min(p.ts for p in self.pkts)

    @property
    def last_ts(self) -> int:
        return max(p.ts for p in self.pkts)

    @property
    def time_ordered(self) -> bool:
        return all(a.ts <= b.ts for a, b in zip(self.pkts, self.pkts[1:]))

    def endpoints(self) -> list[Endpoint]:
        return sorted(self.key)


@dataclass
class TsharkResult:
    sessions: list[TSession]
    notes: list[str]  # warnings about the dissection itself
    frames: int


def run_tshark(capture: str, tshark: str) -> TsharkResult:
    cmd = [tshark, "-n", "-r", capture]
    for p in TSHARK_PREFS:
        cmd += ["-o", p]
    cmd += ["-Y", DISPLAY_FILTER, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=l"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    notes: list[str] = []
    stderr = "\n".join(
        l for l in proc.stderr.splitlines() if l.strip() and "Running as user" not in l
    )
    if proc.returncode != 0:
        if not proc.stdout.strip():
            raise RuntimeError(f"tshark failed (exit {proc.returncode}): {stderr.strip()}")
        notes.append(
            f"tshark exit {proc.returncode} (damaged capture?), packets up to the damage are used: "
            + " ".join(stderr.split())[:200]
        )
    idx = {f: i for i, f in enumerate(FIELDS)}
    by_key: dict[tuple[frozenset, int], TSession] = {}
    order: list[tuple[frozenset, int]] = []
    skipped_frag = skipped_bad = 0
    frames = 0
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        v = line.split("\t")
        if len(v) < len(FIELDS):
            v += [""] * (len(FIELDS) - len(v))
        g = lambda name: v[idx[name]]  # noqa: E731
        frames += 1
        # Which IP header is innermost (closest to tcp)? frame.protocols says.
        protos = g("frame.protocols").split(":")
        try:
            tcp_pos = len(protos) - 1 - protos[::-1].index("tcp")
        except ValueError:
            tcp_pos = len(protos)
        ipver = None
        for p in reversed(protos[:tcp_pos]):
            if p in ("ip", "ipv6"):
                ipver = p
                break
        if ipver is None:
            ipver = "ip" if g("ip.src") else "ipv6"
        if ipver == "ip":
            src_ip, dst_ip = g("ip.src"), g("ip.dst")
            if flag(g("ip.flags.mf")) or (to_int(g("ip.frag_offset"), 0) or 0) > 0:
                skipped_frag += 1
                continue
            ttl, ip_id = to_int(g("ip.ttl")), to_int(g("ip.id"))
        else:
            src_ip, dst_ip = g("ipv6.src"), g("ipv6.dst")
            if flag(g("ipv6.fraghdr.more")) or (to_int(g("ipv6.fraghdr.offset"), 0) or 0) > 0:
                skipped_frag += 1
                continue
            ttl, ip_id = to_int(g("ipv6.hlim")), None
        sport, dport = to_int(g("tcp.srcport")), to_int(g("tcp.dstport"))
        stream = to_int(g("tcp.stream"))
        if not src_ip or not dst_ip or sport is None or dport is None or stream is None:
            skipped_bad += 1
            continue
        src = (norm_ip(src_ip.split(",")[-1]), sport)
        dst = (norm_ip(dst_ip.split(",")[-1]), dport)
        pkt = Pkt(
            frame=to_int(g("frame.number"), 0) or 0,
            ts=epoch_to_ns(g("frame.time_epoch")),
            src=src,
            dst=dst,
            syn=flag(g("tcp.flags.syn")),
            ack=flag(g("tcp.flags.ack")),
            fin=flag(g("tcp.flags.fin")),
            rst=flag(g("tcp.flags.reset")),
            seq=to_int(g("tcp.seq_raw")),
            ackno=to_int(g("tcp.ack_raw")),
            tcp_len=to_int(g("tcp.len"), 0) or 0,
            frame_len=to_int(g("frame.len"), 0) or 0,
            stream=stream,
            retrans=flag(g("tcp.analysis.retransmission")),
            fast=flag(g("tcp.analysis.fast_retransmission")),
            spurious=flag(g("tcp.analysis.spurious_retransmission")),
            ttl=ttl,
            ip_id=ip_id,
        )
        key = frozenset((src, dst))
        k = (key, stream)
        if k not in by_key:
            by_key[k] = TSession(key=key, stream=str(stream))
            order.append(k)
        by_key[k].pkts.append(pkt)
    if skipped_frag:
        notes.append(f"{skipped_frag} IP fragment frame(s) skipped (not compared)")
    if skipped_bad:
        notes.append(f"{skipped_bad} TCP frame(s) without addresses/ports/stream skipped")
    sessions = [by_key[k] for k in order]
    sessions.sort(key=lambda s: (s.first_ts, int(s.stream)))
    return TsharkResult(sessions=sessions, notes=notes, frames=frames)


@dataclass
class DirFacts:
    packets: int = 0
    bytes: int = 0
    payload_bytes: int = 0
    syn_count: int = 0
    fin_count: int = 0
    rst_count: int = 0
    retransmissions: int = 0
    fast_retransmissions: int = 0
    spurious_retransmissions: int = 0
    first_ttl: int | None = None
    syn: Pkt | None = None
    fin: Pkt | None = None
    rst: Pkt | None = None


def dir_facts(sess: TSession, sender: Endpoint, role: str) -> DirFacts:
    d = DirFacts()
    for p in sess.pkts:
        if p.src != sender:
            continue
        d.packets += 1
        d.bytes += p.frame_len
        d.payload_bytes += p.tcp_len
        if d.first_ttl is None:
            d.first_ttl = p.ttl
        # tapwatch's definition (engine/src/tcp.rs): any segment with SYN set and
        # RST clear counts, whatever its ACK flag (a split handshake has a server
        # SYN without ACK); an RST segment counts only as an RST.
        is_syn = p.syn and not p.rst
        if is_syn:
            d.syn_count += 1
            if d.syn is None:
                d.syn = p
        if p.fin and not p.rst:
            d.fin_count += 1
            if d.fin is None:
                d.fin = p
        if p.rst:
            d.rst_count += 1
            if d.rst is None:
                d.rst = p
        if p.retrans:
            d.retransmissions += 1
        if p.fast:
            d.fast_retransmissions += 1
        if p.spurious:
            d.spurious_retransmissions += 1
    return d


def guess_roles(sess: TSession) -> tuple[Endpoint, Endpoint, str]:
    """(client, server, how) from tshark packets alone (for --tshark-only)."""
    for p in sess.pkts:
        if p.syn and not p.ack:
            return p.src, p.dst, "syn"
    for p in sess.pkts:
        if p.syn and p.ack:
            return p.dst, p.src, "syn_ack"
    a, b = sess.pkts[0].src, sess.pkts[0].dst
    if a[1] < b[1]:
        a, b = b, a
    elif a[1] == b[1]:
        a, b = sess.pkts[0].src, sess.pkts[0].dst
    return a, b, "ports"


def event_json(p: Pkt | None) -> dict | None:
    if p is None:
        return None
    return {
        "ts": ns_to_rfc3339(p.ts),
        "seq": p.seq,
        "ack": p.ackno,
        "ttl": p.ttl,
        "ip_id": p.ip_id,
        "payload_len": p.tcp_len,
        "frame": p.frame,
    }


def dir_json(d: DirFacts) -> dict:
    return {
        "packets": d.packets,
        "bytes": d.bytes,
        "payload_bytes": d.payload_bytes,
        "syn": event_json(d.syn),
        "fin": event_json(d.fin),
        "rst": event_json(d.rst),
        "syn_count": d.syn_count,
        "fin_count": d.fin_count,
        "rst_count": d.rst_count,
        "retransmissions": d.retransmissions,
        "fast_retransmissions": d.fast_retransmissions,
        "spurious_retransmissions": d.spurious_retransmissions,
        "ttl": d.first_ttl,
    }


def fmt_dir(d: DirFacts) -> str:
    ev = []
    for name in ("syn", "fin", "rst"):
        p = getattr(d, name)
        if p is not None:
            ev.append(f"{name}@#{p.frame} seq={p.seq} ack={p.ackno}")
    r = f"retrans {d.retransmissions}"
    if d.fast_retransmissions or d.spurious_retransmissions:
        r += f" (fast {d.fast_retransmissions}, spurious {d.spurious_retransmissions})"
    return (
        f"pkts {d.packets} bytes {d.bytes} payload {d.payload_bytes} "
        f"syn {d.syn_count} fin {d.fin_count} rst {d.rst_count} {r}"
        + (f" | {'; '.join(ev)}" if ev else "")
    )


def print_tshark_only(res: TsharkResult, capture: str, as_json: bool) -> None:
    streams_per_key: dict[frozenset, int] = {}
    for s in res.sessions:
        streams_per_key[s.key] = streams_per_key.get(s.key, 0) + 1
    if as_json:
        for s in res.sessions:
            c, sv, how = guess_roles(s)
            cd, sd = dir_facts(s, c, "client"), dir_facts(s, sv, "server")
            print(
                json.dumps(
                    {
                        "tcp_stream": int(s.stream),
                        "ts_start": ns_to_rfc3339(s.first_ts),
                        "ts_end": ns_to_rfc3339(s.last_ts),
                        "client": {"ip": c[0], "port": c[1]},
                        "server": {"ip": sv[0], "port": sv[1]},
                        "roles": how,
                        "packets": len(s.pkts),
                        "bytes": cd.bytes + sd.bytes,
                        "fin": [r for r, d in (("client", cd), ("server", sd)) if d.fin_count],
                        "rst": [r for r, d in (("client", cd), ("server", sd)) if d.rst_count],
                        "tcp": {"client": dir_json(cd), "server": dir_json(sd)},
                    }
                )
            )
        return
    print(f"tshark sessions in {capture}: {len(res.sessions)} ({res.frames} TCP frames)")
    for n in res.notes:
        print(f"  note: {n}")
    for i, s in enumerate(res.sessions, 1):
        c, sv, how = guess_roles(s)
        reuse = f" (endpoint pair split into {streams_per_key[s.key]} tcp.streams)" if streams_per_key[s.key] > 1 else ""
        print(
            f"#{i} stream {s.stream}: {ep_str(c)} -> {ep_str(sv)} roles={how} "
            f"{ns_to_rfc3339(s.first_ts)} .. {ns_to_rfc3339(s.last_ts)}{reuse}"
        )
        print(f"    c->s: {fmt_dir(dir_facts(s, c, 'client'))}")
        print(f"    s->c: {fmt_dir(dir_facts(s, sv, 'server'))}")
    print(f"crosscheck: {len(res.sessions)} sessions (tshark only, nothing compared)")


# --------------------------------------------------------------------------- tapwatch side


@dataclass
class Record:
    line: int
    raw: dict
    client: Endpoint
    server: Endpoint
    ts_start: int | None
    ts_end: int | None

    @property
    def key(self) -> frozenset:
        return frozenset((self.client, self.server))

    @property
    def sid(self) -> str:
        return str(self.raw.get("session_id", f"line{self.line}"))


def load_records(path: str, point: str) -> tuple[list[Record], list[str], int, set[str]]:
    """Records that have `point` in their points; errors; count of other-point records;
    the point names those other records have."""
    seen_points: set[str] = set()
    recs: list[Record] = []
    errors: list[str] = []
    other = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{path}:{n}: not JSON: {e}")
                continue
            if not isinstance(obj, dict):
                errors.append(f"{path}:{n}: not a JSON object")
                continue
            pts = obj.get("points")
            if not isinstance(pts, dict) or point not in pts:
                other += 1
                if isinstance(pts, dict):
                    seen_points.update(map(str, pts))
                continue
            try:
                c, s = obj["client"], obj["server"]
                client = (norm_ip(str(c["ip"])), int(c["port"]))
                server = (norm_ip(str(s["ip"])), int(s["port"]))
            except (KeyError, TypeError, ValueError) as e:
                errors.append(f"{path}:{n}: bad client/server: {e!r}")
                continue
            ts = []
            for k in ("ts_start", "ts_end"):
                try:
                    ts.append(rfc3339_to_ns(str(obj.get(k))))
                except ValueError:
                    ts.append(None)
            recs.append(Record(n, obj, client, server, ts[0], ts[1]))
    return recs, errors, other, seen_points


# --------------------------------------------------------------------------- comparison


class Report:
    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.warnings: list[str] = []

    def mismatch(self, msg: str) -> None:
        self.mismatches.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


def compare_event(rep: Report, where: str, tp: Pkt | None, ev: Any) -> None:
    if tp is None and ev is None:
        return
    if tp is None:
        rep.mismatch(f"{where}: tshark has none, tapwatch has {json.dumps(ev)}")
        return
    if not isinstance(ev, dict):
        rep.mismatch(
            f"{where}: tshark has frame #{tp.frame} seq={tp.seq} ack={tp.ackno}, tapwatch has {json.dumps(ev)}"
        )
        return
    checks = [("seq", tp.seq), ("ack", tp.ackno), ("ttl", tp.ttl), ("ip_id", tp.ip_id), ("payload_len", tp.tcp_len)]
    for name, tv in checks:
        if tv is None and name != "ip_id":
            continue  # tshark did not print it: nothing to compare
        if name not in ev:
            rep.mismatch(f"{where}.{name}: missing in tapwatch record (tshark frame #{tp.frame}: {tv})")
            continue
        if ev[name] != tv:
            rep.mismatch(f"{where}.{name}: tshark {tv} (frame #{tp.frame}) != tapwatch {ev[name]!r}")
    ts = ev.get("ts")
    try:
        ts_ns = rfc3339_to_ns(str(ts))
    except ValueError:
        rep.mismatch(f"{where}.ts: not RFC 3339: {ts!r}")
        return
    if not RFC3339_STRICT_RE.match(str(ts)):
        rep.mismatch(f"{where}.ts: {ts!r} is not RFC 3339 with 9 fractional digits and Z")
    if ts_ns != tp.ts:
        rep.mismatch(f"{where}.ts: tshark {ns_to_rfc3339(tp.ts)} (frame #{tp.frame}) != tapwatch {ts}")


COUNT_FACTS = ["packets", "bytes", "payload_bytes", "syn_count", "fin_count", "rst_count"]


def compare(sess: TSession, rec: Record, point: str, rep: Report) -> tuple[DirFacts, DirFacts]:
    client, server = rec.client, rec.server
    cd = dir_facts(sess, client, "client")
    sd = dir_facts(sess, server, "server")
    obj = rec.raw
    pt = obj["points"][point]
    if not isinstance(pt, dict):
        rep.mismatch(f"points.{point}: not an object")
        return cd, sd

    # Contract: timestamps.
    for k in ("ts_start", "ts_end"):
        if not RFC3339_STRICT_RE.match(str(obj.get(k))):
            rep.mismatch(f"{k}: {obj.get(k)!r} is not RFC 3339 with 9 fractional digits and Z")
    if rec.ts_start is not None and rec.ts_end is not None:
        outside = [p for p in sess.pkts if not (rec.ts_start <= p.ts <= rec.ts_end)]
        if outside:
            msg = (
                f"{len(outside)} packet(s) outside [ts_start, ts_end], first frame #{outside[0].frame} "
                f"at {ns_to_rfc3339(outside[0].ts)}"
            )
            if sess.time_ordered:
                rep.mismatch(msg)
            else:  # a capture whose clock goes backwards: the range is a matter of definition
                rep.warn(msg + " (timestamps in this session go backwards)")
        single_point = len(obj.get("points", {})) == 1
        if single_point and rec.ts_start != sess.first_ts:
            rep.warn(f"ts_start {obj.get('ts_start')} != first packet {ns_to_rfc3339(sess.first_ts)}")
        if single_point and rec.ts_end != sess.last_ts:
            rep.warn(f"ts_end {obj.get('ts_end')} != last packet {ns_to_rfc3339(sess.last_ts)}")

    # Roles.
    roles = obj.get("roles")
    syn_senders = {p.src for p in sess.pkts if p.syn and not p.ack}
    synack_senders = {p.src for p in sess.pkts if p.syn and p.ack}
    if roles == "syn":
        if client not in syn_senders:
            rep.mismatch(
                f"roles=syn but tshark sees no SYN from client {ep_str(client)}"
                + (f" (SYN from {', '.join(map(ep_str, syn_senders))})" if syn_senders else "")
            )
    elif roles == "syn_ack":
        if server not in synack_senders:
            rep.mismatch(f"roles=syn_ack but tshark sees no SYN-ACK from server {ep_str(server)}")
        if syn_senders:
            rep.warn(f"roles=syn_ack although tshark sees a SYN from {', '.join(map(ep_str, syn_senders))}")
    elif roles == "ports":
        if syn_senders or synack_senders:
            rep.warn("roles=ports although tshark sees a SYN or SYN-ACK")
    else:
        rep.mismatch(f"roles: {roles!r} is not one of syn, syn_ack, ports")

    # Point totals.
    total_pkts, total_bytes = len(sess.pkts), sum(p.frame_len for p in sess.pkts)
    if pt.get("packets") != total_pkts:
        rep.mismatch(f"points.{point}.packets: tshark {total_pkts} != tapwatch {pt.get('packets')!r}")
    if pt.get("bytes") != total_bytes:
        rep.mismatch(f"points.{point}.bytes: tshark {total_bytes} != tapwatch {pt.get('bytes')!r}")
    for name, attr in (("fin", "fin_count"), ("rst", "rst_count")):
        want = sorted(r for r, d in (("client", cd), ("server", sd)) if getattr(d, attr))
        got = pt.get(name)
        if not isinstance(got, list) or sorted(set(map(str, got))) != want or len(got) != len(set(got)):
            rep.mismatch(f"points.{point}.{name}: tshark {want} != tapwatch {got!r}")

    # Per direction.
    tcp = pt.get("tcp")
    if not isinstance(tcp, dict):
        rep.mismatch(f"points.{point}.tcp: missing")
        return cd, sd
    for role, d in (("client", cd), ("server", sd)):
        td = tcp.get(role)
        where = f"{role}"
        if not isinstance(td, dict):
            rep.mismatch(f"points.{point}.tcp.{role}: missing")
            continue
        for fact in COUNT_FACTS:
            tv = getattr(d, fact)
            if td.get(fact) != tv:
                rep.mismatch(f"{where}.{fact}: tshark {tv} != tapwatch {td.get(fact)!r}")
        compare_event(rep, f"{where}.syn", d.syn, td.get("syn"))
        compare_event(rep, f"{where}.fin", d.fin, td.get("fin"))
        compare_event(rep, f"{where}.rst", d.rst, td.get("rst"))
        tr = td.get("retransmissions")
        if tr != d.retransmissions:
            rep.warn(
                f"{where}.retransmissions: tshark {d.retransmissions} (fast {d.fast_retransmissions}, "
                f"spurious {d.spurious_retransmissions} flagged separately), tapwatch {tr!r}"
            )
        if d.first_ttl is not None and "ttl" in td and td.get("ttl") != d.first_ttl:
            rep.warn(f"{where}.ttl: tapwatch {td.get('ttl')!r}, tshark first packet {d.first_ttl}")
    return cd, sd


def match_sessions(
    sessions: list[TSession], recs: list[Record], lenient: bool = False
) -> tuple[list[tuple[TSession, Record]], list[TSession], list[Record], dict[frozenset, str]]:
    """Pair tshark sessions and records of the same endpoint pair, by time when several.

    Returns (pairs, tshark sessions without record, records without tshark session,
    {endpoint pair: note} for pairs where tshark and tapwatch split differently and
    --lenient-reuse regrouped the packets by the records' time ranges).
    """
    by_key_s: dict[frozenset, list[TSession]] = {}
    by_key_r: dict[frozenset, list[Record]] = {}
    for s in sessions:
        by_key_s.setdefault(s.key, []).append(s)
    for r in recs:
        by_key_r.setdefault(r.key, []).append(r)
    pairs: list[tuple[TSession, Record]] = []
    lone_s: list[TSession] = []
    lone_r: list[Record] = []
    regrouped: dict[frozenset, str] = {}
    big = 1 << 62
    for key in list(by_key_s) + [k for k in by_key_r if k not in by_key_s]:
        ss = sorted(by_key_s.get(key, []), key=lambda s: s.first_ts)
        rs = sorted(by_key_r.get(key, []), key=lambda r: (r.ts_start if r.ts_start is not None else big, r.line))
        if len(ss) == 1 and len(rs) == 1:
            pairs.append((ss[0], rs[0]))
            continue
        timed = [r for r in rs if r.ts_start is not None and r.ts_end is not None]
        if lenient and ss and timed and len(ss) != len(rs):
            # tshark and tapwatch split this endpoint pair differently: give every packet
            # to the latest-starting record whose [ts_start, ts_end] holds it.
            groups: dict[int, list[Pkt]] = {}
            leftover: dict[str, list[Pkt]] = {}
            streams_of: dict[int, set[str]] = {}
            for s in ss:
                for p in s.pkts:
                    best = None
                    for j, r in enumerate(timed):
                        if r.ts_start <= p.ts <= r.ts_end and (best is None or r.ts_start >= timed[best].ts_start):
                            best = j
                    if best is None:
                        leftover.setdefault(s.stream, []).append(p)
                    else:
                        groups.setdefault(best, []).append(p)
                        streams_of.setdefault(best, set()).add(s.stream)
            for j, r in enumerate(timed):
                if j in groups:
                    label = "+".join(sorted(streams_of[j], key=int))
                    pk = sorted(groups[j], key=lambda p: (p.ts, p.frame))
                    pairs.append((TSession(key=key, stream=label, pkts=pk), r))
                else:
                    lone_r.append(r)
            lone_r += [r for r in rs if r not in timed]
            for st, pk in leftover.items():
                lone_s.append(TSession(key=key, stream=st, pkts=sorted(pk, key=lambda p: (p.ts, p.frame))))
            regrouped[key] = (
                f"split differently: tshark has {len(ss)} tcp.stream(s) "
                f"({', '.join(s.stream for s in ss)}) for this endpoint pair, tapwatch {len(rs)} "
                "record(s); packets regrouped by the records' time ranges (--lenient-reuse)"
            )
            continue
        # Several on one side (port reuse): greedy on the number of a session's packets
        # that fall in a record's [ts_start, ts_end]; ties by closeness of start times.
        cand = []
        for i, s in enumerate(ss):
            for j, r in enumerate(rs):
                if r.ts_start is None or r.ts_end is None:
                    continue
                inside = sum(1 for p in s.pkts if r.ts_start <= p.ts <= r.ts_end)
                if inside:
                    cand.append((-inside, abs(s.first_ts - r.ts_start), i, j))
        cand.sort()
        used_s: set[int] = set()
        used_r: set[int] = set()
        for _, _, i, j in cand:
            if i in used_s or j in used_r:
                continue
            used_s.add(i)
            used_r.add(j)
            pairs.append((ss[i], rs[j]))
        # One of each left over and nothing overlapping: pair them anyway (the time
        # range check in compare() then reports the disagreement).
        rest_s = [s for i, s in enumerate(ss) if i not in used_s]
        rest_r = [r for j, r in enumerate(rs) if j not in used_r]
        if len(rest_s) == 1 and len(rest_r) == 1 and len(ss) == len(rs):
            pairs.append((rest_s[0], rest_r[0]))
            rest_s, rest_r = [], []
        lone_s += rest_s
        lone_r += rest_r
    pairs.sort(key=lambda sr: (sr[0].first_ts, sr[0].stream))
    return pairs, lone_s, lone_r, regrouped


def crosscheck(
    capture: str, verdicts: str, point: str, res: TsharkResult, verbose: bool, lenient: bool
) -> int:
    recs, errors, other, seen_points = load_records(verdicts, point)
    print(f"crosscheck: capture {capture}, point {point!r}, verdicts {verdicts}")
    print(
        f"  tshark: {res.frames} TCP frames, {len(res.sessions)} sessions; "
        f"tapwatch: {len(recs)} records with point {point!r}"
        + (f" ({other} other records ignored)" if other else "")
    )
    mismatches = len(errors)
    warnings = len(res.notes)
    for e in errors:
        print(f"  MISMATCH {e}")
    for n in res.notes:
        print(f"  WARNING  {n}")
    if not recs and other:
        print(
            f"  WARNING  no record has point {point!r}; points in the file: "
            f"{', '.join(sorted(seen_points)) or 'none'} (use --point)"
        )
        warnings += 1
    streams_per_key: dict[frozenset, int] = {}
    for s in res.sessions:
        streams_per_key[s.key] = streams_per_key.get(s.key, 0) + 1
    pairs, lone_s, lone_r, regrouped = match_sessions(res.sessions, recs, lenient)

    items: list[tuple[int, str, Any]] = []
    for s, r in pairs:
        items.append((s.first_ts, "pair", (s, r)))
    for s in lone_s:
        items.append((s.first_ts, "tshark", s))
    for r in lone_r:
        items.append((r.ts_start or 0, "record", r))
    items.sort(key=lambda x: x[0])

    for n, (_, kind, obj) in enumerate(items, 1):
        if kind == "pair":
            s, r = obj
            rep = Report()
            if s.key in regrouped:
                rep.warn(regrouped[s.key])
            cd, sd = compare(s, r, point, rep)
            status = "FAIL" if rep.mismatches else ("warn" if rep.warnings else "ok")
            reuse = f", endpoint pair split into {streams_per_key[s.key]} tcp.streams (port reuse)" if streams_per_key[s.key] > 1 else ""
            print(
                f"[{status:4}] #{n} {ep_str(r.client)} -> {ep_str(r.server)}  tcp.stream {s.stream}, "
                f"record {r.sid} (line {r.line}), roles={r.raw.get('roles')}, "
                f"verdict={r.raw.get('verdict')}{reuse}"
            )
            if verbose or rep.mismatches or rep.warnings:
                print(f"         tshark c->s: {fmt_dir(cd)}")
                print(f"         tshark s->c: {fmt_dir(sd)}")
            for m in rep.mismatches:
                print(f"         MISMATCH {m}")
            for w in rep.warnings:
                print(f"         WARNING  {w}")
            mismatches += len(rep.mismatches)
            warnings += len(rep.warnings)
        elif kind == "tshark":
            s = obj
            c, sv, how = guess_roles(s)
            print(
                f"[FAIL] #{n} {ep_str(c)} -> {ep_str(sv)}  tcp.stream {s.stream} "
                f"({len(s.pkts)} packets, {ns_to_rfc3339(s.first_ts)} .. {ns_to_rfc3339(s.last_ts)})"
            )
            others = [r for r in recs if r.key == s.key]
            if others:
                print(
                    f"         MISMATCH tshark session has no tapwatch record (tapwatch has "
                    f"{len(others)} record(s) for this endpoint pair, tshark {streams_per_key[s.key]} "
                    f"tcp.stream(s): they split it differently; see --lenient-reuse)"
                )
            else:
                print("         MISMATCH tshark session has no tapwatch record")
            mismatches += 1
        else:
            r = obj
            print(
                f"[FAIL] #{n} {ep_str(r.client)} -> {ep_str(r.server)}  record {r.sid} (line {r.line}) "
                f"{r.raw.get('ts_start')} .. {r.raw.get('ts_end')}"
            )
            print("         MISMATCH tapwatch record has no tshark session")
            mismatches += 1
    n_sessions = len(items)
    print(f"crosscheck: {n_sessions} sessions, {mismatches} mismatches, {warnings} warnings")
    return 1 if mismatches else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Cross-check tapwatch per-session TCP facts against tshark.",
        epilog="Exit status: 0 no mismatch, 1 mismatch(es), 2 usage or tool error.",
    )
    ap.add_argument("capture")
    ap.add_argument("verdicts", nargs="?", help="tapwatch replay output (JSON lines)")
    ap.add_argument("--point", help="capture point name (default: the capture file's stem)")
    ap.add_argument("--tshark-only", action="store_true", help="only print the sessions tshark shows")
    ap.add_argument("--json", action="store_true", help="with --tshark-only: JSON lines")
    ap.add_argument("--verbose", "-v", action="store_true", help="print the facts of every session")
    ap.add_argument(
        "--lenient-reuse",
        action="store_true",
        help="when tshark and tapwatch split one endpoint pair into different numbers of "
        "sessions, regroup the packets by the records' time ranges and warn instead of failing",
    )
    ap.add_argument("--tshark", default=os.environ.get("TSHARK", "tshark"), help="tshark binary")
    args = ap.parse_args()

    if not args.tshark_only and not args.verdicts:
        ap.error("VERDICTS.jsonl is required (or --tshark-only)")
    if not os.path.isfile(args.capture):
        print(f"crosscheck: no such capture: {args.capture}", file=sys.stderr)
        return 2
    if shutil.which(args.tshark) is None:
        print(f"crosscheck: {args.tshark} not found (run scripts/setup.sh)", file=sys.stderr)
        return 2
    try:
        res = run_tshark(args.capture, args.tshark)
    except RuntimeError as e:
        print(f"crosscheck: {e}", file=sys.stderr)
        return 2
    if args.tshark_only:
        print_tshark_only(res, args.capture, args.json)
        return 0
    if not os.path.isfile(args.verdicts):
        print(f"crosscheck: no such verdicts file: {args.verdicts}", file=sys.stderr)
        return 2
    point = args.point or Path(args.capture).stem
    return crosscheck(args.capture, args.verdicts, point, res, args.verbose, args.lenient_reuse)


if __name__ == "__main__":
    sys.exit(main())
