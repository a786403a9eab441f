//! The TLS record layer of one direction (RFC 8446 section 5, RFC 5246 section 6.2):
//! bytes in stream order in, [`Event`]s out.
//!
//! It frames records (a header may be split across chunks), reassembles handshake
//! messages across records and chunks up to a bound (longer ones are counted and
//! skipped, never buffered), reads plaintext alerts, and reports every record's
//! header, so that encrypted records (TLS 1.3 alerts hidden in application data,
//! TLS 1.2 alerts after ChangeCipherSpec) can be judged by their length. Once told
//! that a direction is encrypted ([`RecordReader::set_encrypted`]), it reads record
//! headers only. Content that is not TLS stops it at once ([`Event::NotTls`]).
//!
//! Handshake messages that arrive whole are read in place; split ones borrow a
//! buffer from a [`BufSource`] until they are complete.
//!
//! Guarantees: never panics on any input, memory bounded by the message bound given
//! at creation, and the events do not depend on how the stream was cut into chunks
//! (a property test checks this).

use super::pool::{BufSource, Unpooled};

/// Record content types (RFC 8446 section 5.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    pub const HEARTBEAT: u8 = 24;
}

/// Largest record body RFC 8446 allows (2^14 + 256 for ciphertext), with slack for
/// TLS 1.2 ciphertext expansion (2^14 + 2048, RFC 5246 6.2.3).
pub const MAX_RECORD_BODY: u16 = 16_384 + 2_048;

/// What the record layer shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A record header: every record, in order.
    Record {
        content_type: u8,
        version: u16,
        len: u16,
    },
    /// A complete plaintext handshake message (type and body, without its 4-byte
    /// header), reassembled across records and chunks.
    Handshake { msg_type: u8, body: &'a [u8] },
    /// A handshake message longer than the bound: counted, skipped, not buffered.
    HandshakeTooLong { msg_type: u8, len: u32 },
    /// A plaintext alert (level 1 warning, 2 fatal; description per RFC 8446 6).
    Alert { level: u8, description: u8 },
    /// An alert record whose body is encrypted (after ChangeCipherSpec or in TLS
    /// 1.3): only its length is known.
    EncryptedAlert { len: u16 },
    /// A ChangeCipherSpec record.
    ChangeCipherSpec,
    /// The bytes are not TLS (or the stream lost sync): nothing more is read.
    NotTls,
    /// A handshake message split across chunks found no free buffer: the rest of
    /// this direction's handshake is not read (record headers still are).
    NoBuffer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a record header (5 bytes, possibly across chunks).
    Header,
    /// Inside a record body: `left` bytes of it remain.
    Body { content_type: u8, left: u16 },
    /// Not TLS, or out of sync: ignore everything.
    Stopped,
}

/// Follows the record layer of one direction.
#[derive(Debug)]
pub struct RecordReader {
    state: State,
    hdr: [u8; 5],
    hdr_len: u8,
    /// Alert body bytes (2) collected across chunks.
    alert: [u8; 2],
    alert_len: u8,
    /// The handshake message being reassembled: header first, then the body.
    msg: Vec<u8>,
    /// Bytes of an over-long handshake message still to skip.
    msg_skip: u32,
    max_message: usize,
    encrypted: bool,
    /// Length of the record being read.
    record_len: u16,
    /// The first bytes of a handshake record after ChangeCipherSpec.
    peek: [u8; 4],
    peek_len: u8,
}

impl RecordReader {
    /// A reader that reassembles handshake messages of at most `max_message` bytes.
    pub fn new(max_message: usize) -> RecordReader {
        RecordReader {
            state: State::Header,
            hdr: [0; 5],
            hdr_len: 0,
            alert: [0; 2],
            alert_len: 0,
            msg: Vec::new(),
            msg_skip: 0,
            max_message,
            encrypted: false,
            record_len: 0,
            peek: [0; 4],
            peek_len: 0,
        }
    }

    /// From now on this direction's handshake and alert bodies are encrypted (TLS 1.3
    /// after ServerHello, TLS 1.2 after ChangeCipherSpec, which the reader notices
    /// itself): only record headers are read.
    pub fn set_encrypted(&mut self) {
        self.encrypted = true;
        self.msg.clear();
        self.msg_skip = 0;
    }

    /// Bytes of the current record that can be passed over unread: the rest of an
    /// application_data record, or of any record but an alert once encrypted. The
    /// caller may then account for them with [`RecordReader::consume`] instead of
    /// feeding them (the fast path after the handshake).
    #[inline]
    pub fn skippable(&self) -> u16 {
        self.framing().skippable()
    }

    /// Passes over `n` bytes, at most [`RecordReader::skippable`] of them.
    pub fn consume(&mut self, n: u16) {
        let mut f = self.framing();
        let ccs_over = f.consume(n);
        self.state = f.state;
        if ccs_over {
            self.set_encrypted();
        }
    }

    /// The fast path's header read ([`super::observe::TlsPoint::fast_header`]): the
    /// current record ends after `passed` more bytes, which go by unread, and the
    /// next one is an application_data record of `len` bytes whose header the caller
    /// read itself, `left` of its bytes still to come (`left > 0`). Returns false,
    /// with nothing changed, unless the rest of the current record is exactly
    /// `passed` bytes that may be passed over (and not a ChangeCipherSpec, whose end
    /// [`RecordReader::consume`] must see).
    #[inline]
    pub fn skip_into_app_record(&mut self, passed: usize, len: u16, left: u16) -> bool {
        let mut f = self.framing();
        if !f.skip_into_app_record(passed, len, left) {
            return false;
        }
        (self.state, self.record_len) = (f.state, f.record_len);
        self.alert_len = 0;
        self.peek_len = 0;
        true
    }

    /// The reader's framing state, whether or not it is [`RecordReader::park`]able.
    #[inline]
    fn framing(&self) -> Framing {
        Framing {
            state: self.state,
            record_len: self.record_len,
            encrypted: self.encrypted,
        }
    }

    /// The whole state of the reader in 8 bytes, if nothing is partly read: no
    /// header, alert or peek bytes gathered, no handshake message assembled or
    /// skipped, no buffer held. `None` otherwise. [`RecordReader::unpark`] gives the
    /// same reader back: the events that follow do not depend on the round trip.
    pub fn park(&self) -> Option<Framing> {
        let partial_alert = matches!(
            self.state,
            State::Body {
                content_type: content::ALERT,
                ..
            }
        ) && self.alert_len > 0;
        let quiet = self.hdr_len == 0
            && self.peek_len == 0
            && self.msg_skip == 0
            && self.msg.capacity() == 0
            && !partial_alert;
        quiet.then(|| self.framing())
    }

    /// The reader that [`RecordReader::park`] gave `f` of. The bytes it did not keep
    /// are read only after the next record header, which sets them again.
    pub fn unpark(f: Framing, max_message: usize) -> RecordReader {
        RecordReader {
            state: f.state,
            record_len: f.record_len,
            encrypted: f.encrypted,
            ..RecordReader::new(max_message)
        }
    }

    /// The longest handshake message it reassembles.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether the reader has stopped (not TLS, or lost sync).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Reads the next bytes of the stream; `on` receives the events in order.
    /// Buffers for split handshake messages are allocated as needed.
    pub fn feed(&mut self, data: &[u8], on: &mut impl FnMut(Event<'_>)) {
        self.feed_from(data, &mut Unpooled(self.max_message), on);
    }

    /// Like [`RecordReader::feed`], with buffers from `pool`: a message that lies
    /// whole in `data` is read in place; one split across chunks or records holds a
    /// buffer until it is complete. With no buffer free, the message is skipped and
    /// reported as [`Event::NoBuffer`].
    pub fn feed_from(
        &mut self,
        mut data: &[u8],
        pool: &mut impl BufSource,
        on: &mut impl FnMut(Event<'_>),
    ) {
        while !data.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Header => {
                    let take = (5 - usize::from(self.hdr_len)).min(data.len());
                    self.hdr[usize::from(self.hdr_len)..usize::from(self.hdr_len) + take]
                        .copy_from_slice(&data[..take]);
                    self.hdr_len += take as u8;
                    data = &data[take..];
                    if self.hdr_len < 5 {
                        return;
                    }
                    self.hdr_len = 0;
                    let [content_type, major, minor, l0, l1] = self.hdr;
                    let len = u16::from_be_bytes([l0, l1]);
                    let plausible = (content::CHANGE_CIPHER_SPEC..=content::HEARTBEAT)
                        .contains(&content_type)
                        && major == 3
                        && minor <= 4
                        && len <= MAX_RECORD_BODY;
                    if !plausible {
                        self.state = State::Stopped;
                        on(Event::NotTls);
                        return;
                    }
                    on(Event::Record {
                        content_type,
                        version: u16::from_be_bytes([major, minor]),
                        len,
                    });
                    if content_type == content::CHANGE_CIPHER_SPEC {
                        on(Event::ChangeCipherSpec);
                    }
                    // A plaintext alert is 2 bytes; an encrypted one is longer (MAC or
                    // tag), before or after ChangeCipherSpec.
                    if content_type == content::ALERT && len != 2 {
                        on(Event::EncryptedAlert { len });
                    }
                    self.alert_len = 0;
                    self.peek_len = 0;
                    self.record_len = len;
                    self.state = if len == 0 {
                        State::Header
                    } else {
                        State::Body {
                            content_type,
                            left: len,
                        }
                    };
                }
                State::Body { content_type, left } => {
                    let take = usize::from(left).min(data.len());
                    let (body, rest) = data.split_at(take);
                    data = rest;
                    match content_type {
                        content::HANDSHAKE if !self.encrypted => {
                            self.handshake_bytes(body, pool, on)
                        }
                        content::HANDSHAKE if left == self.record_len || self.peek_len > 0 => {
                            // TLS 1.3 sends a ChangeCipherSpec for middleboxes' sake
                            // and keeps its hellos in plaintext after it (the second
                            // ClientHello and the ServerHello after a
                            // HelloRetryRequest, RFC 8446 D.4): look at the first 4
                            // bytes of every handshake record after it, gathered
                            // across chunks if need be.
                            let have = usize::from(self.peek_len);
                            let took = (4 - have).min(body.len());
                            self.peek[have..have + took].copy_from_slice(&body[..took]);
                            self.peek_len += took as u8;
                            if self.peek_len == 4 {
                                self.peek_len = 0;
                                if plaintext_hello(&self.peek, self.record_len) {
                                    self.encrypted = false;
                                    let peek = self.peek;
                                    self.handshake_bytes(&peek, pool, on);
                                    self.handshake_bytes(&body[took..], pool, on);
                                }
                            }
                        }
                        content::ALERT if self.record_len == 2 => {
                            for &b in body {
                                if usize::from(self.alert_len) < 2 {
                                    self.alert[usize::from(self.alert_len)] = b;
                                }
                                self.alert_len = self.alert_len.saturating_add(1);
                            }
                            if self.alert_len == 2 && take == usize::from(left) {
                                on(Event::Alert {
                                    level: self.alert[0],
                                    description: self.alert[1],
                                });
                            }
                        }
                        _ => {}
                    }
                    let left = left - take as u16;
                    if left == 0 {
                        if content_type == content::CHANGE_CIPHER_SPEC {
                            // Everything this direction sends next is encrypted.
                            self.set_encrypted();
                        }
                        self.state = State::Header;
                    } else {
                        self.state = State::Body { content_type, left };
                    }
                }
            }
        }
    }

    /// Handshake record bytes: messages are type (1), length (3), body; they may span
    /// records (RFC 8446 5.1), so the reassembly state lives across records.
    fn handshake_bytes(
        &mut self,
        mut data: &[u8],
        pool: &mut impl BufSource,
        on: &mut impl FnMut(Event<'_>),
    ) {
        let max = self.max_message.min(pool.capacity());
        while !data.is_empty() {
            if self.msg_skip > 0 {
                let take = (self.msg_skip as usize).min(data.len());
                self.msg_skip -= take as u32;
                data = &data[take..];
                continue;
            }
            if self.msg.is_empty() && data.len() >= 4 {
                // A message starting here: read it in place if it is all here.
                let len = u32::from_be_bytes([0, data[1], data[2], data[3]]);
                if len as usize > max {
                    on(Event::HandshakeTooLong {
                        msg_type: data[0],
                        len,
                    });
                    self.msg_skip = len;
                    data = &data[4..];
                    continue;
                }
                if let Some(body) = data.get(4..4 + len as usize) {
                    on(Event::Handshake {
                        msg_type: data[0],
                        body,
                    });
                    data = &data[4 + len as usize..];
                    continue;
                }
            }
            if self.msg.capacity() == 0 {
                match pool.take() {
                    Some(buf) => self.msg = buf,
                    None => {
                        // The framing of this direction's handshake is lost:
                        // follow record headers only from here.
                        on(Event::NoBuffer);
                        self.encrypted = true;
                        return;
                    }
                }
            }
            if self.msg.len() < 4 {
                let take = (4 - self.msg.len()).min(data.len());
                self.msg.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.msg.len() < 4 {
                    return;
                }
                let len = u32::from_be_bytes([0, self.msg[1], self.msg[2], self.msg[3]]);
                if len as usize > max {
                    on(Event::HandshakeTooLong {
                        msg_type: self.msg[0],
                        len,
                    });
                    self.msg_skip = len;
                    self.release(pool);
                    continue;
                }
            }
            let want = u32::from_be_bytes([0, self.msg[1], self.msg[2], self.msg[3]]) as usize + 4;
            let take = (want - self.msg.len()).min(data.len());
            self.msg.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.msg.len() == want {
                on(Event::Handshake {
                    msg_type: self.msg[0],
                    body: &self.msg[4..],
                });
                self.release(pool);
            }
        }
    }

    /// Gives the message buffer back to the pool.
    fn release(&mut self, pool: &mut impl BufSource) {
        let buf = std::mem::take(&mut self.msg);
        pool.give(buf);
    }

    /// Gives back any buffer held (the session ends, or stops being followed).
    pub fn release_buffer(&mut self, pool: &mut impl BufSource) {
        self.release(pool);
        self.msg_skip = 0;
    }
}

/// A [`RecordReader`] with nothing partly read ([`RecordReader::park`]): where the
/// record layer stands, enough to follow record boundaries on the fast path without
/// the reader (the bytes of a session that is past its handshake).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    state: State,
    record_len: u16,
    encrypted: bool,
}

impl Default for Framing {
    fn default() -> Self {
        RecordReader::new(0).framing()
    }
}

impl Framing {
    /// See [`RecordReader::skippable`].
    #[inline]
    pub fn skippable(&self) -> u16 {
        match self.state {
            State::Body { content_type, left }
                if content_type == content::APPLICATION_DATA
                    || (self.encrypted && content_type != content::ALERT) =>
            {
                left
            }
            _ => 0,
        }
    }

    /// See [`RecordReader::consume`]. Returns whether a ChangeCipherSpec record
    /// ended (the direction is encrypted from here: already set in `self`).
    #[inline]
    pub fn consume(&mut self, n: u16) -> bool {
        let State::Body { content_type, left } = self.state else {
            return false;
        };
        let left = left.saturating_sub(n);
        if left > 0 {
            self.state = State::Body { content_type, left };
            return false;
        }
        self.state = State::Header;
        let ccs = content_type == content::CHANGE_CIPHER_SPEC;
        if ccs {
            self.encrypted = true;
        }
        ccs
    }

    /// See [`RecordReader::skip_into_app_record`].
    #[inline]
    pub fn skip_into_app_record(&mut self, passed: usize, len: u16, left: u16) -> bool {
        match self.state {
            State::Body { content_type, .. }
                if content_type != content::CHANGE_CIPHER_SPEC
                    && usize::from(self.skippable()) == passed
                    && left > 0 =>
            {
                self.record_len = len;
                self.state = State::Body {
                    content_type: content::APPLICATION_DATA,
                    left,
                };
                true
            }
            _ => false,
        }
    }
}

const _: () = assert!(std::mem::size_of::<Framing>() == 8);

/// The start of a record body after ChangeCipherSpec is a plaintext ClientHello or
/// ServerHello that fits the record (an encrypted Finished gives this with a
/// probability of about 10^-5).
fn plaintext_hello(body: &[u8], record_len: u16) -> bool {
    match body {
        [1 | 2, a, b, c, ..] => {
            let len = u32::from_be_bytes([0, *a, *b, *c]);
            len >= 38 && len + 4 <= u32::from(record_len)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects events as owned values, for comparison.
    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Owned {
        Record(u8, u16, u16),
        Handshake(u8, Vec<u8>),
        TooLong(u8, u32),
        Alert(u8, u8),
        EncryptedAlert(u16),
        Ccs,
        NotTls,
        NoBuffer,
    }

    fn run(chunks: &[&[u8]], max: usize) -> Vec<Owned> {
        run_with(chunks, max, false)
    }

    /// Like [`run`], parking the reader between chunks whenever it can be parked.
    fn run_with(chunks: &[&[u8]], max: usize, park: bool) -> Vec<Owned> {
        let mut r = RecordReader::new(max);
        let mut out = Vec::new();
        for c in chunks {
            if let Some(f) = r.park().filter(|_| park) {
                r = RecordReader::unpark(f, max);
            }
            r.feed(c, &mut |e| {
                out.push(match e {
                    Event::Record {
                        content_type,
                        version,
                        len,
                    } => Owned::Record(content_type, version, len),
                    Event::Handshake { msg_type, body } => {
                        Owned::Handshake(msg_type, body.to_vec())
                    }
                    Event::HandshakeTooLong { msg_type, len } => Owned::TooLong(msg_type, len),
                    Event::Alert { level, description } => Owned::Alert(level, description),
                    Event::EncryptedAlert { len } => Owned::EncryptedAlert(len),
                    Event::ChangeCipherSpec => Owned::Ccs,
                    Event::NotTls => Owned::NotTls,
                    Event::NoBuffer => Owned::NoBuffer,
                })
            });
        }
        out
    }

    fn record(ct: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ct, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn message(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    /// A server flight: ServerHello and Certificate in one record, the Certificate
    /// spilling into a second record; a fatal alert from the peer direction is not
    /// here. Then ChangeCipherSpec, an encrypted Finished and an encrypted alert.
    fn server_flight() -> Vec<u8> {
        let sh = message(2, &[0x03, 0x03, 7, 7, 7]);
        let cert = message(11, &[0xaa; 300]);
        let mut hs = sh.clone();
        hs.extend_from_slice(&cert);
        let (a, b) = hs.split_at(200);
        let mut s = record(22, a);
        s.extend(record(22, b));
        s.extend(record(20, &[1]));
        s.extend(record(22, &[0x55; 40]));
        s.extend(record(21, &[0x66; 26]));
        s
    }

    #[test]
    fn test_record_handshake_across_records() {
        let ev = run(&[&server_flight()], 1024);
        assert_eq!(ev[0], Owned::Record(22, 0x0303, 200));
        assert_eq!(ev[1], Owned::Handshake(2, vec![0x03, 0x03, 7, 7, 7]));
        assert_eq!(ev[2], Owned::Record(22, 0x0303, 113));
        assert_eq!(ev[3], Owned::Handshake(11, vec![0xaa; 300]));
        assert_eq!(ev[4], Owned::Record(20, 0x0303, 1));
        assert_eq!(ev[5], Owned::Ccs);
        assert_eq!(
            ev[6],
            Owned::Record(22, 0x0303, 40),
            "encrypted Finished: header only"
        );
        assert_eq!(ev[7], Owned::Record(21, 0x0303, 26));
        assert_eq!(ev[8], Owned::EncryptedAlert(26));
        assert_eq!(ev.len(), 9);
    }

    #[test]
    fn test_record_plaintext_alert_split_across_chunks() {
        let a = record(21, &[2, 42]);
        let ev = run(&[&a[..3], &a[3..6], &a[6..]], 1024);
        assert_eq!(ev, vec![Owned::Record(21, 0x0303, 2), Owned::Alert(2, 42)]);
    }

    #[test]
    fn test_record_handshake_too_long_is_skipped() {
        let mut s = record(22, &message(11, &[0; 500]));
        s.extend(record(22, &message(14, &[])));
        let ev = run(&[&s], 100);
        assert!(ev.contains(&Owned::TooLong(11, 500)));
        assert!(
            ev.contains(&Owned::Handshake(14, vec![])),
            "the next message is read"
        );
    }

    #[test]
    fn test_record_not_tls_stops() {
        let ev = run(
            &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &record(21, &[2, 40])],
            1024,
        );
        assert_eq!(ev, vec![Owned::NotTls]);
        let ev = run(&[&[22, 3, 3, 0xff, 0xff]], 1024);
        assert_eq!(ev, vec![Owned::NotTls], "a length no record can have");
    }

    #[test]
    fn test_record_set_encrypted_reads_headers_only() {
        let mut r = RecordReader::new(64);
        let mut n = 0;
        r.set_encrypted();
        let mut s = record(22, &message(8, &[1, 2, 3]));
        s.extend(record(21, &[0x11; 19]));
        r.feed(&s, &mut |e| {
            n += 1;
            assert!(
                matches!(e, Event::Record { .. } | Event::EncryptedAlert { len: 19 }),
                "{e:?}"
            );
        });
        assert_eq!(n, 3);
    }

    proptest::proptest! {
        /// Cutting the stream into any chunks gives the same events.
        #[test]
        fn prop_any_segmentation_same_events(cuts in proptest::collection::vec(0usize..800, 0..12)) {
            let mut stream = record(22, &message(1, &[0x42; 150]));
            stream.extend(record(21, &[1, 0]));
            stream.extend(server_flight());
            let whole = run(&[&stream], 1024);
            let mut cuts = cuts;
            cuts.push(0);
            cuts.push(stream.len());
            cuts.sort();
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &stream[w[0].min(stream.len())..w[1].min(stream.len())]).collect();
            proptest::prop_assert_eq!(run(&chunks, 1024), whole.clone());
            // Parked between chunks (the fast path's state only): the same events.
            proptest::prop_assert_eq!(run_with(&chunks, 1024, true), whole);
        }

        /// Any bytes: never a panic, and at most one NotTls.
        #[test]
        fn prop_garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let ev = run(&[&data], 64);
            proptest::prop_assert!(ev.iter().filter(|e| **e == Owned::NotTls).count() <= 1);
        }
    }
}
