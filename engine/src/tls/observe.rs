//! What TLS shows at one capture point: both directions' record layers followed in
//! sequence order, the hellos, the server's certificate, alerts, and a short log of
//! record headers from which the verdict infers what encryption hides
//! ([`super::judge`]).
//!
//! Split in two: [`TlsFacts`] is plain `Copy` data that goes into the verdict
//! record; [`TlsPoint`] adds the stream machinery (reassembly, record framing) that
//! stays on the worker and borrows buffers from its [`BufPool`]. A direction's
//! machinery is held whole (in the worker's bounded [`StreamPool`]) only while
//! something is partly read; otherwise it is parked in the point as a 24-byte
//! `Framer` (record framing and next sequence number), which is all the fast
//! path after the handshake needs. While the session
//! is open, the ClientHello (but its random) and the server certificate, which
//! repeat across sessions, are kept once per worker ([`super::memo::Store`]).
//!
//! Cost: until a direction's handshake is over, its bytes are framed and the
//! handshake messages parsed (once per session: the hellos and certificate
//! allocate a few times inside tls-parser and x509-parser). After that, a segment
//! costs a sequence check and the subtraction of its length from the current
//! record's remainder; the payload is not read except for record headers.

use super::cert::{parse_certificate, parse_certificate_request, CertMessage, LeafCert};
use super::hello::{
    parse_client_hello_memo, parse_server_hello, parse_sslv2_client_hello,
    parse_sslv2_server_hello, sslv2_client_hello_len, ClientHello, ServerHello,
};
use super::memo::{Memo, NONE};
use super::names::FixedStr;
use super::pool::BufPool;
use super::reassembly::Reassembler;
use super::record::{content, Event, Framing, RecordReader};
use crate::flow::Side;
use crate::time::{MaybeTimestamp, Timestamp};

/// Alerts kept per point (the first ones: the decisive alert comes first).
pub const MAX_ALERTS: usize = 4;
/// Record headers kept per point, in order, for the inference of encrypted alerts.
pub const MAX_LOG: usize = 24;
/// Record headers per chunk of the worker's [`LogArena`].
pub const LOG_CHUNK: usize = 8;
/// Chunks a point's log takes at most.
pub const LOG_CHUNKS: usize = MAX_LOG / LOG_CHUNK;

/// Handshake message types (RFC 8446 4, RFC 5246 7.4).
pub mod hs {
    pub const CLIENT_HELLO: u8 = 1;
    pub const SERVER_HELLO: u8 = 2;
    pub const CERTIFICATE: u8 = 11;
    pub const SERVER_KEY_EXCHANGE: u8 = 12;
    pub const CERTIFICATE_REQUEST: u8 = 13;
    pub const SERVER_HELLO_DONE: u8 = 14;
    pub const CLIENT_KEY_EXCHANGE: u8 = 16;
}

/// Whether a point's TLS 1.3 rules ([`super::judge`]) still read its record log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Log13 {
    /// The log is kept (the first [`MAX_LOG`] records).
    #[default]
    Open,
    /// The rules had decided while the session was open ([`super::judge::settled`]):
    /// the log was given back but for rule 2's record (its one entry, if any) and
    /// is kept no further; whether the client's flight carried a Certificate.
    Settled { cert_asked: bool },
}

/// How far the handshake got at a point (DESIGN.md: `handshake`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Handshake {
    #[default]
    None,
    ClientHello,
    ServerHello,
    Aborted,
    Complete,
}

impl Handshake {
    pub fn as_str(self) -> &'static str {
        match self {
            Handshake::None => "none",
            Handshake::ClientHello => "client_hello",
            Handshake::ServerHello => "server_hello",
            Handshake::Aborted => "aborted",
            Handshake::Complete => "complete",
        }
    }
}

/// The client's answer to a certificate request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClientCert {
    /// No Certificate message from the client (or not visible: TLS 1.3).
    #[default]
    None,
    /// A Certificate message with no certificate in it.
    Empty,
    Sent,
}

impl ClientCert {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCert::None => "none",
            ClientCert::Empty => "empty",
            ClientCert::Sent => "sent",
        }
    }
}

/// One alert, seen or inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Alert {
    pub ts: Timestamp,
    /// The end that sent it.
    pub side: Side,
    /// 1 warning, 2 fatal, 0 unknown (encrypted).
    pub level: u8,
    /// RFC 8446 6 description; meaningful only when not `encrypted`.
    pub description: u8,
    /// Its body was encrypted: the description is unknown.
    pub encrypted: bool,
    /// Not an alert record at all, but a short application_data record that the
    /// rules of [`super::judge`] read as a TLS 1.3 alert.
    pub inferred: bool,
    /// Record length.
    pub len: u16,
    /// Application data had flowed both ways before it (a close, not an abort).
    pub after_data: bool,
    /// The last handshake message type the sender had received from its peer
    /// (`0` if none): what the alert answers.
    pub answers: u8,
}

impl Alert {
    pub fn fatal_or_unknown(&self) -> bool {
        self.level != 1
    }
}

/// One record header, in the order the point saw them.
///
/// Packed to 4-byte alignment: 12 bytes instead of 16, and a TLS point keeps
/// [`MAX_LOG`] of them (fields are read by value; no reference to one is taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C, packed(4))]
pub struct LoggedRecord {
    pub ts: Timestamp,
    pub side: Side,
    pub content_type: u8,
    pub len: u16,
}

/// Parts of the open TLS sessions' facts that most sessions use little of, in
/// chunks of `N` entries taken as they fill: the record-header log (most sessions
/// are judged, or still open, with fewer than [`MAX_LOG`] records: one or two chunks
/// of [`LOG_CHUNK`], not three) and the alerts (most sessions have none). Chunks are
/// recycled; the arena grows to the peak number in use, at most `limit` (which
/// [`super::TlsTable`] sets to what all its points could take at once), then never
/// allocates again. No chunk free: the entry is not kept, as when the session's own
/// room is full (`log_dropped`, `alerts_dropped`).
#[derive(Debug)]
pub struct Chunks<T, const N: usize> {
    chunks: Vec<[T; N]>,
    free: Vec<u32>,
    limit: usize,
}

/// The record-header logs (see [`Chunks`]).
pub type LogArena = Chunks<LoggedRecord, LOG_CHUNK>;
/// The alerts (see [`Chunks`]): one chunk holds a point's [`MAX_ALERTS`].
pub type AlertArena = Chunks<Alert, MAX_ALERTS>;

impl<T: Copy + Default, const N: usize> Default for Chunks<T, N> {
    fn default() -> Self {
        Chunks::new(NONE as usize)
    }
}

impl<T: Copy + Default, const N: usize> Chunks<T, N> {
    /// At most `limit` chunks.
    pub fn new(limit: usize) -> Self {
        Chunks {
            chunks: Vec::new(),
            free: Vec::new(),
            limit: limit.min(NONE as usize),
        }
    }

    /// Chunks in use.
    pub fn in_use(&self) -> usize {
        self.chunks.len() - self.free.len()
    }

    /// Puts `v` at `n` in the entries whose chunks are `idx` (`idx[n / N]` taken
    /// here if [`NONE`]). False if no chunk was free.
    fn set(&mut self, idx: &mut [u32], n: usize, v: T) -> bool {
        let Some(c) = idx.get_mut(n / N) else {
            return false;
        };
        if *c == NONE {
            *c = self.take().unwrap_or(NONE);
        }
        match self.chunks.get_mut(*c as usize) {
            Some(chunk) => {
                chunk[n % N] = v;
                true
            }
            None => false,
        }
    }

    /// The first `n` entries whose chunks are `idx`, into `out`.
    fn get_into(&self, idx: &[u32], n: usize, out: &mut [T]) {
        for (k, e) in out.iter_mut().enumerate().take(n) {
            let chunk = idx.get(k / N).and_then(|&c| self.chunks.get(c as usize));
            if let Some(chunk) = chunk {
                *e = chunk[k % N];
            }
        }
    }

    /// Gives back the chunks `idx` (set to [`NONE`]).
    fn give_all(&mut self, idx: &mut [u32]) {
        for c in idx {
            if *c != NONE {
                self.free.push(*c);
                *c = NONE;
            }
        }
    }

    fn take(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.chunks.len() >= self.limit {
            return None;
        }
        self.chunks.push([T::default(); N]);
        Some((self.chunks.len() - 1) as u32)
    }
}

/// What one direction sent at the record layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DirFacts {
    pub records: u32,
    /// application_data records (TLS 1.3: every protected record).
    pub app_records: u32,
    pub app_bytes: u64,
    /// First ChangeCipherSpec.
    pub ccs: MaybeTimestamp,
    /// First application_data record.
    pub first_app: MaybeTimestamp,
    /// Handshake records after this direction's ChangeCipherSpec (its Finished).
    pub encrypted_handshake: u16,
    /// The last handshake message type this direction sent in plaintext.
    pub last_message: u8,
    /// The bytes were not TLS.
    pub not_tls: bool,
    /// SSLv2 framing (a hello): not followed further.
    pub sslv2: bool,
    /// The last record: its time, type and length (a close_notify at the end).
    pub last_record: Option<LoggedRecord>,
    /// Part of the stream was not captured: not followed past it.
    pub gap: bool,
    /// Bytes dropped from the out-of-order buffer (window or buffers full).
    pub overflow_bytes: u32,
    /// Handshake messages skipped: longer than the buffer, or no buffer free.
    pub skipped_messages: u16,
}

/// What TLS showed at one point. Plain data: copied into the verdict record.
///
/// While the session is open, the worker keeps the [`TlsCore`] per session and the
/// two bulky parts that repeat across sessions (the ClientHello but for its random,
/// and the server's certificate) once, shared ([`super::memo::Store`]); the record
/// gets them all back ([`TlsPoint::facts`]). The core's fields read as this
/// struct's (`Deref`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TlsFacts {
    pub core: TlsCore,
    /// The record headers, the first `nlog` of them (kept in the worker's
    /// [`LogArena`] while the session is open).
    pub log: [LoggedRecord; MAX_LOG],
    /// The alerts, the first `nalerts` of them (kept in the worker's
    /// [`AlertArena`] while the session is open).
    pub alerts: [Alert; MAX_ALERTS],
    pub client_hello: Option<ClientHello>,
    pub server_cert: Option<LeafCert>,
}

impl TlsFacts {
    pub fn log(&self) -> &[LoggedRecord] {
        &self.log[..usize::from(self.nlog)]
    }
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts[..usize::from(self.nalerts)]
    }
    pub fn push_alert(&mut self, a: Alert) {
        if usize::from(self.nalerts) < MAX_ALERTS {
            self.alerts[usize::from(self.nalerts)] = a;
            self.core.nalerts += 1;
        } else {
            self.core.alerts_dropped = self.alerts_dropped.saturating_add(1);
        }
    }

    /// The same facts with the two sides exchanged: for a leg whose flow key puts
    /// the ends the other way round than the session it is joined to.
    pub fn swap_sides(&mut self) {
        self.core.swap_sides();
        for l in &mut self.log {
            l.side = l.side.other();
        }
        for a in &mut self.alerts {
            a.side = a.side.other();
        }
    }
}

impl std::ops::Deref for TlsFacts {
    type Target = TlsCore;
    fn deref(&self) -> &TlsCore {
        &self.core
    }
}

impl std::ops::DerefMut for TlsFacts {
    fn deref_mut(&mut self) -> &mut TlsCore {
        &mut self.core
    }
}

/// [`TlsFacts`] but for the ClientHello and the server certificate: what a session
/// holds of its own at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TlsCore {
    /// TLS was seen (a hello, or records mid-stream).
    pub detected: bool,
    /// The end that sent the ClientHello.
    pub client: Option<Side>,
    /// ClientHellos seen (2 after a HelloRetryRequest).
    pub client_hellos: u8,
    /// The last ServerHello (after a HelloRetryRequest, the real one).
    pub server_hello: Option<ServerHello>,
    /// A HelloRetryRequest was sent.
    pub hello_retry: bool,
    /// An SSLv2 server-hello with this version.
    pub sslv2_server: Option<u16>,
    /// Index in `log` of the first record after the last ServerHello's record.
    pub after_server_hello: u8,
    /// The server's Certificate message held no certificate or did not parse.
    pub server_cert_unreadable: bool,
    /// A CertificateRequest (TLS 1.2 and earlier; encrypted in TLS 1.3).
    pub cert_request: bool,
    pub client_cert: ClientCert,
    /// Indexed by [`Side`].
    pub dirs: [DirFacts; 2],
    /// Alerts seen (in [`TlsFacts::alerts`]).
    pub nalerts: u8,
    pub alerts_dropped: u16,
    /// Record headers logged (in [`TlsFacts::log`]).
    pub nlog: u8,
    pub log_dropped: u32,
    /// Whether the TLS 1.3 rules still need the log.
    pub log13: Log13,
    /// The stored ClientHello offered early data (the rules read it from the
    /// ClientHello when the session is judged; while it is open, from here).
    pub offers_early_data: bool,
    /// How far the handshake got: set when the session is judged.
    pub handshake: Handshake,
}

impl TlsCore {
    /// The negotiated version: the ServerHello's, else the SSLv2 server-hello's.
    pub fn version(&self) -> Option<u16> {
        self.server_hello
            .filter(|sh| !sh.hello_retry)
            .map(|sh| sh.version)
            .or(self.sslv2_server)
    }
    /// TLS 1.3 or one of its drafts was negotiated.
    pub fn is_tls13(&self) -> bool {
        self.version().is_some_and(is_tls13)
    }
    /// The same facts but the log and the alerts with the two sides exchanged
    /// (see [`TlsFacts::swap_sides`]).
    pub fn swap_sides(&mut self) {
        let other = |s: Side| s.other();
        self.client = self.client.map(other);
        self.dirs.swap(0, 1);
        for d in &mut self.dirs {
            if let Some(r) = &mut d.last_record {
                r.side = r.side.other();
            }
        }
    }

    /// Application data was sent both ways.
    pub fn data_both_ways(&self) -> bool {
        self.dirs[0].app_records > 0 && self.dirs[1].app_records > 0
    }
}

/// TLS 1.3 or a draft of it (IETF 0x7fxx, Facebook's 0x7exx).
pub fn is_tls13(v: u16) -> bool {
    v == 0x0304 || v >> 8 == 0x7f || v >> 8 == 0x7e
}

/// The fast-path window of one direction at one point: the sequence numbers
/// `[next, end)` are the rest of an application_data record, with nothing held out
/// of order, so that an in-order segment inside it needs no TLS work at all. Kept in
/// [`crate::session::PointState`], beside the TCP state the packet touches anyway.
/// A window used up to its end (`next == end`) still says how far the fast path
/// got; [`FastWindow::NONE`] (`end` before `next`) says there is no window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastWindow {
    pub next: u32,
    pub end: u32,
}

impl Default for FastWindow {
    fn default() -> Self {
        FastWindow::NONE
    }
}

impl FastWindow {
    pub const NONE: FastWindow = FastWindow { next: 1, end: 0 };

    /// Whether the in-order segment `[seq, seq + len)`, `len > 0`, lies inside.
    #[inline(always)]
    pub fn covers(&self, seq: u32, len: u32) -> bool {
        seq == self.next && crate::tcp::seq_le(seq.wrapping_add(len), self.end)
    }

    /// How far the fast path got, if there is a window.
    pub fn reached(&self) -> Option<u32> {
        crate::tcp::seq_le(self.next, self.end).then_some(self.next)
    }
}

/// One direction's stream machinery, whole. Held in the worker's [`StreamPool`]
/// only while something is partly read (a split header or message, out-of-order
/// data, the first bytes); otherwise parked in the point's [`Framer`].
#[derive(Debug)]
struct Stream {
    reasm: Reassembler,
    rec: RecordReader,
    started: bool,
    /// The first bytes, kept until there are enough to tell TLS from the rest.
    prefix: Prefix,
    /// Not followed any more (not TLS, SSLv2, gap).
    stopped: bool,
    /// The peer's `acked_unseen` count last time: when it grows, a segment of this
    /// direction was never captured.
    acked_unseen: u32,
}

impl Stream {
    /// The stream parked in `f` (`buf_cap`: the buffers' size).
    fn unpark(f: &Framer, buf_cap: usize) -> Stream {
        Stream {
            reasm: Reassembler::unpark(f.reasm_started, f.next, buf_cap),
            rec: RecordReader::unpark(f.rec, buf_cap),
            started: f.started,
            prefix: Prefix {
                decided: f.decided,
                ..Prefix::default()
            },
            stopped: f.stopped,
            acked_unseen: f.acked_unseen,
        }
    }

    /// All of the stream in a [`Framer`], if nothing is partly read (a stopped
    /// stream reads nothing more and holds no buffer: always).
    fn park(&self) -> Option<Framer> {
        if self.stopped {
            return Some(Framer {
                stopped: true,
                ..Framer::default()
            });
        }
        let (reasm_started, next) = self.reasm.park()?;
        let rec = self.rec.park()?;
        if !self.prefix.decided && self.prefix.len > 0 {
            return None;
        }
        Some(Framer {
            rec,
            next,
            acked_unseen: self.acked_unseen,
            slot: PARKED,
            reasm_started,
            started: self.started,
            stopped: false,
            decided: self.prefix.decided,
        })
    }
}

/// [`Framer::slot`] of a parked stream.
const PARKED: u32 = u32::MAX;

/// One direction of a point as the session keeps it: while nothing is partly read,
/// the whole [`Stream`] parked in 24 bytes (the record framing and the next
/// sequence number: all the fast path needs); otherwise the index of the stream in
/// the worker's [`StreamPool`], which then holds it (and the other fields are
/// stale but `stopped`, which is false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Framer {
    rec: Framing,
    /// The reassembler's next sequence number.
    next: u32,
    acked_unseen: u32,
    /// The stream's index in the [`StreamPool`], or [`PARKED`].
    slot: u32,
    reasm_started: bool,
    started: bool,
    stopped: bool,
    /// The first bytes decided TLS (none gathered while undecided: parked).
    decided: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            rec: Framing::default(),
            next: 0,
            acked_unseen: 0,
            slot: PARKED,
            reasm_started: false,
            started: false,
            stopped: false,
            decided: false,
        }
    }
}

impl Framer {
    /// [`Reassembler::advance_to`] with nothing held.
    #[inline]
    fn advance_to(&mut self, seq: u32) {
        if crate::tcp::seq_le(self.next, seq) {
            self.next = seq;
        }
    }
}

/// The streams of a worker's TLS sessions that are partly read at the moment
/// (see [`Framer`]): a bounded slab, reserved when the worker starts, filled on
/// first need and recycled (never allocates once reserved). When it is full, a
/// stream that needs a place is not followed further (its facts say `gap`) and the
/// refusal is counted (`tls.streams_exhausted`).
#[derive(Debug)]
pub struct StreamPool {
    slots: Vec<Stream>,
    free: Vec<u32>,
    limit: usize,
    buf_cap: usize,
    /// Times a stream found no place.
    pub exhausted: u64,
    /// Most streams held at once.
    pub peak: usize,
}

impl StreamPool {
    /// At most `limit` streams, whose buffers hold `buf_cap` bytes.
    pub fn new(buf_cap: usize, limit: usize) -> StreamPool {
        let limit = limit.clamp(1, PARKED as usize);
        StreamPool {
            slots: Vec::with_capacity(limit),
            free: Vec::with_capacity(limit),
            limit,
            buf_cap,
            exhausted: 0,
            peak: 0,
        }
    }

    /// Streams held now.
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether a stream can be taken in; if not, the refusal is counted.
    fn room(&mut self) -> bool {
        let room = !self.free.is_empty() || self.slots.len() < self.limit;
        if !room {
            self.exhausted += 1;
        }
        room
    }

    /// Takes `st` in (after [`StreamPool::room`] said yes); its index.
    fn put(&mut self, st: Stream) -> u32 {
        let i = if let Some(i) = self.free.pop() {
            self.slots[i as usize] = st;
            i
        } else {
            // Reserved at creation for `limit`, which `room` checked: this push
            // never reallocates.
            self.slots.push(st);
            (self.slots.len() - 1) as u32
        };
        self.peak = self.peak.max(self.in_use());
        i
    }

    /// Gives back the place of a stream that was parked (holds no buffer).
    fn free(&mut self, i: u32) {
        self.free.push(i);
    }
}

/// TLS state of one session at one point: facts plus stream machinery.
#[derive(Debug)]
pub struct TlsPoint {
    pub facts: TlsCore,
    held: Held,
    dirs: [Framer; 2],
    /// The chunks of its record log in the worker's [`LogArena`] (`NONE`: not
    /// taken yet).
    log: [u32; LOG_CHUNKS],
    /// Its alerts' chunk in the worker's [`AlertArena`] (`NONE`: no alert yet).
    alerts: u32,
}

// Kept once per TLS session and point (1,880 bytes before the shared stores, the
// packed record log and the 8-byte optional times; 1,024 before the streams were
// parked in 24-byte framers; 656 before the record log went to the `LogArena`,
// 384 before the alerts went to the `AlertArena`).
const _: () = assert!(std::mem::size_of::<TlsPoint>() == 288);
const _: () = assert!(std::mem::size_of::<Framer>() == 24);
const _: () = assert!(std::mem::size_of::<LoggedRecord>() == 12);

/// What a point holds in the worker's stores ([`Memo`]), and the ClientHello's
/// random (the one part of it that no other session shares).
#[derive(Clone, Copy, Debug)]
struct Held {
    hello: u32,
    random: [u8; 32],
    cert: u32,
}

impl Default for Held {
    fn default() -> Self {
        Held {
            hello: NONE,
            random: [0; 32],
            cert: NONE,
        }
    }
}

/// One TCP segment, as the TLS layer needs it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub ts: Timestamp,
    pub side: Side,
    pub seq: u32,
    /// The captured payload (may be shorter than `wire_len`: cut by the snap length).
    pub payload: &'a [u8],
    pub wire_len: u32,
    /// This direction's initial sequence number, if its SYN was seen at this point.
    pub isn: Option<u32>,
    /// How many times this direction's data was acknowledged without being captured.
    pub acked_unseen: u32,
}

/// First bytes of a stream that start TLS: a handshake record (a ClientHello, or a
/// server's first flight), an alert, or an SSLv2-format ClientHello. Mid-stream (no
/// SYN seen), any record type of TLS counts.
pub fn looks_like_tls(first: &[u8], mid_stream: bool) -> bool {
    match first {
        [0x16, 3, 0..=4, ..] => true,
        [0x14 | 0x15 | 0x17, 3, 0..=4, ..] => mid_stream,
        _ => sslv2_client_hello_len(first).is_some(),
    }
}

impl Default for TlsPoint {
    fn default() -> Self {
        TlsPoint::new()
    }
}

impl TlsPoint {
    pub fn new() -> TlsPoint {
        TlsPoint {
            facts: TlsCore::default(),
            held: Held::default(),
            dirs: [Framer::default(); 2],
            log: [NONE; LOG_CHUNKS],
            alerts: NONE,
        }
    }

    /// All the facts, the shared parts taken from `memo`'s stores.
    pub fn facts(&self, memo: &Memo) -> TlsFacts {
        let mut out = TlsFacts::default();
        self.facts_to(memo, &mut out);
        out
    }

    /// [`TlsPoint::facts`], written into `out` (the same value, without building
    /// one on the stack and copying it over).
    pub fn facts_to(&self, memo: &Memo, out: &mut TlsFacts) {
        out.core = self.facts;
        out.log = [LoggedRecord::default(); MAX_LOG];
        memo.logs
            .get_into(&self.log, usize::from(self.facts.nlog), &mut out.log);
        out.alerts = [Alert::default(); MAX_ALERTS];
        let n = usize::from(self.facts.nalerts);
        memo.alerts
            .get_into(std::slice::from_ref(&self.alerts), n, &mut out.alerts);
        out.client_hello = memo.hellos.get(self.held.hello).map(|ch| ClientHello {
            random: self.held.random,
            ..*ch
        });
        out.server_cert = memo.leaves.get(self.held.cert).copied();
    }

    /// The SNI of the ClientHello: `None` before it, `Some(None)` if it has none.
    pub fn sni(&self, memo: &Memo) -> Option<Option<FixedStr<255>>> {
        memo.hellos.get(self.held.hello).map(|ch| ch.sni)
    }

    /// Gives back any stream and buffer it holds and what it holds in `memo`'s
    /// stores (the session ends).
    pub fn release(
        &mut self,
        ooo: &mut BufPool,
        msgs: &mut BufPool,
        memo: &mut Memo,
        streams: &mut StreamPool,
    ) {
        for f in &mut self.dirs {
            if f.slot != PARKED {
                let st = &mut streams.slots[f.slot as usize];
                st.reasm.release(ooo);
                st.rec.release_buffer(msgs);
                streams.free(f.slot);
            }
            *f = Framer::default();
        }
        memo.logs.give_all(&mut self.log);
        memo.alerts.give_all(std::slice::from_mut(&mut self.alerts));
        memo.hellos.release(self.held.hello);
        memo.leaves.release(self.held.cert);
        self.held = Held::default();
    }

    /// Whether a segment from `side` needs any work (false once the direction is no
    /// longer followed).
    #[inline]
    pub fn wants(&self, side: Side) -> bool {
        !self.dirs[side.index()].stopped
    }

    /// The bytes of `side` up to `seq` went by on the caller's fast path (see
    /// [`TlsPoint::on_segment`]): account for them.
    pub fn catch_up(&mut self, side: Side, seq: u32, streams: &mut StreamPool) {
        let f = &mut self.dirs[side.index()];
        if f.slot != PARKED {
            let st = &mut streams.slots[f.slot as usize];
            let n = seq.wrapping_sub(st.reasm.next_seq());
            if n == 0 || st.stopped || !st.reasm.is_clear() || n > u32::from(st.rec.skippable()) {
                return;
            }
            st.reasm.advance_to(seq);
            st.rec.consume(n as u16);
            return;
        }
        // Parked: nothing is held, and a ChangeCipherSpec's end needs no more than
        // the framing's own flag.
        let n = seq.wrapping_sub(f.next);
        if n == 0 || f.stopped || n > u32::from(f.rec.skippable()) {
            return;
        }
        f.advance_to(seq);
        f.rec.consume(n as u16);
    }

    /// Follows one segment. Out-of-order data waits in a buffer from `ooo`; split
    /// handshake messages are assembled in one from `msgs`. While anything is
    /// partly read, the direction's stream is held in `streams` (no place free: the
    /// direction is not followed further, as after a gap).
    ///
    /// Returns the fast-path window `[next, end)` of sequence numbers from `side`
    /// that need no reading (the rest of the current application_data record, with
    /// nothing held out of order; empty if there is none). A caller may pass an in-order segment
    /// that lies inside it over without calling this at all, as long as it calls
    /// [`TlsPoint::catch_up`] with how far it got before the next call.
    pub fn on_segment(
        &mut self,
        seg: &Segment<'_>,
        ooo: &mut BufPool,
        msgs: &mut BufPool,
        memo: &mut Memo,
        streams: &mut StreamPool,
    ) -> FastWindow {
        let d = seg.side.index();
        let Self {
            facts,
            held,
            dirs,
            log,
            alerts,
        } = self;
        let f = &mut dirs[d];
        if f.stopped {
            return FastWindow::NONE;
        }
        if f.slot != PARKED {
            let st = &mut streams.slots[f.slot as usize];
            follow(facts, held, (log, alerts), st, seg, ooo, msgs, memo);
            let w = window(st);
            if let Some(parked) = st.park() {
                streams.free(f.slot);
                *f = parked;
            }
            return w;
        }
        let mut st = Stream::unpark(f, streams.buf_cap);
        follow(facts, held, (log, alerts), &mut st, seg, ooo, msgs, memo);
        let w = window(&st);
        let parked = st.park();
        if let Some(parked) = parked {
            *f = parked;
            return w;
        }
        if streams.room() {
            f.slot = streams.put(st);
            return w;
        }
        stop(&mut st, &mut facts.dirs[d], ooo, msgs, Stop::Gap);
        *f = Framer {
            stopped: true,
            ..Framer::default()
        };
        FastWindow::NONE
    }

    /// The fast path's second half: an in-order segment `payload` at `seq` that ends
    /// the current application_data record at `off` and starts the next one there,
    /// the bytes before `seq` having gone by on the fast path too. If that next
    /// record is application_data as well and runs past the segment, it is accounted
    /// for here, without the reassembly and framing machinery, and the new fast-path
    /// window is returned. Otherwise (`None`) nothing was changed: the caller takes
    /// the full path.
    #[inline]
    #[expect(
        clippy::too_many_arguments,
        reason = "the segment's fields, and the worker's pools borrowed apart from the point"
    )]
    pub fn fast_header(
        &mut self,
        side: Side,
        ts: Timestamp,
        seq: u32,
        payload: &[u8],
        off: usize,
        streams: &mut StreamPool,
        logs: &mut LogArena,
    ) -> Option<FastWindow> {
        let Self {
            facts, dirs, log, ..
        } = self;
        let f = &mut dirs[side.index()];
        let &[ct, major, minor, l0, l1] = payload.get(off..off + 5)? else {
            return None;
        };
        let len = u16::from_be_bytes([l0, l1]);
        let after = payload.len() - off - 5;
        if ct != content::APPLICATION_DATA
            || major != 3
            || minor > 4
            || len > super::record::MAX_RECORD_BODY
            || usize::from(len) <= after
            || f.stopped
        {
            return None;
        }
        let left = len - after as u16;
        let end = seq.wrapping_add(payload.len() as u32);
        if f.slot == PARKED {
            // Bytes of the current record passed over: the fast path's and this
            // segment's.
            let passed = seq.wrapping_sub(f.next) as usize + off;
            if !f.rec.skip_into_app_record(passed, len, left) {
                return None;
            }
            f.advance_to(end);
        } else {
            let st = &mut streams.slots[f.slot as usize];
            if st.stopped || !st.reasm.is_clear() {
                return None;
            }
            let passed = seq.wrapping_sub(st.reasm.next_seq()) as usize + off;
            if !st.rec.skip_into_app_record(passed, len, left) {
                return None;
            }
            st.reasm.advance_to(end);
        }
        record_seen(facts, log, logs, side, ts, ct, len);
        Some(FastWindow {
            next: end,
            end: end.wrapping_add(u32::from(left)),
        })
    }
}

/// The fast-path window of a stream after a segment (see [`TlsPoint::on_segment`]).
fn window(st: &Stream) -> FastWindow {
    let left = st.rec.skippable();
    if st.stopped || left == 0 || !st.reasm.is_clear() || !st.prefix.decided {
        return FastWindow::NONE;
    }
    let next = st.reasm.next_seq();
    FastWindow {
        next,
        end: next.wrapping_add(u32::from(left)),
    }
}

/// Follows one segment of the direction `st`.
#[expect(
    clippy::too_many_arguments,
    reason = "the point's parts and the worker's pools, borrowed apart"
)]
fn follow(
    facts: &mut TlsCore,
    held: &mut Held,
    (log, alerts): (&mut [u32; LOG_CHUNKS], &mut u32),
    st: &mut Stream,
    seg: &Segment<'_>,
    ooo: &mut BufPool,
    msgs: &mut BufPool,
    memo: &mut Memo,
) {
    let d = seg.side.index();
    if st.stopped {
        return;
    }
    if seg.acked_unseen > st.acked_unseen {
        // The peer acknowledged bytes of ours that the capture lost.
        st.acked_unseen = seg.acked_unseen;
        if st.started {
            stop(st, &mut facts.dirs[d], ooo, msgs, Stop::Gap);
            return;
        }
    }
    if seg.payload.is_empty() {
        if seg.wire_len > 0 {
            stop(st, &mut facts.dirs[d], ooo, msgs, Stop::Gap);
        }
        return;
    }
    if !st.started {
        st.started = true;
        let start = seg.isn.map_or(seg.seq, |isn| isn.wrapping_add(1));
        st.reasm.start(start);
    }
    let mut ctx = Ctx {
        facts: &mut *facts,
        held,
        log,
        alerts,
        memo,
        side: seg.side,
        ts: seg.ts,
        stop: None,
        mid_stream: seg.isn.is_none(),
    };
    let (reasm, rec, prefix) = (&mut st.reasm, &mut st.rec, &mut st.prefix);
    reasm.segment_from(seg.seq, seg.payload, ooo, &mut |bytes| {
        feed(&mut ctx, rec, prefix, bytes, msgs)
    });
    if let Some(why) = ctx.stop {
        stop(st, &mut facts.dirs[d], ooo, msgs, why);
        return;
    }
    if st.reasm.overflow_bytes > 0 {
        facts.dirs[d].overflow_bytes = u32::try_from(st.reasm.overflow_bytes).unwrap_or(u32::MAX);
        stop(st, &mut facts.dirs[d], ooo, msgs, Stop::Gap);
        return;
    }
    if (seg.payload.len() as u32) < seg.wire_len {
        // Cut by the snap length: the rest of the stream is out of reach.
        stop(st, &mut facts.dirs[d], ooo, msgs, Stop::Gap);
    }
}

/// Why a direction stops being followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    NotTls,
    Sslv2,
    Gap,
}

fn stop(st: &mut Stream, f: &mut DirFacts, ooo: &mut BufPool, msgs: &mut BufPool, why: Stop) {
    st.stopped = true;
    st.reasm.release(ooo);
    st.rec.release_buffer(msgs);
    match why {
        Stop::NotTls => f.not_tls = true,
        Stop::Sslv2 => f.sslv2 = true,
        Stop::Gap => f.gap = true,
    }
}

/// What the record-layer callbacks need.
struct Ctx<'f> {
    facts: &'f mut TlsCore,
    held: &'f mut Held,
    log: &'f mut [u32; LOG_CHUNKS],
    alerts: &'f mut u32,
    memo: &'f mut Memo,
    side: Side,
    ts: Timestamp,
    stop: Option<Stop>,
    mid_stream: bool,
}

/// A direction's first bytes (5: a record header, or an SSLv2 header with its
/// message type and version), gathered across segments if they arrive cut small.
#[derive(Debug, Default)]
struct Prefix {
    bytes: [u8; 5],
    len: u8,
    decided: bool,
}

/// In-order bytes of one direction.
fn feed(
    ctx: &mut Ctx<'_>,
    rec: &mut RecordReader,
    prefix: &mut Prefix,
    bytes: &[u8],
    msgs: &mut BufPool,
) {
    if ctx.stop.is_some() || bytes.is_empty() {
        return;
    }
    if prefix.decided {
        rec.feed_from(bytes, msgs, &mut |e| on_event(ctx, e));
        return;
    }
    let have = usize::from(prefix.len);
    if have == 0 && bytes.len() >= 5 {
        prefix.decided = true;
        if let Some(rest) = first_bytes(ctx, bytes, bytes) {
            rec.feed_from(rest, msgs, &mut |e| on_event(ctx, e));
        }
        return;
    }
    let take = (5 - have).min(bytes.len());
    prefix.bytes[have..have + take].copy_from_slice(&bytes[..take]);
    prefix.len += take as u8;
    if prefix.len < 5 {
        return;
    }
    prefix.decided = true;
    let head = prefix.bytes;
    if let Some(rest) = first_bytes(ctx, &head, &head) {
        rec.feed_from(rest, msgs, &mut |e| on_event(ctx, e));
        rec.feed_from(&bytes[take..], msgs, &mut |e| on_event(ctx, e));
    }
}

/// Decides from a direction's first bytes (`head`, at least 5 of them, the start of
/// `bytes`) whether it is TLS; returns what the record layer should read next, or
/// `None` if the direction is not followed.
fn first_bytes<'b>(ctx: &mut Ctx<'_>, head: &[u8], bytes: &'b [u8]) -> Option<&'b [u8]> {
    let d = ctx.side.index();
    if let Some(len) = sslv2_client_hello_len(head) {
        // SSLv2 hellos are short: read only when whole in one segment.
        match bytes.get(..len).map(parse_sslv2_client_hello) {
            Some(Ok(ch)) => on_client_hello(ctx, ch),
            _ => ctx.facts.dirs[d].skipped_messages += 1,
        }
        if bytes.len() < len {
            ctx.stop = Some(Stop::Sslv2);
            return None;
        }
        ctx.facts.dirs[d].sslv2 = true;
        return Some(&bytes[len..]);
    }
    if let Some(v) = parse_sslv2_server_hello(bytes) {
        ctx.facts.detected = true;
        ctx.facts.sslv2_server = Some(v);
        ctx.stop = Some(Stop::Sslv2);
        return None;
    }
    // A server may answer a ClientHello with an alert straight away.
    let answer = ctx.facts.detected && matches!(head, [0x15, 3, 0..=4, ..]);
    if !(looks_like_tls(head, ctx.mid_stream) || answer) {
        ctx.stop = Some(Stop::NotTls);
        return None;
    }
    ctx.facts.detected = true;
    Some(bytes)
}

fn on_event(ctx: &mut Ctx<'_>, e: Event<'_>) {
    let d = ctx.side.index();
    let peer = 1 - d;
    let f = &mut *ctx.facts;
    match e {
        Event::Record {
            content_type, len, ..
        } => record_seen(
            f,
            ctx.log,
            &mut ctx.memo.logs,
            ctx.side,
            ctx.ts,
            content_type,
            len,
        ),
        Event::Handshake { msg_type, body } => {
            f.dirs[d].last_message = msg_type;
            match msg_type {
                hs::CLIENT_HELLO => {
                    match parse_client_hello_memo(body, Some(&mut ctx.memo.fingerprints)) {
                        Ok(ch) => on_client_hello(ctx, ch),
                        Err(_) => f.dirs[d].skipped_messages += 1,
                    }
                }
                hs::SERVER_HELLO => match parse_server_hello(body) {
                    Ok(sh) => {
                        f.detected = true;
                        f.hello_retry |= sh.hello_retry;
                        f.server_hello = Some(sh);
                        f.after_server_hello = f.nlog;
                        if !sh.hello_retry && !is_tls13(sh.version) {
                            stop_log(f, ctx.log, &mut ctx.memo.logs);
                        }
                    }
                    Err(_) => f.dirs[d].skipped_messages += 1,
                },
                hs::CERTIFICATE => {
                    let from_client = f.client == Some(ctx.side);
                    match ctx.memo.certs.get_or(body, parse_certificate) {
                        Ok(CertMessage::Leaf(leaf)) if from_client => {
                            let _ = leaf;
                            f.client_cert = ClientCert::Sent;
                        }
                        Ok(CertMessage::Empty) if from_client => f.client_cert = ClientCert::Empty,
                        Ok(CertMessage::Leaf(leaf)) => {
                            // The last Certificate message counts, as before the store.
                            ctx.memo.leaves.release(ctx.held.cert);
                            ctx.held.cert = ctx.memo.leaves.put(leaf);
                        }
                        Ok(CertMessage::Empty) => f.server_cert_unreadable = true,
                        Err(_) if from_client => f.client_cert = ClientCert::Sent,
                        Err(_) => f.server_cert_unreadable = true,
                    }
                }
                hs::CERTIFICATE_REQUEST => {
                    f.cert_request |= parse_certificate_request(body);
                }
                _ => {}
            }
        }
        Event::HandshakeTooLong { .. } | Event::NoBuffer => {
            f.dirs[d].skipped_messages = f.dirs[d].skipped_messages.saturating_add(1);
        }
        Event::Alert { level, description } => {
            let after_data = f.data_both_ways();
            let answers = f.dirs[peer].last_message;
            push_alert(
                f,
                ctx.alerts,
                &mut ctx.memo.alerts,
                Alert {
                    ts: ctx.ts,
                    side: ctx.side,
                    level,
                    description,
                    encrypted: false,
                    inferred: false,
                    len: 2,
                    after_data,
                    answers,
                },
            );
        }
        Event::EncryptedAlert { len } => {
            let after_data = f.data_both_ways();
            let answers = f.dirs[peer].last_message;
            push_alert(
                f,
                ctx.alerts,
                &mut ctx.memo.alerts,
                Alert {
                    ts: ctx.ts,
                    side: ctx.side,
                    level: 0,
                    description: 0,
                    encrypted: true,
                    inferred: false,
                    len,
                    after_data,
                    answers,
                },
            );
        }
        Event::ChangeCipherSpec => {
            f.dirs[d].ccs.get_or_insert(ctx.ts);
        }
        Event::NotTls => ctx.stop = Some(Stop::NotTls),
    }
}

/// A record header: counters, the last record, the log.
#[inline]
fn record_seen(
    f: &mut TlsCore,
    log: &mut [u32; LOG_CHUNKS],
    logs: &mut LogArena,
    side: Side,
    ts: Timestamp,
    content_type: u8,
    len: u16,
) {
    let dir = &mut f.dirs[side.index()];
    dir.records += 1;
    let rec = LoggedRecord {
        ts,
        side,
        content_type,
        len,
    };
    dir.last_record = Some(rec);
    match content_type {
        content::APPLICATION_DATA => {
            dir.app_records += 1;
            dir.app_bytes += u64::from(len);
            dir.first_app.get_or_insert(ts);
        }
        content::HANDSHAKE if dir.ccs.get().is_some() => {
            dir.encrypted_handshake = dir.encrypted_handshake.saturating_add(1);
        }
        _ => {}
    }
    if f.log13 != Log13::Open {
        return;
    }
    let n = usize::from(f.nlog);
    // Once an entry was not kept, none is: the log stays the first records.
    if n < MAX_LOG && f.log_dropped == 0 && logs.set(log, n, rec) {
        f.nlog += 1;
        // Only a protected record logged can settle the rules (at most
        // [`MAX_LOG`] tries a point), and they need at least two from each end
        // (a flight and what answers it). Trying only at long records (a Finished
        // or more, whatever the cipher) is a choice, not a rule: a try that is
        // skipped only leaves the log kept longer. Most tries fail until the
        // client's data and the server's answer are both there, and a try costs
        // about 900 instructions (the log gathered and read again).
        if content_type == content::APPLICATION_DATA
            && len >= SMALLEST_FINISHED
            && f.dirs[0].app_records >= 2
            && f.dirs[1].app_records >= 2
        {
            settle(f, log, logs);
        }
    } else {
        f.log_dropped += 1;
    }
}

/// The smallest Finished record of any TLS 1.3 cipher suite (TLS_CHACHA20_POLY1305
/// is 45 bytes, [`super::judge::MinSizes`]).
const SMALLEST_FINISHED: u16 = 45;

/// Once the TLS 1.3 rules have decided ([`super::judge::settled`]), gives the log
/// back but for the one record they still need, and keeps no more of it.
#[cold]
fn settle(f: &mut TlsCore, log: &mut [u32; LOG_CHUNKS], logs: &mut LogArena) {
    let (Some(c), Some(sh)) = (f.client, f.server_hello) else {
        return;
    };
    if !f.is_tls13() {
        return;
    }
    let mut all = [LoggedRecord::default(); MAX_LOG];
    let n = usize::from(f.nlog);
    logs.get_into(log, n, &mut all);
    let start = usize::from(f.after_server_hello);
    let early = f.offers_early_data;
    let Some((rule2, cert_asked)) = super::judge::settled(&all[..n], start, c, sh.cipher, early)
    else {
        return;
    };
    logs.give_all(log);
    f.nlog = 0;
    if let Some(r) = rule2 {
        // A chunk was just given back: there is one.
        if logs.set(log, 0, r) {
            f.nlog = 1;
        }
    }
    f.log13 = Log13::Settled { cert_asked };
}

/// Gives the record log back and keeps no more of it: only the TLS 1.3 judgement
/// reads it ([`super::judge`]), and a ServerHello has just chosen an earlier
/// version. The log then counts as incomplete (`log_dropped`), so that should a
/// later plaintext ServerHello choose TLS 1.3 after all (no real stack sends one),
/// the judgement does not apply the rules that need every record.
fn stop_log(f: &mut TlsCore, log: &mut [u32; LOG_CHUNKS], logs: &mut LogArena) {
    logs.give_all(log);
    f.log_dropped = f.log_dropped.saturating_add(u32::from(f.nlog)).max(1);
    f.nlog = 0;
    f.after_server_hello = 0;
}

/// An alert, kept in `arena` (the point's chunk `idx`) if there is room.
fn push_alert(f: &mut TlsCore, idx: &mut u32, arena: &mut AlertArena, a: Alert) {
    let n = usize::from(f.nalerts);
    // As for the log: once one was not kept, none is.
    if n < MAX_ALERTS && f.alerts_dropped == 0 && arena.set(std::slice::from_mut(idx), n, a) {
        f.nalerts += 1;
    } else {
        f.alerts_dropped = f.alerts_dropped.saturating_add(1);
    }
}

fn on_client_hello(ctx: &mut Ctx<'_>, ch: ClientHello) {
    let f = &mut *ctx.facts;
    f.detected = true;
    f.client.get_or_insert(ctx.side);
    f.client_hellos = f.client_hellos.saturating_add(1);
    if ctx.held.hello == NONE {
        ctx.held.random = ch.random;
        ctx.held.hello = ctx.memo.hellos.put(ClientHello {
            random: [0; 32],
            ..ch
        });
        if ctx.held.hello != NONE {
            f.offers_early_data = ch.offers_early_data;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(side: Side, seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            ts: Timestamp(1),
            side,
            seq,
            payload,
            wire_len: payload.len() as u32,
            isn: Some(seq.wrapping_sub(1)),
            acked_unseen: 0,
        }
    }

    /// A worker's pools and stores, as the tests of one point need them.
    struct Rig {
        ooo: BufPool,
        msgs: BufPool,
        memo: Memo,
        streams: StreamPool,
    }

    impl Rig {
        fn new(memo: Memo) -> Rig {
            Rig {
                ooo: BufPool::new(1024, 4),
                msgs: BufPool::new(1024, 4),
                memo,
                streams: StreamPool::new(1024, 1),
            }
        }

        /// `payload` from `side` at `seq`, into point `p`.
        fn feed(&mut self, p: &mut TlsPoint, side: Side, seq: u32, payload: &[u8]) -> FastWindow {
            let (ooo, msgs) = (&mut self.ooo, &mut self.msgs);
            p.on_segment(
                &seg(side, seq, payload),
                ooo,
                msgs,
                &mut self.memo,
                &mut self.streams,
            )
        }

        fn release(&mut self, p: &mut TlsPoint) {
            p.release(
                &mut self.ooo,
                &mut self.msgs,
                &mut self.memo,
                &mut self.streams,
            );
        }
    }

    /// A stream is held in the pool only while partly read; with no place free it
    /// stops (as after a gap), counted, and nothing is lost but its facts.
    #[test]
    fn test_stream_pool_full_stops_stream() {
        let mut r = Rig::new(Memo::default());
        let (mut a, mut b) = (TlsPoint::new(), TlsPoint::new());
        // Three bytes of a record header: undecided, held.
        let head = [0x16, 3, 1];
        r.feed(&mut a, Side::Lo, 100, &head);
        assert_eq!(r.streams.in_use(), 1);
        assert!(a.wants(Side::Lo));
        r.feed(&mut b, Side::Lo, 100, &head);
        assert_eq!(r.streams.exhausted, 1);
        assert!(!b.wants(Side::Lo));
        assert!(b.facts.dirs[0].gap);
        // The rest of the header: nothing partly read (the body is still to
        // come, but none of it gathered): parked again.
        let rest = [0, 2];
        r.feed(&mut a, Side::Lo, 103, &rest);
        assert_eq!(r.streams.in_use(), 0);
        r.release(&mut a);
        r.release(&mut b);
        assert_eq!(r.streams.in_use(), 0);
        assert!(!a.facts.dirs[0].gap);
    }

    /// The log takes chunks as it grows, gives them back, and with none free keeps
    /// the records it has (the rest counted as dropped, as when it is full).
    #[test]
    fn test_log_chunks_taken_and_bounded() {
        let mut r = Rig::new(Memo {
            logs: LogArena::new(1),
            ..Memo::default()
        });
        let mut a = TlsPoint::new();
        // Ten empty handshake records.
        let bytes: Vec<u8> = (0..10).flat_map(|_| [0x16, 3, 3, 0, 0]).collect();
        r.feed(&mut a, Side::Lo, 100, &bytes);
        assert_eq!(r.memo.logs.in_use(), 1);
        let f = a.facts(&r.memo);
        assert_eq!((f.nlog, f.log_dropped), (8, 2));
        assert!(f.log().iter().all(|r| r.content_type == content::HANDSHAKE));
        assert_eq!(f.dirs[0].records, 10);
        // An alert takes the point's alert chunk.
        assert_eq!(r.memo.alerts.in_use(), 0);
        let alert = [0x15, 3, 3, 0, 2, 2, 40];
        r.feed(&mut a, Side::Lo, 150, &alert);
        assert_eq!(r.memo.alerts.in_use(), 1);
        let f = a.facts(&r.memo);
        assert_eq!(f.alerts().len(), 1);
        assert_eq!((f.alerts()[0].level, f.alerts()[0].description), (2, 40));
        r.release(&mut a);
        assert_eq!(r.memo.logs.in_use() + r.memo.alerts.in_use(), 0);
    }

    /// A ServerHello record (handshake header included) choosing `version`, with
    /// the supported_versions extension when it is TLS 1.3.
    fn server_hello_record(version: u16) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(0); // session id
        body.extend([0x13, 0x01, 0]); // cipher, compression
        let exts: &[u8] = if version == 0x0304 {
            &[0, 43, 0, 2, 3, 4]
        } else {
            &[]
        };
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut msg = vec![hs::SERVER_HELLO, 0, 0, body.len() as u8];
        msg.extend(body);
        let mut rec = vec![0x16, 3, 3, 0, msg.len() as u8];
        rec.extend(msg);
        rec
    }

    /// Only the TLS 1.3 judgement reads the record log: a ServerHello choosing an
    /// earlier version gives the log back and stops it. A later ServerHello for
    /// TLS 1.3 (no real stack sends one) finds it incomplete, not wrong.
    #[test]
    fn test_log_stops_before_tls13_only() {
        let mut r = Rig::new(Memo::default());
        for (version, kept) in [(0x0303, false), (0x0304, true)] {
            let mut a = TlsPoint::new();
            let mut bytes = server_hello_record(version);
            bytes.extend([0x17, 3, 3, 0, 1, 0]);
            r.feed(&mut a, Side::Hi, 100, &bytes);
            let f = a.facts(&r.memo);
            assert_eq!(f.dirs[1].records, 2);
            assert_eq!(f.is_tls13(), kept);
            assert_eq!(r.memo.logs.in_use(), usize::from(kept), "{version:#x}");
            assert_eq!(
                (f.nlog, f.log_dropped > 0),
                if kept { (2, false) } else { (0, true) }
            );
            if !kept {
                // A second ServerHello, for TLS 1.3: the log stays stopped.
                let again = server_hello_record(0x0304);
                r.feed(&mut a, Side::Hi, 100 + bytes.len() as u32, &again);
                let f = a.facts(&r.memo);
                assert!(f.is_tls13());
                assert_eq!((f.nlog, f.log_dropped), (0, 3), "every record counted");
                assert_eq!(r.memo.logs.in_use(), 0);
            }
            r.release(&mut a);
            assert_eq!(r.memo.logs.in_use(), 0);
        }
    }

    /// A TLS 1.3 point whose rules have decided gives its log back and logs no
    /// more; its counters go on.
    #[test]
    fn test_log_given_back_once_tls13_rules_settle() {
        let mut logs = LogArena::default();
        let mut log = [NONE; LOG_CHUNKS];
        let mut f = TlsCore {
            client: Some(Side::Lo),
            server_hello: Some(ServerHello {
                version: 0x0304,
                cipher: 0x1301,
                ..ServerHello::default()
            }),
            ..TlsCore::default()
        };
        let (c, s, app) = (Side::Lo, Side::Hi, content::APPLICATION_DATA);
        let flights = [
            (c, content::HANDSHAKE, 512),
            (s, content::HANDSHAKE, 90),
            (s, app, 2000),
            (s, app, 300),
            (c, app, 53),
            (s, app, 4000),
        ];
        for (i, &(side, ct, len)) in flights.iter().enumerate() {
            record_seen(
                &mut f,
                &mut log,
                &mut logs,
                side,
                Timestamp(i as u64),
                ct,
                len,
            );
        }
        assert_eq!(f.log13, Log13::Open, "the client has sent no data yet");
        assert_eq!((f.nlog, logs.in_use()), (6, 1));
        record_seen(&mut f, &mut log, &mut logs, c, Timestamp(9), app, 600);
        assert_eq!(f.log13, Log13::Settled { cert_asked: false });
        assert_eq!((f.nlog, logs.in_use()), (0, 0), "no rule 2 record to keep");
        record_seen(&mut f, &mut log, &mut logs, s, Timestamp(10), app, 4000);
        assert_eq!((f.nlog, logs.in_use(), f.log_dropped), (0, 0, 0));
        assert_eq!((f.dirs[0].records, f.dirs[1].records), (3, 5));
    }

    /// Between whole records nothing is held: the stream stays parked.
    #[test]
    fn test_whole_records_stay_parked() {
        let mut r = Rig::new(Memo::default());
        let mut a = TlsPoint::new();
        // An empty handshake record, then an application_data record cut in two.
        let bytes = [0x16, 3, 3, 0, 0, 0x17, 3, 3, 0, 4, 1, 2];
        let w = r.feed(&mut a, Side::Lo, 100, &bytes);
        assert_eq!(r.streams.in_use(), 0);
        assert_eq!(
            (w.next, w.end),
            (112, 114),
            "two bytes of the record to come"
        );
        // The fast path passed nothing; the next segment ends the record and
        // starts another.
        let next = [1, 2, 0x17, 3, 3, 0, 9, 0];
        let w = a.fast_header(
            Side::Lo,
            Timestamp(2),
            112,
            &next,
            2,
            &mut r.streams,
            &mut r.memo.logs,
        );
        assert_eq!(
            w,
            Some(FastWindow {
                next: 120,
                end: 128
            })
        );
        assert_eq!(a.facts.dirs[0].app_records, 2);
        assert_eq!(r.streams.in_use(), 0);
    }
}
