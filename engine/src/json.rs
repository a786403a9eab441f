//! The verdict record as JSON (one object per line), in the field names that
//! docs/verdicts.md and docs/verdict.schema.json define. Runs on the exporter
//! thread: allocation here is per session, never per packet.
//!
//! Written by hand rather than through serde's derive: with serde_json a record cost
//! 46,000 instructions (callgrind; 5.3 us, about 140 ns per packet of the synthetic
//! mix, more than the whole reader), a third of it escaping keys that never need it.
//! Keys here are literals, numbers are formatted in place, and only free text (point
//! names, evidence) goes through serde_json's string escaping.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::correlate::Tamper;
use crate::flow::Side;
use crate::session::{PointId, PointState, Role};
use crate::tcp::{DirState, SegEvent};
use crate::time::{Timestamp, DIGITS2};
use crate::tls::names::{alert_name, cipher_name, version_name, FixedStr};
use crate::tls::observe::{DirFacts, TlsFacts};
use crate::verdict::{Evidence, Record};

/// Version of the record layout (the `schema` field). Bumped with every change of
/// the fields, added ones included: docs/verdict.schema.json is strict per version.
pub const SCHEMA_VERSION: u32 = 3;

/// A key as its JSON fragment with the comma before it, `,"name":`, made at compile
/// time: [`Obj::key`] writes it in one copy (written piece by piece, the commas,
/// quotes and colons were a quarter of the exporter's instructions, callgrind,
/// 200k synth replay).
macro_rules! k {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// A minimal JSON object writer over a byte buffer: keys are trusted literals,
/// given as `k!("name")`.
struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    #[inline(always)]
    fn open(buf: &'a mut Vec<u8>) -> Obj<'a> {
        buf.push(b'{');
        Obj { buf, first: true }
    }
    #[inline(always)]
    fn key(&mut self, k: &str) -> &mut Vec<u8> {
        debug_assert!(
            k.starts_with(",\"") && k.ends_with("\":"),
            "{k} is not k!(..)"
        );
        if self.first {
            self.first = false;
            self.buf
                .extend_from_slice(k.as_bytes().get(1..).unwrap_or_default());
        } else {
            self.buf.extend_from_slice(k.as_bytes());
        }
        self.buf
    }
    /// A key from the user (a point name): escaped.
    fn key_escaped(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        push_escaped(self.buf, k);
        self.buf.push(b':');
        self.buf
    }
    /// Any text, escaped.
    fn text_str(&mut self, k: &str, v: &str) {
        push_escaped(self.key(k), v);
    }
    #[inline(always)]
    fn uint(&mut self, k: &str, v: impl Into<u64>) {
        let b = self.key(k);
        push_u64(b, v.into());
    }
    #[inline(always)]
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k).extend_from_slice(v.as_bytes());
    }
    /// A string known to need no escaping (enum names, hex, addresses, timestamps).
    #[inline(always)]
    fn plain(&mut self, k: &str, v: &str) {
        let b = self.key(k);
        b.push(b'"');
        b.extend_from_slice(v.as_bytes());
        b.push(b'"');
    }
    /// As [`Obj::plain`], through `core::fmt` (rare values only: it costs more).
    fn plain_fmt(&mut self, k: &str, v: impl std::fmt::Display) {
        let b = self.key(k);
        b.push(b'"');
        // Writing to a Vec cannot fail.
        let _ = write!(ByteSink(b), "{v}");
        b.push(b'"');
    }
    #[inline(always)]
    fn ts(&mut self, k: &str, t: crate::time::Timestamp) {
        push_ts(self.key(k), t);
    }
    #[inline(always)]
    fn close(self) {
        self.buf.push(b'}');
    }
    #[inline(always)]
    fn bool(&mut self, k: &str, v: bool) {
        self.raw(k, if v { "true" } else { "false" });
    }
    #[inline(always)]
    fn opt_ts(&mut self, k: &str, t: Option<Timestamp>) {
        match t {
            Some(t) => self.ts(k, t),
            None => self.raw(k, "null"),
        }
    }
    /// Bytes as lower-case hex.
    fn hex(&mut self, k: &str, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => push_hex(self.key(k), bytes),
            None => self.raw(k, "null"),
        }
    }
    /// Text from the wire, escaped (invalid UTF-8 replaced).
    fn text<const N: usize>(&mut self, k: &str, v: Option<&FixedStr<N>>) {
        match v {
            Some(v) => push_escaped_bytes(self.key(k), v.as_bytes()),
            None => self.raw(k, "null"),
        }
    }
}

/// An IPv4 address in dotted quad, without `core::fmt` (a third of a record's cost).
fn push_ip(b: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                push_u64(b, u64::from(octet));
            }
        }
        // IPv6 text form (RFC 5952 zero compression) is left to the standard library.
        std::net::IpAddr::V6(v6) => {
            let _ = write!(ByteSink(b), "{v6}");
        }
    }
}

struct ByteSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[inline(always)]
fn push_u64(b: &mut Vec<u8>, v: u64) {
    // Most integers of a record are counters and TTLs below 1000: written from the
    // table with a fixed-length copy. itoa's variable-length result costs a
    // `memcpy` call on top of its own work (together 60 instructions an integer,
    // callgrind, 200k synth replay, 40 integers a record).
    if v < 10 {
        b.push(b'0' + v as u8);
    } else if v < 100 {
        let i = v as usize * 2;
        b.extend_from_slice(&[DIGITS2[i], DIGITS2[i + 1]]);
    } else if v < 1000 {
        let i = (v % 100) as usize * 2;
        b.extend_from_slice(&[b'0' + (v / 100) as u8, DIGITS2[i], DIGITS2[i + 1]]);
    } else {
        b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
}

/// Every byte as its two lower-case hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [digits[i >> 4], digits[i & 0x0f]];
        i += 1;
    }
    t
};

/// Bytes as a quoted lower-case hex string: digests and randoms, 16 or 32 bytes,
/// one copy into the line per 32 bytes (`fingerprint::hex` and its UTF-8 check
/// cost 216 instructions per 32-byte value, callgrind, 200k synth replay).
fn push_hex(b: &mut Vec<u8>, bytes: &[u8]) {
    b.push(b'"');
    for chunk in bytes.chunks(32) {
        let mut tmp = [0u8; 64];
        for (pair, &x) in tmp.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(x)]);
        }
        b.extend_from_slice(&tmp[..chunk.len() * 2]);
    }
    b.push(b'"');
}

/// A timestamp as a JSON string (RFC 3339, see [`Timestamp::rfc3339`]).
#[inline(always)]
fn push_ts(b: &mut Vec<u8>, t: Timestamp) {
    let mut q = [b'"'; 32];
    q[1..31].copy_from_slice(&t.rfc3339());
    b.extend_from_slice(&q);
}

/// `v` in decimal ASCII, written at the end of `buf`, without `core::fmt` (shared by
/// the JSON writer, JA3 and the synthetic traffic generator).
pub(crate) fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Free text, escaped as JSON.
fn push_escaped(b: &mut Vec<u8>, s: &str) {
    // Fast path for text with nothing to escape (nearly all of it: point names,
    // SNI, issuers, evidence): serde_json's escaper took 5.6 % of the exporter's
    // instructions (callgrind, 200k synth replay). What serde_json escapes is exactly
    // the control characters, `"` and backslash, so the output is the same.
    if !needs_escape(s.as_bytes()) {
        push_quoted(b, s.as_bytes());
        return;
    }
    // Serialising a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

fn push_quoted(b: &mut Vec<u8>, v: &[u8]) {
    b.reserve(v.len() + 2);
    b.push(b'"');
    b.extend_from_slice(v);
    b.push(b'"');
}

/// Text from the wire, escaped as JSON, invalid UTF-8 replaced by U+FFFD (as
/// `String::from_utf8_lossy`, which is only called when the bytes are not UTF-8).
fn push_escaped_bytes(b: &mut Vec<u8>, v: &[u8]) {
    // Plain ASCII needs neither the UTF-8 check nor escaping.
    if is_plain_ascii(v) {
        push_quoted(b, v);
        return;
    }
    match std::str::from_utf8(v) {
        Ok(s) => push_escaped(b, s),
        Err(_) => push_escaped(b, &String::from_utf8_lossy(v)),
    }
}

const ONES: u64 = u64::MAX / 255;
const HIGHS: u64 = ONES * 0x80;

/// Some byte of the word is below 0x20, `"` or backslash (a word at a time: the
/// byte loop was 6 instructions a byte; the text of a record is 500 bytes).
/// "Determine if a word has a byte less than n" and "has a zero byte" from Sean
/// Anderson's Bit Twiddling Hacks; exact as a yes or no for any word.
#[inline(always)]
fn word_needs_escape(x: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0
        || has_zero(x ^ (ONES * u64::from(b'"')))
        || has_zero(x ^ (ONES * u64::from(b'\\')))
}

#[inline(always)]
fn byte_needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// Some byte of `v` is escaped in a JSON string (serde_json's set).
fn needs_escape(v: &[u8]) -> bool {
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        if word_needs_escape(u64::from_le_bytes(x)) {
            return true;
        }
    }
    words.remainder().iter().any(|&c| byte_needs_escape(c))
}

/// `v` is ASCII and has nothing to escape.
fn is_plain_ascii(v: &[u8]) -> bool {
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let x = u64::from_le_bytes(x);
        if x & HIGHS != 0 || word_needs_escape(x) {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&c| c.is_ascii() && !byte_needs_escape(c))
}

fn event(b: &mut Vec<u8>, e: &SegEvent) {
    let mut o = Obj::open(b);
    o.ts(k!("ts"), e.ts);
    o.uint(k!("seq"), e.seq);
    o.uint(k!("ack"), e.ack);
    o.uint(k!("ttl"), e.ttl);
    match e.ip_id {
        Some(id) => o.uint(k!("ip_id"), id),
        None => o.raw(k!("ip_id"), "null"),
    }
    o.uint(k!("payload_len"), e.payload_len);
    o.close();
}

fn opt_event(o: &mut Obj<'_>, k: &str, e: &Option<SegEvent>) {
    match e {
        Some(e) => event(o.key(k), e),
        None => o.raw(k, "null"),
    }
}

fn dir(b: &mut Vec<u8>, d: &DirState) {
    let mut o = Obj::open(b);
    o.uint(k!("packets"), d.packets);
    o.uint(k!("bytes"), d.bytes);
    o.uint(k!("payload_bytes"), d.payload_bytes);
    opt_event(&mut o, k!("syn"), &d.syn());
    opt_event(&mut o, k!("fin"), &d.fin());
    opt_event(&mut o, k!("rst"), &d.rst());
    if let Some(e) = &d.last_rst() {
        event(o.key(k!("last_rst")), e);
    }
    o.uint(k!("syn_count"), d.syn_count);
    o.uint(k!("fin_count"), d.fin_count);
    o.uint(k!("rst_count"), d.rst_count);
    o.uint(k!("retransmissions"), d.retransmissions);
    o.uint(k!("data_after_rst"), d.data_after_rst);
    o.uint(k!("acked_unseen"), d.acked_unseen);
    o.uint(k!("ttl"), d.ttl_first);
    o.uint(k!("ttl_min"), d.ttl_min);
    o.uint(k!("ttl_max"), d.ttl_max);
    if d.syn().is_some() && d.mss != 0 {
        o.uint(k!("mss"), d.mss);
    }
    if let Some(ws) = d.wscale {
        o.uint(k!("wscale"), ws);
    }
    o.close();
}

fn roles(b: &mut Vec<u8>, r: &Record, p: &PointState, f: impl Fn(&DirState) -> bool) {
    b.push(b'[');
    let mut first = true;
    for role in [Role::Client, Role::Server] {
        if f(&p.dirs[r.session.side_of(role).index()]) {
            if !first {
                b.push(b',');
            }
            first = false;
            b.push(b'"');
            b.extend_from_slice(role.as_str().as_bytes());
            b.push(b'"');
        }
    }
    b.push(b']');
}

fn role_of(r: &Record, f: &TlsFacts, side: Side) -> Role {
    if side == f.client.unwrap_or(r.session.client) {
        Role::Client
    } else {
        Role::Server
    }
}

fn tls_dir(b: &mut Vec<u8>, d: &DirFacts) {
    let mut o = Obj::open(b);
    o.uint(k!("records"), d.records);
    o.uint(k!("app_records"), d.app_records);
    o.uint(k!("app_bytes"), d.app_bytes);
    o.opt_ts(k!("ccs_ts"), d.ccs.get());
    o.opt_ts(k!("first_app_ts"), d.first_app.get());
    o.bool(k!("not_tls"), d.not_tls);
    o.bool(k!("gap"), d.gap);
    o.uint(k!("overflow_bytes"), d.overflow_bytes);
    o.uint(k!("skipped_messages"), d.skipped_messages);
    o.close();
}

/// The TLS facts of one point: DESIGN.md's fields in the point, details in `tls`.
fn tls_fields(o: &mut Obj<'_>, r: &Record, f: &TlsFacts) {
    match f.version() {
        Some(v) => o.plain(k!("tls_version"), version_name(v)),
        None => o.raw(k!("tls_version"), "null"),
    }
    o.plain(k!("handshake"), f.handshake.as_str());
    {
        let b = o.key(k!("alerts"));
        b.push(b'[');
        for (i, a) in f.alerts().iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            let mut ao = Obj::open(b);
            ao.plain(k!("from"), role_of(r, f, a.side).as_str());
            ao.plain(
                k!("level"),
                match a.level {
                    1 => "warning",
                    2 => "fatal",
                    _ => "unknown",
                },
            );
            match (a.encrypted, alert_name(a.description)) {
                (false, Some(name)) => ao.plain(k!("description"), name),
                (false, None) => {
                    ao.plain(k!("description"), itoa::Buffer::new().format(a.description))
                }
                (true, _) => ao.plain(k!("description"), "unknown"),
            }
            ao.bool(k!("encrypted"), a.encrypted);
            ao.bool(k!("inferred"), a.inferred);
            ao.bool(k!("after_data"), a.after_data);
            ao.uint(k!("record_len"), a.len);
            ao.ts(k!("ts"), a.ts);
            ao.close();
        }
        b.push(b']');
    }
    let leaf = f.server_cert.as_ref();
    o.hex(k!("leaf_cert_sha256"), leaf.map(|c| &c.sha256[..]));
    o.text(
        k!("leaf_cert_issuer"),
        leaf.filter(|c| c.parsed).map(|c| &c.issuer),
    );
    let ch = f.client_hello.as_ref();
    o.hex(
        k!("client_random"),
        ch.filter(|ch| !ch.sslv2).map(|ch| &ch.random[..]),
    );
    match ch.and_then(|ch| ch.ja4.as_ref()) {
        Some(ja4) => match std::str::from_utf8(ja4) {
            Ok(s) => o.plain(k!("ja4"), s),
            Err(_) => o.plain_fmt(k!("ja4"), String::from_utf8_lossy(ja4)),
        },
        None => o.raw(k!("ja4"), "null"),
    }
    let t = o.key(k!("tls"));
    let mut t = Obj::open(t);
    t.text(k!("sni"), ch.and_then(|ch| ch.sni.as_ref()));
    t.text(k!("alpn"), ch.and_then(|ch| ch.alpn.as_ref()));
    match ch {
        Some(ch) => t.plain(k!("client_version"), version_name(ch.version)),
        None => t.raw(k!("client_version"), "null"),
    }
    t.bool(k!("sslv2_client_hello"), ch.is_some_and(|ch| ch.sslv2));
    t.uint(k!("client_hellos"), f.client_hellos);
    t.hex(k!("ja3"), ch.and_then(|ch| ch.ja3.as_ref()).map(|j| &j[..]));
    let sh = f.server_hello.filter(|sh| !sh.hello_retry);
    match sh.map(|sh| (sh.cipher, cipher_name(sh.cipher))) {
        Some((_, Some(name))) => t.plain(k!("cipher"), name),
        Some((id, None)) => t.plain_fmt(k!("cipher"), format_args!("0x{id:04x}")),
        None => t.raw(k!("cipher"), "null"),
    }
    t.hex(k!("server_random"), sh.as_ref().map(|sh| &sh.random[..]));
    t.bool(k!("hello_retry"), f.hello_retry);
    t.bool(k!("downgrade"), sh.is_some_and(|sh| sh.downgrade.is_some()));
    t.text(
        k!("leaf_cert_subject"),
        leaf.filter(|c| c.parsed).map(|c| &c.subject),
    );
    match leaf.and_then(|c| c.not_before) {
        Some(v) => t.raw(k!("leaf_cert_not_before"), itoa::Buffer::new().format(v)),
        None => t.raw(k!("leaf_cert_not_before"), "null"),
    }
    match leaf.and_then(|c| c.not_after) {
        Some(v) => t.raw(k!("leaf_cert_not_after"), itoa::Buffer::new().format(v)),
        None => t.raw(k!("leaf_cert_not_after"), "null"),
    }
    match leaf {
        Some(c) => t.uint(k!("cert_chain_len"), c.chain_len),
        None => t.raw(k!("cert_chain_len"), "null"),
    }
    t.bool(k!("cert_request"), f.cert_request);
    t.plain(k!("client_cert"), f.client_cert.as_str());
    let c = f.client.unwrap_or(r.session.client);
    tls_dir(t.key(k!("client")), &f.dirs[c.index()]);
    tls_dir(t.key(k!("server")), &f.dirs[c.other().index()]);
    t.close();
}

fn point(b: &mut Vec<u8>, r: &Record, id: usize, p: &PointState) {
    let mut o = Obj::open(b);
    o.uint(
        k!("packets"),
        u64::from(p.dirs[0].packets) + u64::from(p.dirs[1].packets),
    );
    o.uint(k!("bytes"), p.dirs[0].bytes + p.dirs[1].bytes);
    roles(o.key(k!("fin")), r, p, |d| d.fin_count > 0);
    roles(o.key(k!("rst")), r, p, |d| d.rst_count > 0);
    if let Some(v) = p.vlan {
        o.uint(k!("vlan"), v);
    }
    if p.snaplen_cut > 0 {
        o.uint(k!("snaplen_cut"), p.snaplen_cut);
    }
    if let Some(f) = r.tls.get(id).filter(|f| f.detected) {
        tls_fields(&mut o, r, f);
    }
    let t = o.key(k!("tcp"));
    let mut tcp = Obj::open(t);
    dir(
        tcp.key(k!("client")),
        &p.dirs[r.session.side_of(Role::Client).index()],
    );
    dir(
        tcp.key(k!("server")),
        &p.dirs[r.session.side_of(Role::Server).index()],
    );
    tcp.close();
    o.close();
}

fn endpoint(b: &mut Vec<u8>, e: crate::flow::Endpoint) {
    let mut o = Obj::open(b);
    let ip = o.key(k!("ip"));
    ip.push(b'"');
    push_ip(ip, e.ip());
    ip.push(b'"');
    o.uint(k!("port"), e.port);
    o.close();
}

/// The operator's point names, `point<N>` for a point without one.
struct Names<'a>(&'a [String]);

impl Names<'_> {
    fn get(&self, id: PointId) -> Cow<'_, str> {
        match self.0.get(usize::from(id.0)) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("point{}", id.0)),
        }
    }
}

/// Appends one record as a JSON line to `buf`. `point_names[i]` names point `i`.
pub fn record_to(buf: &mut Vec<u8>, r: &Record, point_names: &[String]) {
    let names = Names(point_names);
    let name = |id: PointId| names.get(id).into_owned();
    let mut o = Obj::open(buf);
    o.uint(k!("schema"), SCHEMA_VERSION);
    push_hex(o.key(k!("session_id")), &r.session_id.to_be_bytes());
    o.ts(k!("ts_start"), r.session.first_ts);
    o.ts(k!("ts_end"), r.session.last_ts);
    endpoint(o.key(k!("client")), r.key.endpoint(r.session.client));
    endpoint(
        o.key(k!("server")),
        r.key.endpoint(r.session.client.other()),
    );
    o.plain(k!("roles"), r.session.roles.as_str());
    let sni = r.tls[..usize::from(r.npoints)]
        .iter()
        .find_map(|f| f.client_hello.and_then(|ch| ch.sni));
    o.text(k!("sni"), sni.as_ref());
    o.plain(k!("verdict"), r.verdict.as_str());
    match r.pan_end_reason {
        Some(p) => o.plain(k!("pan_end_reason"), p.as_str()),
        None => o.raw(k!("pan_end_reason"), "null"),
    }
    o.plain(k!("end_reason"), r.end.as_str());
    two_points(&mut o, r, &names);
    pairing(&mut o, r, &names);
    suspects(&mut o, r, &names);
    {
        let b = o.key(k!("points"));
        b.push(b'{');
        let mut first = true;
        for (id, p) in r.points() {
            if !first {
                b.push(b',');
            }
            first = false;
            push_escaped(b, &names.get(id));
            b.push(b':');
            point(b, r, usize::from(id.0), p);
        }
        b.push(b'}');
    }
    {
        let b = o.key(k!("evidence"));
        b.push(b'[');
        for (i, e) in r.evidence.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            push_escaped(b, &e.render(&name));
        }
        b.push(b']');
    }
    o.close();
    buf.push(b'\n');
}

/// The two-point fields: RSTs forged or absorbed by the middlebox, interception,
/// downgrade and the failed leg (empty lists and nulls unless two points saw the
/// session).
fn two_points(o: &mut Obj<'_>, r: &Record, names: &Names<'_>) {
    let c = &r.compare;
    for (key, tamper) in [
        (k!("injected_rst"), Tamper::Forged),
        (k!("absorbed_rst"), Tamper::Absorbed),
    ] {
        let b = o.key(key);
        b.push(b'[');
        let mut first = true;
        for u in c.unmatched().filter(|u| u.rst && u.tamper == tamper) {
            if !first {
                b.push(b',');
            }
            first = false;
            let mut e = Obj::open(b);
            e.text_str(k!("point"), &names.get(u.point));
            e.plain(k!("toward"), u.toward.as_str());
            e.ts(k!("ts"), u.seg.ts);
            e.uint(k!("seq"), u.seg.seq);
            e.uint(k!("ttl"), u.seg.ttl);
            match u.seg.ip_id {
                Some(id) => e.uint(k!("ip_id"), id),
                None => e.raw(k!("ip_id"), "null"),
            }
            e.plain(
                k!("confidence"),
                if u.confident() { "high" } else { "medium" },
            );
            let ev = Evidence::Tampered {
                point: u.point,
                other: u.other,
                toward: u.toward,
                tamper: u.tamper,
                rst: true,
                ttl: u.seg.ttl,
                sender_ttl: u.sender_ttl,
                confident: u.confident(),
                other_count: u.other_count,
                unseen: u.unseen,
            };
            e.text_str(k!("evidence"), &ev.render(&|id| names.get(id).into_owned()));
            e.close();
        }
        b.push(b']');
    }
    let Some((cp, sp)) = c.points else {
        o.raw(k!("intercepted"), "null");
        o.raw(k!("interception"), "null");
        o.raw(k!("downgrade"), "null");
        o.raw(k!("failed_leg"), "null");
        return;
    };
    let (ct, st) = (&r.tls[usize::from(cp.0)], &r.tls[usize::from(sp.0)]);
    let both_tls = ct.client_hello.is_some() && st.client_hello.is_some()
        || ct.server_cert.is_some() && st.server_cert.is_some();
    if !both_tls {
        o.raw(k!("intercepted"), "null");
        o.raw(k!("interception"), "null");
    } else {
        let i = c.interception;
        o.bool(k!("intercepted"), i.any());
        if i.any() {
            let b = o.key(k!("interception"));
            let mut x = Obj::open(b);
            x.bool(k!("client_random_differs"), i.client_random);
            x.bool(k!("ja4_differs"), i.ja4);
            x.bool(k!("leaf_cert_differs"), i.leaf_cert);
            let issuer = x.key(k!("leaf_cert_issuer"));
            let mut y = Obj::open(issuer);
            for (p, f) in [(cp, ct), (sp, st)] {
                let b = y.key_escaped(&names.get(p));
                match f.server_cert.filter(|l| l.parsed) {
                    Some(l) => push_escaped(b, &String::from_utf8_lossy(l.issuer.as_bytes())),
                    None => b.extend_from_slice(b"null"),
                }
            }
            y.close();
            x.close();
        } else {
            o.raw(k!("interception"), "null");
        }
    }
    match c.downgrade {
        Some((a, b)) => {
            let d = o.key(k!("downgrade"));
            let mut x = Obj::open(d);
            push_escaped(x.key_escaped(&names.get(cp)), version_name(a));
            push_escaped(x.key_escaped(&names.get(sp)), version_name(b));
            x.close();
        }
        None => o.raw(k!("downgrade"), "null"),
    }
    match c.failed_leg {
        Some((failed, _)) => o.text_str(k!("failed_leg"), &names.get(failed)),
        None => o.raw(k!("failed_leg"), "null"),
    }
}

/// `suspect_rst`: single-point signs of forged RSTs.
fn suspects(o: &mut Obj<'_>, r: &Record, names: &Names<'_>) {
    let b = o.key(k!("suspect_rst"));
    b.push(b'[');
    for (i, u) in r.suspect.iter().flatten().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        let mut e = Obj::open(b);
        e.text_str(k!("point"), &names.get(u.point));
        e.plain(k!("from"), u.from.as_str());
        e.ts(k!("ts"), u.seg.ts);
        e.plain(k!("confidence"), u.confidence().as_str());
        let signs = e.key(k!("signs"));
        signs.push(b'[');
        let mut first = true;
        for (bit, label) in crate::correlate::sign::NAMES {
            if u.signs & bit != 0 {
                if !first {
                    signs.push(b',');
                }
                first = false;
                push_escaped(signs, label);
            }
        }
        signs.push(b']');
        e.uint(k!("ttl"), u.seg.ttl);
        if u.usual_ttl == 0 {
            e.raw(k!("usual_ttl"), "null");
        } else {
            e.uint(k!("usual_ttl"), u.usual_ttl);
        }
        e.close();
    }
    b.push(b']');
}

/// `pairing`: the legs a proxy opened for this session, or null.
fn pairing(o: &mut Obj<'_>, r: &Record, names: &Names<'_>) {
    let Some(p) = &r.pairing else {
        o.raw(k!("pairing"), "null");
        return;
    };
    let b = o.key(k!("pairing"));
    let mut x = Obj::open(b);
    x.plain(k!("method"), "server_sni_time");
    x.plain(k!("confidence"), p.confidence.as_str());
    let server_point = r.compare.points.map(|(_, s)| s).unwrap_or(PointId(1));
    x.text_str(k!("point"), &names.get(server_point));
    let legs = x.key(k!("legs"));
    legs.push(b'[');
    for (i, l) in p.legs().enumerate() {
        if i > 0 {
            legs.push(b',');
        }
        let mut e = Obj::open(legs);
        push_hex(e.key(k!("session_id")), &l.session_id.to_be_bytes());
        endpoint(e.key(k!("client")), l.client);
        e.ts(k!("ts_start"), l.first_ts);
        e.plain(k!("verdict"), l.verdict.as_str());
        e.close();
    }
    legs.push(b']');
    x.uint(k!("more_legs"), p.more);
    x.close();
}

/// Writes one record as a JSON line. `point_names[i]` names point `i`.
pub fn write_record<W: Write>(out: &mut W, r: &Record, point_names: &[String]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    record_to(&mut buf, r, point_names);
    out.write_all(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        push_escaped_bytes(&mut b, v);
        b
    }

    /// What the fast paths replaced: serde_json's escaping of the lossy text.
    fn reference(v: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&String::from_utf8_lossy(v)).unwrap()
    }

    #[test]
    fn test_escape_every_byte_at_every_offset() {
        for c in 0..=255u8 {
            for at in 0..17 {
                let mut v = vec![b'a'; 17];
                v[at] = c;
                assert_eq!(escaped(&v), reference(&v), "byte {c:#04x} at {at}");
                let s = String::from_utf8_lossy(&v).into_owned();
                let mut b = Vec::new();
                push_escaped(&mut b, &s);
                assert_eq!(b, serde_json::to_vec(&s).unwrap());
            }
        }
    }

    #[test]
    fn test_integers_match_itoa() {
        for v in (0..2_000u64).chain([u64::from(u32::MAX), u64::MAX]) {
            let mut b = Vec::new();
            push_u64(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
        }
    }

    #[test]
    fn test_hex_matches_format() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for n in [0, 1, 16, 31, 32, 33, 64, 256] {
            let mut b = Vec::new();
            push_hex(&mut b, &bytes[..n]);
            let want: String = bytes[..n].iter().map(|x| format!("{x:02x}")).collect();
            assert_eq!(b, format!("\"{want}\"").as_bytes());
        }
    }

    proptest! {
        #[test]
        fn prop_escape_matches_serde_json(v in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(escaped(&v), reference(&v));
        }

        #[test]
        fn prop_escape_text_matches_serde_json(s in "\\PC{0,40}|[ -~\"\\\\\u{0}-\u{1f}]{0,40}") {
            let mut b = Vec::new();
            push_escaped(&mut b, &s);
            prop_assert_eq!(b, serde_json::to_vec(&s).unwrap());
        }
    }
}
