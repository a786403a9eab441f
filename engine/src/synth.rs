//! Synthetic traffic: a seeded generator of realistic TCP sessions written as a pcap
//! file (Ethernet, nanosecond, little-endian), for the replay benchmark and for tests.
//!
//! Every frame is Ethernet II / IPv4 (IHL 5, DF, an IP ID that increments per sender
//! and connection as Linux does, TTL 64 from clients and 55 to 59, fixed per server,
//! from the "remote" servers) / TCP with correct IPv4
//! and TCP checksums, Linux-like options (MSS, SACK permitted, timestamps, window scale
//! on SYN and SYN-ACK; timestamps on every other segment except the RST that rejects a
//! SYN). Clients live in 198.18.0.0/16 with ephemeral ports 32768-60999, servers in
//! 198.19.0.0/16 on ports 443 (85 %), 80 (10 %) and 8443 (5 %). Sessions on 443 and
//! 8443 carry TLS, 70 % of them TLS 1.3 (a full ClientHello with SNI, a ServerHello and
//! ChangeCipherSpec, then application_data records of consistent lengths, the client's
//! Finished a 53-byte record) and 30 % TLS 1.2 (a ClientHello without the 1.3
//! extensions; ServerHello for TLS_RSA_WITH_AES_128_GCM_SHA256; a Certificate message
//! with a real chain, an RSA-2048 leaf for `*.example.test` and its CA, made once by
//! `synth/make-certs.sh` and embedded; ServerHelloDone; the client's 262-byte
//! ClientKeyExchange, ChangeCipherSpec and 40-byte encrypted Finished; the server's
//! ChangeCipherSpec and Finished; then application_data records). Sessions on port 80
//! carry HTTP/1.1 text and bodies. Encrypted bytes and bodies are pseudo-random.
//!
//! A session is a handshake, request/response exchanges (requests 100-700 bytes,
//! responses from 200 bytes to 80 KB in full-size segments, the client ACKing every
//! second segment), then a clean close (FIN both ways and a last ACK, from either
//! side) or, for [`SynthConfig::failure_share`] of the sessions, split evenly among the
//! patterns that fit (four for HTTP, seven for TLS): a reset by the client after some
//! data, a reset by the server in answer to a request, a SYN rejected by RST/ACK, a SYN
//! left unanswered (retransmitted 1 s and 3 s later); and for TLS a client fatal alert
//! after the server's certificate (TLS 1.2: plaintext unknown_ca or bad_certificate;
//! TLS 1.3: ChangeCipherSpec and a 19-byte encrypted record where the Finished was due)
//! then the client's FIN (60 %) or RST, a server handshake_failure alert answering the
//! ClientHello then the server's FIN, or a ClientHello ACKed and never answered until
//! the client leaves 2 to 20 s later by FIN (60 %) or RST. tapwatch judges these
//! `client_rejected_certificate`, `handshake_parameter_mismatch` and `no_server_hello`.
//! [`SynthConfig::concurrent`] sessions are open at any time: each slot emits its
//! session's next packet from a time-ordered schedule and starts a new session within
//! a millisecond of the previous one's end, so timestamps never decrease in the file.
//! The tap sits near the clients: a server answers after the session's RTT (100 to
//! 950 us), a client reacts within tens of microseconds, thinks 1 ms to 10 s
//! (log-uniform-ish) between requests; servers take 20 us to 200 ms per response. With
//! the defaults a session averages about 38 packets and the capture runs at about
//! 500 000 packets (3 Gbit/s) per second of capture time.
//!
//! Two capture points ([`write_two_point`], `tapwatch synth --two-point`): the same
//! sessions as seen on both sides of a transparent TLS-inspecting middlebox, one file
//! per side. Each session is run twice in lockstep, one copy per leg, from the same
//! random stream (so with the same steps and times); the copies differ in the bytes
//! they write (the middlebox's ClientHello outside, its ServerHello and re-signed
//! certificate inside), TTLs and MACs, and where the middlebox acts instead of
//! passing a message on: it resets both legs when a pinning client rejects its
//! certificate, resets the client when the server wants the client certificate it
//! does not have, and drops a ClientHello whose SNI it blocks. See
//! [`write_two_point`] and [`TwoPointSummary`].
//!
//! Determinism: the output is a pure function of the [`SynthConfig`]; the same
//! configuration gives the same bytes on every run and platform (integer and exact
//! floating-point arithmetic only, no libm, no clock, no hash-map iteration order).
//! Session `n` depends only on the seed and `n`. A client 4-tuple is not reused before
//! 1.8 billion sessions.
//!
//! The generator never allocates per packet: one frame buffer, one table of sessions,
//! one schedule, all sized at the start.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};

use crate::capture::write::PcapWriter;
use crate::time::Timestamp;

/// What to generate. The output depends on nothing else.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub seed: u64,
    /// Total packets to write: exactly this many. Sessions still open when the count is
    /// reached are simply cut (they show up as incomplete or timed out).
    pub packets: u64,
    /// Target number of concurrently open sessions (0 is taken as 1).
    pub concurrent: u32,
    /// Capture start time, ns since epoch. The first session starts within 200 ms.
    pub start_ns: u64,
    /// Share (0.0..=1.0) of sessions that end in a failure pattern instead of a clean
    /// close, split evenly among the patterns that fit the session (four TCP ones, three
    /// more for TLS; above 1 counts as 1, below 0 or NaN as 0).
    pub failure_share: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            packets: 1_000_000,
            concurrent: 10_000,
            // 2026-01-01T00:00:00Z.
            start_ns: 1_767_225_600_000_000_000,
            failure_share: 0.1,
        }
    }
}

/// What was written.
///
/// `bytes` counts frame bytes (what a decoder sees), not pcap record headers.
/// `sessions` counts sessions started (their first SYN written); the outcome counts
/// count sessions whose last packet was written, so `sessions` minus their sum is the
/// number of sessions cut by the end of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub packets: u64,
    pub bytes: u64,
    pub sessions: u64,
    /// Sessions started on 443/8443 by TLS version (the rest are HTTP on 80).
    pub tls13: u64,
    pub tls12: u64,
    /// FIN both ways and the last ACK.
    pub clean: u64,
    /// The client sent RST/ACK after some data.
    pub reset_by_client: u64,
    /// The server answered a request with RST/ACK.
    pub reset_by_server: u64,
    /// The SYN was answered by RST/ACK.
    pub rejected: u64,
    /// The SYN and its two retransmissions were never answered.
    pub no_response: u64,
    /// TLS: the client sent a fatal alert after the server's certificate, then FIN or
    /// RST.
    pub cert_rejected: u64,
    /// TLS: the server answered the ClientHello with handshake_failure and a FIN.
    pub handshake_failure: u64,
    /// TLS: the ClientHello was ACKed, never answered; the client left (FIN or RST).
    pub no_server_hello: u64,
    /// TLS handshake messages and plaintext alert records written whole (what a
    /// dissector should find): ClientHello, ServerHello, Certificate (TLS 1.2), and
    /// alerts in the clear (TLS 1.2 client alerts, server handshake_failure; a TLS 1.3
    /// client's alert is encrypted and not counted).
    pub client_hellos: u64,
    pub server_hellos: u64,
    pub certificates: u64,
    pub plaintext_alerts: u64,
    /// TLS 1.2 Certificate messages from the client: with two points, the
    /// middlebox's empty one outside, to a server that asked for one (0 in one file).
    pub client_certificates: u64,
}

/// Writes `cfg.packets` packets of synthetic traffic to `out` as a pcap file and says
/// what it wrote. `out` is wrapped in a 1 MiB `BufWriter` and flushed at the end.
pub fn write_pcap<W: Write>(cfg: &SynthConfig, out: W) -> io::Result<SynthSummary> {
    let mut w = PcapWriter::new(BufWriter::with_capacity(1 << 20, out), 1)?;
    let mut summary = SynthSummary::default();
    if cfg.packets > 0 {
        let mut generator = Generator::new(cfg);
        while summary.packets < cfg.packets {
            let (ts, len) = generator.next_packet(&mut summary);
            w.write_frame(Timestamp(ts), &generator.frame[..len], len as u32)?;
            summary.packets += 1;
            summary.bytes += len as u64;
        }
    }
    w.into_inner().flush()?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------
// Randomness

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, passes BigCrush; also used to
/// derive independent seeds.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below 2^-32 for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p` (exact dyadic arithmetic, no libm).
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed for stream `stream`, item `n` of the generator seeded with `seed`.
fn derive(seed: u64, stream: u64, n: u64) -> u64 {
    mix64(mix64(seed ^ stream.wrapping_mul(0xd6e8_feb8_6659_fd93)).wrapping_add(n))
}

const STREAM_NOISE: u64 = 1;
const STREAM_SESSION: u64 = 2;
const STREAM_SLOT: u64 = 3;
const STREAM_TUPLE: u64 = 4;

// ---------------------------------------------------------------------------------
// Constants of the model

const NS_US: u64 = 1_000;
const NS_MS: u64 = 1_000_000;
const NS_S: u64 = 1_000_000_000;

/// Ethernet 14 + IPv4 20.
const L3_END: usize = 34;
/// MSS 1460 minus the 12 bytes of the timestamps option.
const SEG_PAYLOAD: usize = 1448;
const MAX_FRAME: usize = L3_END + 32 + SEG_PAYLOAD;

/// Client hosts 198.18.x.y, x in 0..=255, y in 1..=254.
const CLIENT_HOSTS: u64 = 256 * 254;
/// Ephemeral ports 32768..=60999 (Linux ip_local_port_range).
const PORT_FIRST: u64 = 32768;
const PORTS: u64 = 60999 - 32768 + 1;
/// Servers 198.19.x.y.
const SERVERS: u64 = 2000;

/// New sessions of the first round start within this long of `start_ns`.
const RAMP_NS: u64 = 200 * NS_MS;

/// Pseudo-random bytes that encrypted records and bodies are copied from.
const NOISE_MASK: usize = 0xffff;
const NOISE_LEN: usize = NOISE_MASK + 1 + SEG_PAYLOAD;

/// A TLS record of 16384 bytes of plaintext: header 5 + content 16384 + inner content
/// type 1 + AEAD tag 16.
const TLS_FULL_RECORD: u32 = 5 + 16384 + 1 + 16;
/// The smallest TLS 1.3 application_data record: header 5 + inner type 1 + tag 16.
const TLS_MIN_RECORD: u32 = 5 + 1 + 16;

const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
/// Two points: the middlebox's outside interface (inside it is the clients'
/// gateway, [`GATEWAY_MAC`]) and the next router toward the servers.
const MB_OUTSIDE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0xfe];
const UPSTREAM_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

// ---------------------------------------------------------------------------------
// Sessions

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Client = 0,
    Server = 1,
}

impl Dir {
    fn other(self) -> Dir {
        match self {
            Dir::Client => Dir::Server,
            Dir::Server => Dir::Client,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Clean,
    ResetByClient,
    ResetByServer,
    Rejected,
    NoResponse,
    /// TLS: the client answers the server's certificate with a fatal alert.
    CertRejected,
    /// TLS: the server answers the ClientHello with a handshake_failure alert.
    HandshakeFailure,
    /// TLS: the server ACKs the ClientHello and says nothing more.
    NoServerHello,
    /// Two points only: the server asks the middlebox for a client certificate, gets
    /// none and answers with a fatal alert; the middlebox resets the client.
    ClientCertRequired,
    /// Two points only: the middlebox drops the ClientHello (its SNI is blocked) and
    /// resets the client (and, for half of these sessions, the server).
    SniBlocked,
}

/// Which capture point a session's packets are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    /// One capture point near the clients, no middlebox ([`write_pcap`]).
    Only,
    /// The client's side of the middlebox ([`write_two_point`]).
    Inside,
    /// The server's side of the middlebox.
    Outside,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    /// TLS 1.3 on 443 or 8443.
    Tls13,
    /// TLS 1.2 (RSA key exchange, AES-128-GCM) on 443 or 8443.
    Tls12,
    /// HTTP/1.1 in the clear on 80.
    Http,
}

/// The next packet a session emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// No session in this slot: start one.
    Idle,
    Syn,
    SynAck,
    /// RST/ACK answering the SYN.
    RejectRst,
    /// The third packet of the handshake.
    HandshakeAck,
    /// The next segment of the current message from this side.
    Data(Dir),
    /// A pure ACK from this side.
    Ack(Dir),
    /// RST/ACK from this side.
    Rst(Dir),
    /// The first FIN, from the closing side.
    Fin(Dir),
    /// The other side's FIN/ACK (argument: the closing side).
    FinAck(Dir),
    /// The closing side's last ACK.
    LastAck(Dir),
    /// Two points: the middlebox's forged RST toward the client (inside), and for a
    /// blocked SNI with `reset_both` toward the server (outside).
    MbRst,
}

/// What opens a message: bytes written whole into its first segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    None,
    ClientHello,
    /// ServerHello and ChangeCipherSpec.
    ServerHello,
    /// ChangeCipherSpec and the encrypted Finished.
    ClientFinished,
    /// TLS 1.2 ServerHello (its Certificate and ServerHelloDone are the body).
    ServerHello12,
    /// TLS 1.2 ClientKeyExchange, ChangeCipherSpec and the encrypted Finished.
    ClientFinished12,
    /// TLS 1.2 ChangeCipherSpec and the encrypted Finished.
    ServerFinished12,
    /// A fatal alert rejecting the server's certificate: plaintext in TLS 1.2, in
    /// TLS 1.3 ChangeCipherSpec and a 19-byte encrypted record where the Finished was due.
    ClientAlert,
    /// A plaintext fatal handshake_failure alert.
    ServerAlert,
    HttpRequest,
    HttpResponse,
}

/// What follows the prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// TLS application_data records of full size, the last one shorter.
    TlsRecords,
    /// Opaque bytes.
    Raw,
    /// The TLS 1.2 Certificate (the embedded chain) and ServerHelloDone records.
    CertFlight,
}

/// One application message (a request or a response) in flight.
#[derive(Clone, Copy, Debug)]
struct Msg {
    prefix: Prefix,
    body: Body,
    /// For `HttpRequest`, the target size of the whole request.
    prefix_arg: u32,
    body_len: u32,
    body_sent: u32,
    started: bool,
}

impl Msg {
    const EMPTY: Msg = Msg {
        prefix: Prefix::None,
        body: Body::Raw,
        prefix_arg: 0,
        body_len: 0,
        body_sent: 0,
        started: false,
    };

    fn new(prefix: Prefix, body: Body, body_len: u32) -> Msg {
        Msg {
            prefix,
            body,
            body_len,
            ..Msg::EMPTY
        }
    }

    fn done(&self) -> bool {
        self.started && self.body_sent == self.body_len
    }
}

#[derive(Clone, Debug)]
struct Session {
    rng: Rng,
    step: Step,
    outcome: Outcome,
    app: App,
    closer: Dir,
    client_ip: [u8; 4],
    server_ip: [u8; 4],
    client_port: u16,
    server_port: u16,
    server_idx: u16,
    server_ttl: u8,
    syn_tries: u8,
    /// Segments from the server not yet acknowledged by the client.
    unacked: u8,
    exchange: u16,
    exchanges: u16,
    /// Per direction (index `Dir as usize`): next sequence number, IP ID, TCP
    /// timestamp clock offset, last TSval sent, window (scaled).
    seq: [u32; 2],
    ip_id: [u16; 2],
    ts_off: [u32; 2],
    last_tsval: [u32; 2],
    win: [u16; 2],
    rtt: u64,
    /// Seeds the TLS randoms, session id and key shares.
    tls_key: u64,
    /// Where encrypted bytes are read from in the noise buffer.
    salt: u32,
    /// The session's number, for URLs.
    number: u64,
    msg: Msg,
    /// Two points: which leg this copy of the session writes, the middlebox's
    /// latency (each way), and whether it resets the server too when it blocks.
    leg: Leg,
    mb_delay: u64,
    reset_both: bool,
}

/// What a session's packet leads to.
enum Next {
    After(u64),
    Done(Outcome),
}

impl Session {
    fn idle() -> Session {
        Session {
            rng: Rng::new(0),
            step: Step::Idle,
            outcome: Outcome::Clean,
            app: App::Tls13,
            closer: Dir::Client,
            client_ip: [0; 4],
            server_ip: [0; 4],
            client_port: 0,
            server_port: 0,
            server_idx: 0,
            server_ttl: 0,
            syn_tries: 0,
            unacked: 0,
            exchange: 0,
            exchanges: 0,
            seq: [0; 2],
            ip_id: [0; 2],
            ts_off: [0; 2],
            last_tsval: [0; 2],
            win: [0; 2],
            rtt: 0,
            tls_key: 0,
            salt: 0,
            number: 0,
            msg: Msg::EMPTY,
            leg: Leg::Only,
            mb_delay: 0,
            reset_both: false,
        }
    }

    /// Session number `n` of the generator: everything about it follows from
    /// `(seed, n)`.
    fn start(&mut self, params: &Params, n: u64) {
        let mut rng = Rng::new(derive(params.seed, STREAM_SESSION, n));
        let (host, port) = params.tuple(n);
        let server_idx = {
            // Skewed towards low indices: a few popular servers, a long tail.
            let bound = rng.below(SERVERS) + 1;
            rng.below(bound)
        };
        let server_port = match rng.below(100) {
            0..=84 => 443,
            85..=94 => 80,
            _ => 8443,
        };
        let app = if server_port == 80 {
            App::Http
        } else if rng.below(10) < 3 {
            App::Tls12
        } else {
            App::Tls13
        };
        let outcome = if rng.chance(params.failure_share) {
            match rng.below(if app == App::Http { 4 } else { 7 }) {
                0 => Outcome::ResetByClient,
                1 => Outcome::ResetByServer,
                2 => Outcome::Rejected,
                3 => Outcome::NoResponse,
                4 => Outcome::CertRejected,
                5 => Outcome::HandshakeFailure,
                _ => Outcome::NoServerHello,
            }
        } else {
            Outcome::Clean
        };
        // Request/response exchanges after the TLS handshake: 1 + geometric(1/2),
        // at least 2 when the server resets a request (so some data came first).
        let mut k: u16 = 1;
        while k < 16 && rng.below(2) == 0 {
            k += 1;
        }
        if outcome == Outcome::ResetByServer {
            k = k.max(2);
        }
        let exchanges = k + match app {
            App::Tls13 => 1,
            App::Tls12 => 2,
            App::Http => 0,
        };
        let closer = if rng.below(10) < 7 {
            Dir::Client
        } else {
            Dir::Server
        };
        let isn = [rng.next_u64() as u32, rng.next_u64() as u32];
        let ip_id = [rng.next_u64() as u16, rng.next_u64() as u16];
        let ts_off = [rng.next_u64() as u32, rng.next_u64() as u32];
        let win = [rng.range(250, 3000) as u16, rng.range(250, 2000) as u16];
        let rtt = rng.range(100 * NS_US, 950 * NS_US);
        let tls_key = rng.next_u64();
        let salt = rng.next_u64() as u32;
        *self = Session {
            rng,
            step: Step::Syn,
            outcome,
            app,
            closer,
            client_ip: [198, 18, (host / 254) as u8, (host % 254 + 1) as u8],
            server_ip: [
                198,
                19,
                (server_idx / 254) as u8,
                (server_idx % 254 + 1) as u8,
            ],
            client_port: port,
            server_port,
            server_idx: server_idx as u16,
            // 5 to 9 hops away from a Linux server (initial TTL 64), fixed per server.
            server_ttl: 64 - 5 - (mix64(server_idx) % 5) as u8,
            syn_tries: 0,
            unacked: 0,
            exchange: 0,
            exchanges,
            seq: isn,
            ip_id,
            ts_off,
            last_tsval: [0; 2],
            win,
            rtt,
            tls_key,
            salt,
            number: n,
            msg: Msg::EMPTY,
            leg: Leg::Only,
            mb_delay: 0,
            reset_both: false,
        };
    }

    /// Writes the session's next packet at `now` into `frame`; returns its length and
    /// what comes next.
    fn emit(
        &mut self,
        now: u64,
        frame: &mut [u8],
        bufs: &Bufs,
        summary: &mut SynthSummary,
    ) -> (usize, Next) {
        match self.step {
            Step::Idle => unreachable!("an idle slot is started before it emits"),
            Step::Syn => {
                self.syn_tries += 1;
                let seq = self.seq[Dir::Client as usize];
                let len = self.packet(now, frame, Dir::Client, SYN, seq, 0, Opts::Syn, 0);
                let next = match self.outcome {
                    // Linux: initial RTO 1 s, doubled.
                    Outcome::NoResponse if self.syn_tries < 3 => {
                        Next::After(if self.syn_tries == 1 { NS_S } else { 2 * NS_S })
                    }
                    Outcome::NoResponse => Next::Done(Outcome::NoResponse),
                    Outcome::Rejected => {
                        self.seq[Dir::Client as usize] = seq.wrapping_add(1);
                        self.step = Step::RejectRst;
                        Next::After(self.rtt + self.rng.range(0, 30 * NS_US))
                    }
                    _ => {
                        self.seq[Dir::Client as usize] = seq.wrapping_add(1);
                        self.step = Step::SynAck;
                        Next::After(self.rtt + self.rng.range(0, 30 * NS_US))
                    }
                };
                (len, next)
            }
            Step::RejectRst => {
                // RFC 9293 3.10.7.1: seq 0, ack = SYN + 1, no options.
                let ack = self.seq[Dir::Client as usize];
                let len = self.packet(now, frame, Dir::Server, RST | ACK, 0, ack, Opts::None, 0);
                (len, Next::Done(Outcome::Rejected))
            }
            Step::SynAck => {
                let seq = self.seq[Dir::Server as usize];
                let ack = self.seq[Dir::Client as usize];
                let len = self.packet(now, frame, Dir::Server, SYN | ACK, seq, ack, Opts::Syn, 0);
                self.seq[Dir::Server as usize] = seq.wrapping_add(1);
                self.step = Step::HandshakeAck;
                (len, Next::After(self.react()))
            }
            Step::HandshakeAck => {
                let len = self.pure(now, frame, Dir::Client, ACK);
                self.begin_request();
                (len, Next::After(self.rng.range(20 * NS_US, 200 * NS_US)))
            }
            Step::Data(dir) => {
                if let Some(diverted) = self.divert(now, frame, dir) {
                    return diverted;
                }
                let len = self.data_segment(now, frame, dir, bufs, summary);
                let next = match dir {
                    Dir::Client if self.msg.done() => self.request_done(),
                    Dir::Client => Next::After(self.spacing()),
                    Dir::Server => {
                        self.unacked += 1;
                        if self.msg.done() && self.msg.prefix == Prefix::ServerAlert {
                            // The server closes right after its alert.
                            self.step = Step::Fin(Dir::Server);
                            Next::After(self.spacing())
                        } else if self.msg.done() {
                            // Quick ACK of the tail.
                            self.step = Step::Ack(Dir::Client);
                            Next::After(self.rng.range(20 * NS_US, 200 * NS_US))
                        } else if self.unacked == 2 {
                            self.step = Step::Ack(Dir::Client);
                            Next::After(self.react())
                        } else {
                            Next::After(self.spacing())
                        }
                    }
                };
                (len, next)
            }
            Step::Ack(dir) => {
                let len = self.pure(now, frame, dir, ACK);
                self.unacked = 0;
                let next = if self.msg.done() {
                    self.exchange_done()
                } else {
                    self.step = Step::Data(dir.other());
                    Next::After(self.spacing())
                };
                (len, next)
            }
            Step::Rst(dir) => {
                let len = self.pure(now, frame, dir, RST | ACK);
                (len, Next::Done(self.outcome))
            }
            Step::Fin(closer) => {
                let len = self.pure(now, frame, closer, FIN | ACK);
                self.seq[closer as usize] = self.seq[closer as usize].wrapping_add(1);
                if self.leg != Leg::Only && self.outcome == Outcome::CertRejected {
                    // The middlebox answers the client's FIN with a forged RST.
                    self.step = Step::MbRst;
                    return (len, Next::After(self.mb_delay));
                }
                self.step = Step::FinAck(closer);
                (len, Next::After(self.turn(closer.other())))
            }
            Step::FinAck(closer) => {
                let other = closer.other();
                let len = self.pure(now, frame, other, FIN | ACK);
                if self.mtls_outside() {
                    // The middlebox closes its leg to the server itself.
                    middlebox_made(frame, None);
                }
                self.seq[other as usize] = self.seq[other as usize].wrapping_add(1);
                self.step = Step::LastAck(closer);
                (len, Next::After(self.turn(closer)))
            }
            Step::LastAck(closer) => {
                let len = self.pure(now, frame, closer, ACK);
                (len, Next::Done(self.outcome))
            }
            Step::MbRst => {
                let len = match self.leg {
                    Leg::Inside => self.forged_rst(now, frame, Dir::Client),
                    Leg::Outside if self.reset_both => self.forged_rst(now, frame, Dir::Server),
                    _ => 0,
                };
                (len, Next::Done(self.outcome))
            }
        }
    }

    /// Two points: a data step that this leg does not carry as the other does (the
    /// middlebox acts instead of passing the message on). `None` for every step of
    /// the one-point generator.
    fn divert(&mut self, now: u64, frame: &mut [u8], dir: Dir) -> Option<(usize, Next)> {
        match (self.leg, self.outcome, dir, self.msg.prefix) {
            // The blocked ClientHello never leaves the middlebox.
            (Leg::Outside, Outcome::SniBlocked, Dir::Client, Prefix::ClientHello) => {
                self.msg.started = true;
                Some((0, self.request_done()))
            }
            // The client's alert is not passed on: the middlebox resets its leg to the
            // server instead.
            (Leg::Outside, Outcome::CertRejected, Dir::Client, Prefix::ClientAlert) => Some((
                self.forged_rst(now, frame, Dir::Server),
                Next::Done(self.outcome),
            )),
            // Neither is the server's alert: the middlebox resets the client.
            (Leg::Inside, Outcome::ClientCertRequired, Dir::Server, Prefix::ServerAlert) => Some((
                self.forged_rst(now, frame, Dir::Client),
                Next::Done(self.outcome),
            )),
            _ => None,
        }
    }

    /// An RST/ACK that the middlebox sends toward `toward` in the other end's name: at
    /// that end's next sequence number (in the window), without options, window 0,
    /// with the middlebox's own TTL 64 and IP ID 0 (as a Linux firewall's REJECT).
    fn forged_rst(&mut self, now: u64, frame: &mut [u8], toward: Dir) -> usize {
        let from = toward.other();
        let (seq, ack) = (self.seq[from as usize], self.seq[toward as usize]);
        let len = self.packet(now, frame, from, RST | ACK, seq, ack, Opts::None, 0);
        middlebox_made(frame, Some(0));
        len
    }

    /// The TLS 1.2 Certificate and ServerHelloDone records of this leg: the real chain
    /// (with a CertificateRequest when the server wants a client certificate), or
    /// inside the middlebox's re-signed leaf and its inspection CA.
    fn flight<'a>(&self, bufs: &'a Bufs) -> &'a [u8] {
        match (self.leg, self.outcome) {
            (Leg::Inside, _) => &bufs.inspect_flight,
            (Leg::Outside, Outcome::ClientCertRequired) => &bufs.mtls_flight,
            _ => &bufs.cert_flight,
        }
    }

    fn flight_len(&self) -> u32 {
        (match (self.leg, self.outcome) {
            (Leg::Inside, _) => INSPECT_FLIGHT_LEN,
            (Leg::Outside, Outcome::ClientCertRequired) => MTLS_FLIGHT_LEN,
            _ => CERT_FLIGHT_LEN,
        }) as u32
    }

    /// The middlebox's own handshake toward the server, outside, when the server wants
    /// a client certificate: it has none to send.
    fn mtls_outside(&self) -> bool {
        self.leg == Leg::Outside && self.outcome == Outcome::ClientCertRequired
    }

    /// The server's alert is TLS 1.3's encrypted certificate_required (the
    /// one-point handshake_failure alert is always in the clear).
    fn encrypted_server_alert(&self) -> bool {
        self.outcome == Outcome::ClientCertRequired && self.app == App::Tls13
    }

    /// The client's reaction time to a server packet (the tap sits near the client).
    fn react(&mut self) -> u64 {
        self.rng.range(8 * NS_US, 60 * NS_US)
    }

    /// Between back-to-back segments from one side.
    fn spacing(&mut self) -> u64 {
        self.rng.range(2 * NS_US, 14 * NS_US)
    }

    /// Delay until `next` sends, after a packet from the other side.
    fn turn(&mut self, next: Dir) -> u64 {
        match next {
            Dir::Server => self.rtt + self.rng.range(0, 40 * NS_US),
            Dir::Client => self.react(),
        }
    }

    /// Client think time, or server processing time: log-uniform-ish over decades.
    fn think(&mut self, lo: u64) -> u64 {
        let decade = match self.rng.below(100) {
            0..=29 => 0,
            30..=69 => 1,
            70..=94 => 2,
            _ => 3,
        };
        let base = lo * 10u64.pow(decade);
        self.rng.range(base, 10 * base)
    }

    fn begin_request(&mut self) {
        let size = self.rng.range(100, 700) as u32;
        self.msg = match (self.app, self.exchange) {
            (App::Tls13 | App::Tls12, 0) => Msg::new(Prefix::ClientHello, Body::Raw, 0),
            (App::Tls13 | App::Tls12, 1) if self.outcome == Outcome::CertRejected => {
                Msg::new(Prefix::ClientAlert, Body::Raw, 0)
            }
            (App::Tls13, 1) => Msg::new(
                Prefix::ClientFinished,
                Body::TlsRecords,
                tls_records_len(size),
            ),
            (App::Tls12, 1) => Msg::new(Prefix::ClientFinished12, Body::Raw, 0),
            (App::Tls13 | App::Tls12, _) => {
                Msg::new(Prefix::None, Body::TlsRecords, tls_records_len(size))
            }
            (App::Http, _) => Msg {
                prefix_arg: size,
                ..Msg::new(Prefix::HttpRequest, Body::Raw, 0)
            },
        };
        self.step = Step::Data(Dir::Client);
    }

    fn request_done(&mut self) -> Next {
        match (self.outcome, self.exchange) {
            (Outcome::NoServerHello, 0) => {
                // The server's stack ACKs the ClientHello; its application never answers.
                self.step = Step::Ack(Dir::Server);
                return Next::After(self.turn(Dir::Server));
            }
            (Outcome::HandshakeFailure, 0) => {
                self.msg = Msg::new(Prefix::ServerAlert, Body::Raw, 0);
                self.unacked = 0;
                self.step = Step::Data(Dir::Server);
                return Next::After(self.turn(Dir::Server) + self.think(20 * NS_US));
            }
            (Outcome::CertRejected, 1) => {
                // The client closes right after its alert (behind a middlebox, by FIN).
                self.step = self.client_close();
                if self.leg != Leg::Only {
                    self.step = Step::Fin(Dir::Client);
                }
                return Next::After(self.spacing());
            }
            (Outcome::SniBlocked, 0) => {
                self.step = Step::MbRst;
                return Next::After(self.mb_delay);
            }
            (Outcome::ClientCertRequired, 1) => {
                // TLS 1.2: the client's (empty) Certificate, ClientKeyExchange and
                // Finished; TLS 1.3: its empty Certificate and Finished. A fatal alert.
                self.msg = Msg::new(Prefix::ServerAlert, Body::Raw, 0);
                self.unacked = 0;
                self.step = Step::Data(Dir::Server);
                return Next::After(self.turn(Dir::Server) + self.think(20 * NS_US));
            }
            _ => {}
        }
        if self.outcome == Outcome::ResetByServer && self.exchange + 1 == self.exchanges {
            self.step = Step::Rst(Dir::Server);
            return Next::After(self.turn(Dir::Server) + self.think(20 * NS_US));
        }
        let size = match self.rng.below(100) {
            0..=49 => self.rng.range(200, 1400),
            50..=79 => self.rng.range(1400, 16_000),
            _ => self.rng.range(16_000, 80_000),
        } as u32;
        self.msg = match (self.app, self.exchange) {
            // EncryptedExtensions, Certificate, CertificateVerify, Finished: one record.
            (App::Tls13, 0) => Msg::new(
                Prefix::ServerHello,
                Body::TlsRecords,
                tls_records_len(self.rng.range(2000, 4500) as u32),
            ),
            (App::Tls12, 0) => Msg::new(Prefix::ServerHello12, Body::CertFlight, self.flight_len()),
            (App::Tls12, 1) => Msg::new(Prefix::ServerFinished12, Body::Raw, 0),
            (App::Tls13 | App::Tls12, _) => {
                Msg::new(Prefix::None, Body::TlsRecords, tls_records_len(size))
            }
            (App::Http, _) => Msg::new(Prefix::HttpResponse, Body::Raw, size),
        };
        self.unacked = 0;
        self.step = Step::Data(Dir::Server);
        Next::After(self.turn(Dir::Server) + self.think(20 * NS_US))
    }

    fn exchange_done(&mut self) -> Next {
        self.exchange += 1;
        if self.outcome == Outcome::NoServerHello {
            // The client gives up after 2 to 20 s of silence.
            self.step = self.client_close();
            return Next::After(self.rng.range(2 * NS_S, 20 * NS_S));
        }
        let handshake = match self.app {
            App::Tls13 => self.exchange == 1,
            App::Tls12 => self.exchange <= 2,
            App::Http => false,
        };
        if handshake {
            // The client verifies the server's flight and answers with its Finished (or,
            // TLS 1.2, sends its first request once the server's Finished is in).
            self.begin_request();
            return Next::After(self.rng.range(100 * NS_US, NS_MS));
        }
        let wait = self.think(NS_MS);
        if self.exchange < self.exchanges {
            self.begin_request();
        } else {
            self.step = match self.outcome {
                Outcome::ResetByClient => Step::Rst(Dir::Client),
                _ => Step::Fin(self.closer),
            };
        }
        Next::After(wait)
    }

    /// How a client abandons a failed handshake: FIN (60 %) or RST.
    fn client_close(&mut self) -> Step {
        if self.rng.below(10) < 6 {
            Step::Fin(Dir::Client)
        } else {
            Step::Rst(Dir::Client)
        }
    }

    /// A segment without payload with the timestamps option.
    fn pure(&mut self, now: u64, frame: &mut [u8], dir: Dir, flags: u8) -> usize {
        let seq = self.seq[dir as usize];
        let ack = self.seq[dir.other() as usize];
        self.packet(now, frame, dir, flags, seq, ack, Opts::Ts, 0)
    }

    fn data_segment(
        &mut self,
        now: u64,
        frame: &mut [u8],
        dir: Dir,
        bufs: &Bufs,
        summary: &mut SynthSummary,
    ) -> usize {
        let noise = &bufs.noise[..];
        if !self.msg.started {
            match self.msg.prefix {
                Prefix::ClientHello => summary.client_hellos += 1,
                Prefix::ServerHello | Prefix::ServerHello12 => summary.server_hellos += 1,
                Prefix::ClientFinished12 if self.mtls_outside() => summary.client_certificates += 1,
                Prefix::ClientAlert if self.app == App::Tls12 => summary.plaintext_alerts += 1,
                Prefix::ServerAlert if !self.encrypted_server_alert() => {
                    summary.plaintext_alerts += 1
                }
                _ => {}
            }
        }
        let start = L3_END + 32;
        let mut n = 0;
        if !self.msg.started {
            let out = &mut frame[start..start + SEG_PAYLOAD];
            n = match self.msg.prefix {
                Prefix::None => 0,
                Prefix::ClientHello => self.client_hello(out),
                Prefix::ServerHello => self.server_hello(out),
                Prefix::ClientFinished => {
                    out[..6].copy_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
                    // Outside, to a server that asked for a client certificate, the
                    // middlebox's empty Certificate first: 4 + 4 + inner type 1 + tag
                    // 16 = 25 bytes.
                    let cert = if self.mtls_outside() {
                        out[6..11].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 25]);
                        let at = (self.salt as usize ^ 0x2525) & NOISE_MASK;
                        out[11..36].copy_from_slice(&noise[at..at + 25]);
                        30
                    } else {
                        0
                    };
                    let fin = &mut out[6 + cert..];
                    fin[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 53]);
                    let at = (self.salt as usize ^ 0x5a5a) & NOISE_MASK;
                    fin[5..58].copy_from_slice(&noise[at..at + 53]);
                    64 + cert
                }
                Prefix::ServerHello12 => self.server_hello12(out),
                Prefix::ClientFinished12 => {
                    // Outside, to a server that asked for a client certificate, the
                    // middlebox's Certificate with an empty list first.
                    let cert = if self.mtls_outside() {
                        out[..12].copy_from_slice(&[
                            0x16, 0x03, 0x03, 0x00, 0x07, 0x0b, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
                        ]);
                        12
                    } else {
                        0
                    };
                    let out = &mut out[cert..];
                    // ClientKeyExchange: the premaster secret encrypted to the leaf's
                    // RSA-2048 key (256 bytes).
                    out[..11].copy_from_slice(&[
                        0x16, 0x03, 0x03, 0x01, 0x06, 0x10, 0x00, 0x01, 0x02, 0x01, 0x00,
                    ]);
                    let at = (self.salt as usize ^ 0x1234) & NOISE_MASK;
                    out[11..267].copy_from_slice(&noise[at..at + 256]);
                    tls12_finished(&mut out[267..], noise, self.salt as usize ^ 0x3c3c) + 267 + cert
                }
                Prefix::ServerFinished12 => tls12_finished(out, noise, self.salt as usize ^ 0x7e7e),
                Prefix::ClientAlert => match self.app {
                    App::Tls12 => {
                        // unknown_ca 48 or bad_certificate 42.
                        let desc = if self.rng.below(2) == 0 { 48 } else { 42 };
                        out[..7].copy_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, desc]);
                        7
                    }
                    _ => {
                        // Alert 2 + inner content type 1 + AEAD tag 16.
                        out[..6].copy_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
                        out[6..11].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 19]);
                        let at = (self.salt as usize ^ 0x4242) & NOISE_MASK;
                        out[11..30].copy_from_slice(&noise[at..at + 19]);
                        30
                    }
                },
                Prefix::ServerAlert if self.encrypted_server_alert() => {
                    // TLS 1.3 certificate_required, encrypted: 2 + 1 + 16.
                    out[..5].copy_from_slice(&[0x17, 0x03, 0x03, 0x00, 19]);
                    let at = (self.salt as usize ^ 0x7474) & NOISE_MASK;
                    out[5..24].copy_from_slice(&noise[at..at + 19]);
                    24
                }
                Prefix::ServerAlert => {
                    out[..7].copy_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);
                    7
                }
                Prefix::HttpRequest => self.http_request(out),
                Prefix::HttpResponse => http_response(out, self.msg.body_len),
            };
            self.msg.started = true;
        }
        let take = (self.msg.body_len - self.msg.body_sent).min((SEG_PAYLOAD - n) as u32) as usize;
        let out = &mut frame[start + n..start + n + take];
        let salt = self.salt as usize + if dir == Dir::Server { 0x8000 } else { 0 };
        match self.msg.body {
            Body::TlsRecords => {
                fill_records(out, self.msg.body_sent, self.msg.body_len, noise, salt)
            }
            Body::Raw => {
                let at = (salt + self.msg.body_sent as usize) & NOISE_MASK;
                out.copy_from_slice(&noise[at..at + take]);
            }
            Body::CertFlight => {
                let at = self.msg.body_sent as usize;
                out.copy_from_slice(&self.flight(bufs)[at..at + take]);
            }
        }
        self.msg.body_sent += take as u32;
        if self.msg.body == Body::CertFlight && self.msg.done() && take > 0 {
            summary.certificates += 1;
        }
        let seq = self.seq[dir as usize];
        let ack = self.seq[dir.other() as usize];
        let flags = if self.msg.done() { PSH | ACK } else { ACK };
        let len = self.packet(now, frame, dir, flags, seq, ack, Opts::Ts, n + take);
        self.seq[dir as usize] = seq.wrapping_add((n + take) as u32);
        len
    }

    /// A TLS 1.3 ClientHello as curl/OpenSSL sends it, padded to 512 bytes of
    /// handshake message most of the time.
    fn client_hello(&mut self, out: &mut [u8]) -> usize {
        let mut c = Cursor { buf: out, pos: 0 };
        c.put(&[0x16, 0x03, 0x01, 0, 0, 0x01, 0, 0, 0, 0x03, 0x03]);
        c.random(self.tls_key ^ 1, 32);
        c.put(&[32]);
        c.random(self.tls_key ^ 2, 32);
        let tls13 = self.app != App::Tls12;
        if self.leg == Leg::Outside {
            // The middlebox's own TLS stack: fewer suites, another order (another
            // JA3/JA4), still with the ones the servers choose.
            if tls13 {
                c.put(&[0x00, 18, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01]);
            } else {
                c.put(&[0x00, 12]);
            }
            c.put(&[
                0xc0, 0x2c, 0xc0, 0x30, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9d, 0x00, 0x9c,
            ]);
        } else {
            if tls13 {
                c.put(&[0x00, 30, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
            } else {
                c.put(&[0x00, 24]);
            }
            c.put(&[
                0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0, 0x13,
                0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
            ]);
        }
        c.put(&[0x01, 0x00]);
        let ext_len_at = c.pos;
        c.put(&[0, 0]);
        // server_name
        let name_len = server_name(self.server_idx, &mut [0u8; 32]);
        c.u16(0x0000);
        c.u16(name_len as u16 + 5);
        c.u16(name_len as u16 + 3);
        c.put(&[0]);
        c.u16(name_len as u16);
        let at = c.pos;
        server_name(self.server_idx, &mut c.buf[at..at + name_len]);
        c.pos += name_len;
        c.put(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
        c.put(&[
            0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
        ]);
        c.put(&[0x00, 0x23, 0x00, 0x00]);
        c.put(&[0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, b'h', b'2', 0x08]);
        c.put(b"http/1.1");
        c.put(&[0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00]);
        c.put(&[0x00, 0x0d, 0x00, 0x1e, 0x00, 0x1c]);
        c.put(&[
            0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a,
            0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01,
        ]);
        if tls13 {
            // supported_versions (1.3, 1.2), psk_key_exchange_modes, key_share (x25519).
            c.put(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
            c.put(&[0x00, 0x2d, 0x00, 0x02, 0x01, 0x01]);
            c.put(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
            c.random(self.tls_key ^ 3, 32);
        }
        // padding (RFC 7685) to a 512-byte handshake message, as OpenSSL does.
        let hs_len = c.pos - 5;
        if self.rng.below(10) < 7 && hs_len + 4 <= 512 {
            let pad = 512 - hs_len - 4;
            c.u16(0x0015);
            c.u16(pad as u16);
            let at = c.pos;
            c.buf[at..at + pad].fill(0);
            c.pos += pad;
        }
        let end = c.pos;
        let out = c.buf;
        out[ext_len_at..ext_len_at + 2]
            .copy_from_slice(&((end - ext_len_at - 2) as u16).to_be_bytes());
        out[3..5].copy_from_slice(&((end - 5) as u16).to_be_bytes());
        let hs = (end - 9) as u32;
        out[6..9].copy_from_slice(&hs.to_be_bytes()[1..]);
        end
    }

    /// ServerHello (TLS_AES_128_GCM_SHA256, x25519) and ChangeCipherSpec: 133 bytes.
    fn server_hello(&mut self, out: &mut [u8]) -> usize {
        let mut c = Cursor { buf: out, pos: 0 };
        c.put(&[
            0x16, 0x03, 0x03, 0x00, 122, 0x02, 0x00, 0x00, 118, 0x03, 0x03,
        ]);
        c.random(self.tls_key ^ 4, 32);
        c.put(&[32]);
        c.random(self.tls_key ^ 2, 32);
        c.put(&[0x13, 0x01, 0x00, 0x00, 46]);
        c.put(&[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        c.put(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
        c.random(self.tls_key ^ 5, 32);
        c.put(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        c.pos
    }

    /// TLS 1.2 ServerHello (TLS_RSA_WITH_AES_128_GCM_SHA256, extended_master_secret):
    /// 85 bytes. Its Certificate and ServerHelloDone follow as [`Body::CertFlight`].
    fn server_hello12(&mut self, out: &mut [u8]) -> usize {
        let mut c = Cursor { buf: out, pos: 0 };
        c.put(&[0x16, 0x03, 0x03, 0x00, 80, 0x02, 0x00, 0x00, 76, 0x03, 0x03]);
        c.random(self.tls_key ^ 4, 32);
        c.put(&[32]);
        c.random(self.tls_key ^ 2, 32);
        c.put(&[0x00, 0x9c, 0x00, 0x00, 4, 0x00, 0x17, 0x00, 0x00]);
        c.pos
    }

    /// A GET of `prefix_arg` bytes (at least its fixed part).
    fn http_request(&mut self, out: &mut [u8]) -> usize {
        let mut c = Cursor { buf: out, pos: 0 };
        c.put(b"GET /objects/");
        c.dec(self.number);
        c.put(b"/");
        c.dec(self.exchange.into());
        c.put(b" HTTP/1.1\r\nHost: ");
        let at = c.pos;
        c.pos += server_name(self.server_idx, &mut c.buf[at..at + 32]);
        c.put(b"\r\nUser-Agent: synth/1.0\r\nAccept: */*\r\nCookie: s=");
        let fill = (self.msg.prefix_arg as usize)
            .saturating_sub(c.pos + 4)
            .max(8);
        let at = c.pos;
        for (i, b) in c.buf[at..at + fill].iter_mut().enumerate() {
            *b = b'a' + ((self.salt as usize + i * 7) % 26) as u8;
        }
        c.pos += fill;
        c.put(b"\r\n\r\n");
        c.pos
    }

    /// Writes Ethernet, IPv4 and TCP headers (the payload is already in place) with
    /// their checksums; returns the frame length.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per packet kind; a struct would only rename them"
    )]
    fn packet(
        &mut self,
        now: u64,
        frame: &mut [u8],
        dir: Dir,
        flags: u8,
        seq: u32,
        ack: u32,
        opts: Opts,
        payload: usize,
    ) -> usize {
        let d = dir as usize;
        let (src, dst, sport, dport) = match dir {
            Dir::Client => (
                self.client_ip,
                self.server_ip,
                self.client_port,
                self.server_port,
            ),
            Dir::Server => (
                self.server_ip,
                self.client_ip,
                self.server_port,
                self.client_port,
            ),
        };
        // The middlebox routes: one hop less past it.
        let ttl = match (self.leg, dir) {
            (Leg::Outside, Dir::Client) => 63,
            (_, Dir::Client) => 64,
            (Leg::Inside, Dir::Server) => self.server_ttl - 1,
            (_, Dir::Server) => self.server_ttl,
        };
        let client_mac = [0x02, 0x00, 0xc6, 0x12, self.client_ip[2], self.client_ip[3]];
        let (smac, dmac) = match (self.leg, dir) {
            (Leg::Outside, Dir::Client) => (MB_OUTSIDE_MAC, UPSTREAM_MAC),
            (Leg::Outside, Dir::Server) => (UPSTREAM_MAC, MB_OUTSIDE_MAC),
            (_, Dir::Client) => (client_mac, GATEWAY_MAC),
            (_, Dir::Server) => (GATEWAY_MAC, client_mac),
        };
        let tcp_hl = opts.header_len();
        let tcp_len = tcp_hl + payload;
        let total = L3_END + tcp_len;

        frame[0..6].copy_from_slice(&dmac);
        frame[6..12].copy_from_slice(&smac);
        frame[12..14].copy_from_slice(&[0x08, 0x00]);

        let id = self.ip_id[d];
        self.ip_id[d] = id.wrapping_add(1);
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6..8].copy_from_slice(&[0x40, 0x00]);
        ip[8] = ttl;
        ip[9] = 6;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let ip_sum = checksum(ip, 0);
        ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());

        let win = match (opts, dir) {
            (Opts::None, _) => 0,
            (Opts::Syn, Dir::Client) => 64240,
            (Opts::Syn, Dir::Server) => 65160,
            (Opts::Ts, _) => self.win[d],
        };
        let tsval = ((now / NS_MS) as u32).wrapping_add(self.ts_off[d]);
        let tsecr = self.last_tsval[dir.other() as usize];
        let tcp = &mut frame[L3_END..total];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = ((tcp_hl / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&win.to_be_bytes());
        tcp[16..20].copy_from_slice(&[0, 0, 0, 0]);
        match opts {
            Opts::None => {}
            Opts::Syn => {
                tcp[20..24].copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
                tcp[24..28].copy_from_slice(&[0x04, 0x02, 0x08, 0x0a]);
                tcp[28..32].copy_from_slice(&tsval.to_be_bytes());
                tcp[32..36].copy_from_slice(&tsecr.to_be_bytes());
                tcp[36..40].copy_from_slice(&[0x01, 0x03, 0x03, 0x07]);
            }
            Opts::Ts => {
                tcp[20..24].copy_from_slice(&[0x01, 0x01, 0x08, 0x0a]);
                tcp[24..28].copy_from_slice(&tsval.to_be_bytes());
                tcp[28..32].copy_from_slice(&tsecr.to_be_bytes());
            }
        }
        if opts != Opts::None {
            self.last_tsval[d] = tsval;
        }
        let pseudo = u64::from(u32::from_be_bytes(src))
            + u64::from(u32::from_be_bytes(dst))
            + 6
            + tcp_len as u64;
        let tcp_sum = checksum(tcp, pseudo);
        tcp[16..18].copy_from_slice(&tcp_sum.to_be_bytes());
        total
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opts {
    /// No options (the RST rejecting a SYN).
    None,
    /// MSS, SACK permitted, timestamps, NOP, window scale: 20 bytes.
    Syn,
    /// NOP, NOP, timestamps: 12 bytes.
    Ts,
}

impl Opts {
    fn header_len(self) -> usize {
        match self {
            Opts::None => 20,
            Opts::Syn => 40,
            Opts::Ts => 32,
        }
    }
}

/// Makes the IPv4 header of `frame` the middlebox's own: its initial TTL 64 (not one
/// hop less than the sender's) and, if given, its IP ID.
fn middlebox_made(frame: &mut [u8], ip_id: Option<u16>) {
    let ip = &mut frame[14..34];
    if let Some(id) = ip_id {
        ip[4..6].copy_from_slice(&id.to_be_bytes());
    }
    ip[8] = 64;
    ip[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum(ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// The length of a stream of application_data records carrying about `want` bytes,
/// adjusted so that its last record is a valid one.
fn tls_records_len(want: u32) -> u32 {
    let want = want.max(TLS_MIN_RECORD);
    let rest = want % TLS_FULL_RECORD;
    if rest != 0 && rest < TLS_MIN_RECORD {
        want + (TLS_MIN_RECORD - rest)
    } else {
        want
    }
}

/// Writes bytes `off..off + out.len()` of a `total`-byte stream of TLS application_data
/// records: full records, then a shorter last one.
fn fill_records(out: &mut [u8], mut off: u32, total: u32, noise: &[u8], salt: usize) {
    let mut pos = 0;
    while pos < out.len() {
        let record_start = off - off % TLS_FULL_RECORD;
        let within = (off - record_start) as usize;
        let record_len = TLS_FULL_RECORD.min(total - record_start) as usize;
        let n = if within < 5 {
            let body = (record_len - 5) as u16;
            let [hi, lo] = body.to_be_bytes();
            let hdr = [0x17, 0x03, 0x03, hi, lo];
            let n = (5 - within).min(out.len() - pos);
            out[pos..pos + n].copy_from_slice(&hdr[within..within + n]);
            n
        } else {
            let n = (record_len - within).min(out.len() - pos);
            let at = (salt + off as usize) & NOISE_MASK;
            out[pos..pos + n].copy_from_slice(&noise[at..at + n]);
            n
        };
        pos += n;
        off += n as u32;
    }
}

/// A TLS 1.2 ChangeCipherSpec and encrypted Finished (AES-128-GCM: explicit nonce 8 +
/// Finished 4 + 12 + tag 16 = 40 bytes of record body): 51 bytes.
fn tls12_finished(out: &mut [u8], noise: &[u8], salt: usize) -> usize {
    out[..11].copy_from_slice(&[
        0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x16, 0x03, 0x03, 0x00, 40,
    ]);
    let at = salt & NOISE_MASK;
    out[11..51].copy_from_slice(&noise[at..at + 40]);
    51
}

/// The certificate chain of the TLS 1.2 servers (every server sends the same): a leaf
/// for `*.example.test` and the CA that signed it, RSA-2048, DER. Made once with
/// OpenSSL by `synth/make-certs.sh`.
const LEAF_DER: &[u8] = include_bytes!("synth/leaf.der");
const CA_DER: &[u8] = include_bytes!("synth/ca.der");
/// Two points: what the TLS-inspecting middlebox shows the client instead, a leaf
/// with the same names re-signed by its own "Synth Inspection CA", and that CA
/// (`synth/make-certs.sh inspect`).
const INSPECT_LEAF_DER: &[u8] = include_bytes!("synth/inspect-leaf.der");
const INSPECT_CA_DER: &[u8] = include_bytes!("synth/inspect-ca.der");

/// A TLS 1.2 CertificateRequest record (RFC 5246 7.4.4): certificate types
/// rsa_sign and ecdsa_sign, three signature algorithms, no CA names.
const CERT_REQUEST: [u8; 22] = [
    0x16, 0x03, 0x03, 0x00, 17, 0x0d, 0x00, 0x00, 13, 2, 1, 64, 0x00, 6, 0x04, 0x01, 0x08, 0x04,
    0x04, 0x03, 0x00, 0x00,
];

/// Certificate record (header 5, handshake header 4, list length 3, each certificate
/// with its 3-byte length), a CertificateRequest record if asked, and the
/// ServerHelloDone record (5 + 4).
const fn flight_len(leaf: &[u8], ca: &[u8], cert_request: bool) -> usize {
    5 + 4
        + 3
        + 3
        + leaf.len()
        + 3
        + ca.len()
        + 9
        + if cert_request { CERT_REQUEST.len() } else { 0 }
}

const CERT_FLIGHT_LEN: usize = flight_len(LEAF_DER, CA_DER, false);
const INSPECT_FLIGHT_LEN: usize = flight_len(INSPECT_LEAF_DER, INSPECT_CA_DER, false);
const MTLS_FLIGHT_LEN: usize = flight_len(LEAF_DER, CA_DER, true);

/// The bytes of [`Body::CertFlight`]: `leaf` and `ca` in a Certificate message, a
/// CertificateRequest if `cert_request`, ServerHelloDone.
fn cert_flight(leaf: &[u8], ca: &[u8], cert_request: bool) -> Vec<u8> {
    fn u24(v: usize) -> [u8; 3] {
        let b = (v as u32).to_be_bytes();
        [b[1], b[2], b[3]]
    }
    let len = flight_len(leaf, ca, cert_request);
    let list = 3 + leaf.len() + 3 + ca.len();
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0x16, 0x03, 0x03]);
    f.extend_from_slice(&((4 + 3 + list) as u16).to_be_bytes());
    f.push(0x0b);
    f.extend_from_slice(&u24(3 + list));
    f.extend_from_slice(&u24(list));
    for der in [leaf, ca] {
        f.extend_from_slice(&u24(der.len()));
        f.extend_from_slice(der);
    }
    if cert_request {
        f.extend_from_slice(&CERT_REQUEST);
    }
    f.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x0e, 0x00, 0x00, 0x00]);
    debug_assert_eq!(f.len(), len);
    f
}

/// Buffers every session reads from, made once.
struct Bufs {
    /// Pseudo-random bytes that encrypted records and bodies are copied from.
    noise: Vec<u8>,
    /// See [`cert_flight`]: the servers' chain, the middlebox's re-signed one, and
    /// the servers' chain with a CertificateRequest.
    cert_flight: Vec<u8>,
    inspect_flight: Vec<u8>,
    mtls_flight: Vec<u8>,
}

impl Bufs {
    fn new(seed: u64) -> Bufs {
        let mut noise = vec![0u8; NOISE_LEN];
        Rng::new(derive(seed, STREAM_NOISE, 0)).fill(&mut noise);
        Bufs {
            noise,
            cert_flight: cert_flight(LEAF_DER, CA_DER, false),
            inspect_flight: cert_flight(INSPECT_LEAF_DER, INSPECT_CA_DER, false),
            mtls_flight: cert_flight(LEAF_DER, CA_DER, true),
        }
    }
}

/// "HTTP/1.1 200 OK" with a Content-Length of `body`.
fn http_response(out: &mut [u8], body: u32) -> usize {
    let mut c = Cursor { buf: out, pos: 0 };
    c.put(b"HTTP/1.1 200 OK\r\nServer: synth\r\nContent-Type: application/octet-stream\r\nContent-Length: ");
    c.dec(body.into());
    c.put(b"\r\n\r\n");
    c.pos
}

/// Writes `srv<idx>.example.test` at the start of `out`; returns its length.
fn server_name(idx: u16, out: &mut [u8]) -> usize {
    let mut c = Cursor { buf: out, pos: 0 };
    c.put(b"srv");
    c.dec(idx.into());
    c.put(b".example.test");
    c.pos
}

/// Sequential writes into a buffer the caller made large enough.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn dec(&mut self, v: u64) {
        self.put(crate::json::decimal(v, &mut [0; 20]));
    }

    fn random(&mut self, seed: u64, n: usize) {
        let at = self.pos;
        Rng::new(seed).fill(&mut self.buf[at..at + n]);
        self.pos += n;
    }
}

/// The Internet checksum (RFC 1071) of `data`, starting from `acc` (a sum of 16- or
/// 32-bit big-endian words, e.g. a pseudo-header).
///
/// The data is summed as little-endian 32-bit words into a 64-bit sum (no carry is
/// lost below 2^32 words; the compiler vectorizes the loop) and the folded result is
/// byte-swapped: the one's complement sum is independent of byte order
/// (RFC 1071 section 2 (B)).
fn checksum(data: &[u8], acc: u64) -> u16 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u64;
    for c in &mut chunks {
        sum += u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 4];
        b[..rest.len()].copy_from_slice(rest);
        sum += u64::from(u32::from_le_bytes(b));
    }
    let be = u64::from(fold(sum).swap_bytes());
    !fold(acc + be)
}

/// Folds a sum of 16- and 32-bit words to 16 bits with end-around carry.
fn fold(sum: u64) -> u16 {
    let mut s = (sum >> 32) + (sum & 0xffff_ffff);
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s as u16
}

// ---------------------------------------------------------------------------------
// The generator

/// What every session needs from the configuration.
#[derive(Debug)]
struct Params {
    seed: u64,
    failure_share: f64,
    /// Host permutation: `host = (n * HOST_MUL + host_add) % CLIENT_HOSTS`.
    host_add: u64,
    /// Seeds the port offset of each host.
    port_salt: u64,
}

/// Odd and not a multiple of 127, so coprime with CLIENT_HOSTS = 2^9 * 127.
const HOST_MUL: u64 = 40_503;

impl Params {
    fn new(cfg: &SynthConfig) -> Params {
        let mut tuple_rng = Rng::new(derive(cfg.seed, STREAM_TUPLE, 0));
        Params {
            seed: cfg.seed,
            failure_share: cfg.failure_share,
            host_add: tuple_rng.below(CLIENT_HOSTS),
            port_salt: tuple_rng.next_u64(),
        }
    }

    /// The client host and port of session `n`: distinct for `n` below
    /// CLIENT_HOSTS * PORTS (1.8 billion). `n % CLIENT_HOSTS` picks the host through a
    /// permutation, `n / CLIENT_HOSTS` the port (with an offset per host).
    fn tuple(&self, n: u64) -> (u64, u16) {
        let n = n % (CLIENT_HOSTS * PORTS);
        let host = ((n % CLIENT_HOSTS) * HOST_MUL + self.host_add) % CLIENT_HOSTS;
        let port = (n / CLIENT_HOSTS + mix64(host ^ self.port_salt)) % PORTS;
        (host, (PORT_FIRST + port) as u16)
    }
}

/// When each of `cfg.concurrent` slots starts its first session: (time, slot).
fn first_schedule(cfg: &SynthConfig) -> BinaryHeap<Reverse<(u64, u32)>> {
    let mut slot_rng = Rng::new(derive(cfg.seed, STREAM_SLOT, 0));
    (0..cfg.concurrent.max(1))
        .map(|i| Reverse((cfg.start_ns.saturating_add(slot_rng.below(RAMP_NS)), i)))
        .collect()
}

struct Generator {
    params: Params,
    slots: Vec<Session>,
    /// (next packet time, slot), earliest first; ties go to the lower slot.
    schedule: BinaryHeap<Reverse<(u64, u32)>>,
    bufs: Bufs,
    frame: Vec<u8>,
    next_session: u64,
}

impl Generator {
    fn new(cfg: &SynthConfig) -> Generator {
        Generator {
            params: Params::new(cfg),
            slots: vec![Session::idle(); cfg.concurrent.max(1) as usize],
            schedule: first_schedule(cfg),
            bufs: Bufs::new(cfg.seed),
            frame: vec![0u8; MAX_FRAME],
            next_session: 0,
        }
    }

    /// Writes the next packet into `self.frame`; returns its time and length.
    fn next_packet(&mut self, summary: &mut SynthSummary) -> (u64, usize) {
        let mut top = self
            .schedule
            .peek_mut()
            .expect("one schedule entry per slot");
        let Reverse((ts, slot)) = *top;
        let session = &mut self.slots[slot as usize];
        if session.step == Step::Idle {
            session.start(&self.params, self.next_session);
            self.next_session += 1;
            summary.sessions += 1;
            match session.app {
                App::Tls13 => summary.tls13 += 1,
                App::Tls12 => summary.tls12 += 1,
                App::Http => {}
            }
        }
        let (len, next) = session.emit(ts, &mut self.frame, &self.bufs, summary);
        let next_ts = match next {
            Next::After(d) => ts.saturating_add(d),
            Next::Done(outcome) => {
                match outcome {
                    Outcome::Clean => summary.clean += 1,
                    Outcome::ResetByClient => summary.reset_by_client += 1,
                    Outcome::ResetByServer => summary.reset_by_server += 1,
                    Outcome::Rejected => summary.rejected += 1,
                    Outcome::NoResponse => summary.no_response += 1,
                    Outcome::CertRejected => summary.cert_rejected += 1,
                    Outcome::HandshakeFailure => summary.handshake_failure += 1,
                    Outcome::NoServerHello => summary.no_server_hello += 1,
                    Outcome::ClientCertRequired | Outcome::SniBlocked => {
                        unreachable!("a two-point outcome in the one-point generator")
                    }
                }
                session.step = Step::Idle;
                ts.saturating_add(session.rng.range(10 * NS_US, NS_MS))
            }
        };
        // Replacing the top in place sifts it down once (cheaper than pop and push).
        *top = Reverse((next_ts, slot));
        (ts, len)
    }
}

// ---------------------------------------------------------------------------------
// Two capture points around a TLS-inspecting middlebox

/// What [`write_two_point`] wrote.
///
/// `inside` and `outside` count what went into each file: `packets`, `bytes` and the
/// TLS messages and plaintext alerts (as [`SynthSummary`] does for one file); their
/// session and outcome fields stay 0. The session and outcome counts are here, once
/// per session; sessions started minus their sum were cut by the end of the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TwoPointSummary {
    pub inside: SynthSummary,
    pub outside: SynthSummary,
    pub sessions: u64,
    pub tls13: u64,
    pub tls12: u64,
    /// Closed by FIN both ways at both points (TLS intercepted, HTTP passed on).
    pub clean: u64,
    /// The client (pinning the real certificate) rejected the middlebox's re-signed
    /// one with a fatal alert and a FIN; the middlebox reset its leg to the server
    /// and answered the client's FIN with a forged RST.
    pub pin_rejected: u64,
    /// The server asked for a client certificate outside, the middlebox sent an
    /// empty one, the server answered with a fatal alert and a FIN; the middlebox
    /// reset the client with a forged RST.
    pub client_cert_required: u64,
    /// The middlebox dropped the ClientHello (never seen outside) and reset the
    /// client with a forged RST, and the server too for half of them.
    pub sni_blocked: u64,
}

/// The longest middlebox latency (one way); each session draws its own from 0.1 ms
/// to this.
const MB_DELAY_MAX: u64 = 2 * NS_MS;

const STREAM_MIDDLEBOX: u64 = 5;

/// Writes the same synthetic traffic as seen at two capture points, `inside` (the
/// client side of a transparent TLS-inspecting middlebox) and `outside` (the server
/// side), each as a pcap file like [`write_pcap`]'s, until `cfg.packets` frames went
/// into `inside` (`outside` gets the frames of the same sessions up to that point).
///
/// The middlebox keeps the 5-tuple and the TCP handshake (SYN, SYN-ACK and the ACK
/// pass unchanged, so clock-offset estimation has pairs), routes (TTL one lower past
/// it; its own packets have TTL 64, its RSTs IP ID 0) and takes `mb_delay` (0.1 to 2 ms per
/// session) each way: a client's packet appears outside that much after inside, a
/// server's inside that much after outside. It terminates TLS flight by flight:
/// inside the client gets the middlebox's ServerHello and, in TLS 1.2, a leaf with
/// the same names re-signed by "Synth Inspection CA"; outside the server gets the
/// middlebox's ClientHello (its own random and key share, other cipher suites so
/// another JA3/JA4) and sends its real chain. Sequence numbers of the two legs
/// part where their TLS bytes differ in length. Plain HTTP (port 80) passes on
/// unchanged. Of the TLS sessions, `cfg.failure_share` (split evenly) end in one of
/// the patterns of [`TwoPointSummary`] instead of a clean close.
pub fn write_two_point<I: Write, O: Write>(
    cfg: &SynthConfig,
    inside: I,
    outside: O,
) -> io::Result<TwoPointSummary> {
    let mut w_in = PcapWriter::new(BufWriter::with_capacity(1 << 20, inside), 1)?;
    let mut w_out = PcapWriter::new(BufWriter::with_capacity(1 << 20, outside), 1)?;
    let mut summary = TwoPointSummary::default();
    // Outside frames are made in inside order; each is at most MB_DELAY_MAX off, so
    // one older than that before the current time can be written.
    let mut pending: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut order = 0u64;
    if cfg.packets > 0 {
        let mut generator = PairGenerator::new(cfg);
        while summary.inside.packets < cfg.packets {
            let (ts, [len_in, len_out], ts_out) = generator.next_step(&mut summary);
            if len_in > 0 {
                w_in.write_frame(Timestamp(ts), &generator.frames[0][..len_in], len_in as u32)?;
                summary.inside.packets += 1;
                summary.inside.bytes += len_in as u64;
            }
            if len_out > 0 {
                let at = free.pop().unwrap_or_else(|| {
                    buffers.push(Vec::with_capacity(MAX_FRAME));
                    buffers.len() - 1
                });
                buffers[at].clear();
                buffers[at].extend_from_slice(&generator.frames[1][..len_out]);
                pending.push(Reverse((ts_out, order, at)));
                order += 1;
                summary.outside.packets += 1;
                summary.outside.bytes += len_out as u64;
            }
            while let Some(&Reverse((t, _, at))) = pending.peek() {
                if t.saturating_add(MB_DELAY_MAX) > ts {
                    break;
                }
                pending.pop();
                let frame = &buffers[at];
                w_out.write_frame(Timestamp(t), frame, frame.len() as u32)?;
                free.push(at);
            }
        }
    }
    while let Some(Reverse((t, _, at))) = pending.pop() {
        let frame = &buffers[at];
        w_out.write_frame(Timestamp(t), frame, frame.len() as u32)?;
    }
    w_in.into_inner().flush()?;
    w_out.into_inner().flush()?;
    Ok(summary)
}

/// One session as written at both points: `legs[0]` inside, `legs[1]` outside. The
/// two are the same session machine with the same random stream, so they take the
/// same steps at the same times; they differ in what they write (TLS bytes, TTLs,
/// MACs), and where the middlebox acts instead of passing a message on
/// ([`Session::divert`]), after which one of them may end before the other.
#[derive(Clone, Debug)]
struct Pair {
    legs: [Session; 2],
    alive: [bool; 2],
}

struct PairGenerator {
    params: Params,
    failure_share: f64,
    slots: Vec<Pair>,
    schedule: BinaryHeap<Reverse<(u64, u32)>>,
    bufs: Bufs,
    frames: [Vec<u8>; 2],
    next_session: u64,
}

impl PairGenerator {
    fn new(cfg: &SynthConfig) -> PairGenerator {
        let idle = Pair {
            legs: [Session::idle(), Session::idle()],
            alive: [false; 2],
        };
        PairGenerator {
            // The sessions' own failure patterns are the one-point ones: none here.
            params: Params {
                failure_share: 0.0,
                ..Params::new(cfg)
            },
            failure_share: cfg.failure_share,
            slots: vec![idle; cfg.concurrent.max(1) as usize],
            schedule: first_schedule(cfg),
            bufs: Bufs::new(cfg.seed),
            frames: [vec![0u8; MAX_FRAME], vec![0u8; MAX_FRAME]],
            next_session: 0,
        }
    }

    /// Session `n` at both points: the one-point session `n` (tuple, timing, TLS
    /// version), with a middlebox outcome and latency of its own.
    fn start(params: &Params, failure_share: f64, pair: &mut Pair, n: u64) {
        let inside = &mut pair.legs[0];
        inside.start(params, n);
        let mut rng = Rng::new(derive(params.seed, STREAM_MIDDLEBOX, n));
        let mb_delay = rng.range(100 * NS_US, MB_DELAY_MAX);
        inside.outcome = if inside.app != App::Http && rng.chance(failure_share) {
            match rng.below(3) {
                0 => Outcome::CertRejected,
                1 => Outcome::ClientCertRequired,
                _ => Outcome::SniBlocked,
            }
        } else {
            Outcome::Clean
        };
        inside.reset_both = rng.below(2) == 0;
        inside.leg = Leg::Inside;
        inside.mb_delay = mb_delay;
        // The server is as far from the middlebox as before; the client's round
        // trip now includes the middlebox both ways.
        inside.rtt += 2 * mb_delay;
        let mut outside = inside.clone();
        outside.leg = Leg::Outside;
        // The middlebox's own randoms and keys on its leg to the server.
        outside.tls_key ^= 0x6d62_6f78_6c65_6721;
        outside.salt ^= 0x2b2b_2b2b;
        pair.legs[1] = outside;
        pair.alive = [true; 2];
    }

    /// Runs the next step of the earliest session: its time (inside), the length of
    /// the frame written for each point (0: none) in `self.frames`, and the time of
    /// the outside one.
    fn next_step(&mut self, summary: &mut TwoPointSummary) -> (u64, [usize; 2], u64) {
        let mut top = self
            .schedule
            .peek_mut()
            .expect("one schedule entry per slot");
        let Reverse((ts, slot)) = *top;
        let pair = &mut self.slots[slot as usize];
        if pair.legs[0].step == Step::Idle {
            PairGenerator::start(&self.params, self.failure_share, pair, self.next_session);
            self.next_session += 1;
            summary.sessions += 1;
            match pair.legs[0].app {
                App::Tls13 => summary.tls13 += 1,
                App::Tls12 => summary.tls12 += 1,
                App::Http => {}
            }
        }
        let mut lens = [0; 2];
        let mut next = None;
        for (i, leg) in pair.legs.iter_mut().enumerate() {
            if !pair.alive[i] {
                continue;
            }
            let counts = if i == 0 {
                &mut summary.inside
            } else {
                &mut summary.outside
            };
            let (len, step_next) = leg.emit(ts, &mut self.frames[i], &self.bufs, counts);
            lens[i] = len;
            match step_next {
                Next::After(d) => {
                    assert!(
                        next.is_none_or(|n| n == d),
                        "the legs of session {} parted",
                        leg.number
                    );
                    next = Some(d);
                }
                Next::Done(_) => pair.alive[i] = false,
            }
        }
        let inside = &pair.legs[0];
        // A client's packet (or one the middlebox sends toward the server) crosses the
        // middlebox after inside; a server's before.
        let from_client = self.frames[1][26..30] == inside.client_ip;
        let ts_out = if from_client {
            ts + inside.mb_delay
        } else {
            ts - inside.mb_delay
        };
        let next_ts = match next {
            Some(d) => ts.saturating_add(d),
            None => {
                match inside.outcome {
                    Outcome::Clean => summary.clean += 1,
                    Outcome::CertRejected => summary.pin_rejected += 1,
                    Outcome::ClientCertRequired => summary.client_cert_required += 1,
                    Outcome::SniBlocked => summary.sni_blocked += 1,
                    other => unreachable!("{other:?} at two points"),
                }
                let gap = pair.legs[0].rng.range(10 * NS_US, NS_MS);
                pair.legs[0].step = Step::Idle;
                ts.saturating_add(gap)
            }
        };
        *top = Reverse((next_ts, slot));
        (ts, lens, ts_out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    use super::*;
    use crate::capture::CaptureReader;

    fn config(seed: u64, packets: u64) -> SynthConfig {
        SynthConfig {
            seed,
            packets,
            concurrent: 300,
            failure_share: 0.3,
            ..SynthConfig::default()
        }
    }

    fn generate(cfg: &SynthConfig) -> (Vec<u8>, SynthSummary) {
        let mut out = Vec::new();
        let summary = write_pcap(cfg, &mut out).unwrap();
        (out, summary)
    }

    /// (client ip, client port): unique per session.
    type Key = ([u8; 4], u16);

    /// One decoded TCP/IPv4 frame.
    struct Seg<'a> {
        ts: u64,
        from_client: bool,
        key: Key,
        server_port: u16,
        ttl: u8,
        ip_id: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        tcp_header_len: usize,
        payload: &'a [u8],
    }

    /// Decodes every frame with etherparse, checking both checksums on the way.
    fn decode(file: &[u8]) -> Vec<Seg<'_>> {
        let mut segs = Vec::new();
        for frame in CaptureReader::new(file).unwrap() {
            let frame = frame.unwrap();
            assert_eq!(frame.wire_len as usize, frame.data.len());
            let p = SlicedPacket::from_ethernet(frame.data).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            let h = ip.header();
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "IPv4 checksum"
            );
            assert!(h.dont_fragment());
            assert_eq!(h.ihl(), 5);
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            assert_eq!(
                tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap(),
                tcp.checksum(),
                "TCP checksum"
            );
            let from_client = h.source()[..2] == [198, 18];
            let (key, server_port) = if from_client {
                ((h.source(), tcp.source_port()), tcp.destination_port())
            } else {
                assert_eq!(h.source()[..2], [198, 19]);
                ((h.destination(), tcp.destination_port()), tcp.source_port())
            };
            segs.push(Seg {
                ts: frame.ts.0,
                from_client,
                key,
                server_port,
                ttl: h.ttl(),
                ip_id: h.identification(),
                flags: tcp.header_slice()[13],
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                tcp_header_len: tcp.header_len(),
                payload: tcp.payload(),
            });
        }
        segs
    }

    #[test]
    fn test_same_seed_same_bytes() {
        let (a, sa) = generate(&config(7, 20_000));
        let (b, sb) = generate(&config(7, 20_000));
        assert_eq!(sa, sb);
        assert!(a == b, "same seed, different bytes");
        let (c, _) = generate(&config(8, 20_000));
        assert!(a != c, "different seeds, same bytes");
    }

    fn generate_two_point(cfg: &SynthConfig) -> (Vec<u8>, Vec<u8>, TwoPointSummary) {
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        let summary = write_two_point(cfg, &mut inside, &mut outside).unwrap();
        (inside, outside, summary)
    }

    #[test]
    fn test_two_point_same_seed_same_bytes() {
        let cfg = config(7, 20_000);
        let (a_in, a_out, sa) = generate_two_point(&cfg);
        let (b_in, b_out, sb) = generate_two_point(&cfg);
        assert_eq!(sa, sb);
        assert!(a_in == b_in && a_out == b_out, "same seed, different bytes");
        let (c_in, c_out, _) = generate_two_point(&config(8, 20_000));
        assert!(
            a_in != c_in && a_out != c_out,
            "different seeds, same bytes"
        );
        assert_eq!(sa.inside.packets, 20_000);
        let (e_in, e_out, s) = generate_two_point(&config(1, 0));
        assert_eq!(
            (e_in.len(), e_out.len(), s),
            (24, 24, TwoPointSummary::default())
        );
    }

    /// The two files are one traffic seen on both sides of the middlebox: the TCP
    /// handshake passes unchanged but for the TTL, one hop lower past the middlebox,
    /// and the session's latency (the same both ways, 0.1 to 2 ms); the only packets
    /// with TTL 64 from a server inside or 63 + 1 from a client outside are the
    /// middlebox's RSTs (IP ID 0, no options) and its FINs toward a server that wanted a
    /// client certificate; the outcomes agree with the summary.
    #[test]
    fn test_two_point_legs() {
        let cfg = SynthConfig {
            failure_share: 0.6,
            ..config(5, 40_000)
        };
        let (inside, outside, s) = generate_two_point(&cfg);
        let (segs_in, segs_out) = (decode(&inside), decode(&outside));
        assert_eq!(segs_in.len() as u64, s.inside.packets);
        assert_eq!(segs_out.len() as u64, s.outside.packets);
        for segs in [&segs_in, &segs_out] {
            assert!(
                segs.windows(2).all(|w| w[0].ts <= w[1].ts),
                "time goes back"
            );
        }
        #[derive(Default)]
        struct Leg {
            syn: Option<(u64, u32)>,
            synack: Option<(u64, u32, u32)>,
            forged: u32,
            mb_fin: bool,
            client_payload: bool,
            server_payload: bool,
        }
        let mut legs: HashMap<Key, [Leg; 2]> = HashMap::new();
        for (i, segs) in [&segs_in, &segs_out].into_iter().enumerate() {
            for seg in segs {
                let leg = &mut legs.entry(seg.key).or_default()[i];
                let own_ttl = (seg.from_client && i == 1) || (!seg.from_client && i == 0);
                if seg.ttl == 64 && own_ttl && seg.flags == FIN | ACK {
                    // Its FIN closing the leg to a server that wanted a certificate.
                    assert!(seg.from_client && i == 1);
                    leg.mb_fin = true;
                    continue;
                }
                if seg.ttl == 64 && own_ttl {
                    assert_eq!(
                        (seg.flags, seg.ip_id, seg.tcp_header_len),
                        (RST | ACK, 0, 20)
                    );
                    leg.forged += 1;
                    continue;
                }
                let want = match (seg.from_client, i) {
                    (true, 0) => 64,
                    (true, _) => 63,
                    (false, 0) => seg.ttl.clamp(54, 58),
                    (false, _) => seg.ttl.clamp(55, 59),
                };
                assert_eq!(seg.ttl, want);
                if seg.flags == SYN {
                    leg.syn = Some((seg.ts, seg.seq));
                } else if seg.flags == SYN | ACK {
                    leg.synack = Some((seg.ts, seg.seq, seg.ack));
                }
                leg.client_payload |= seg.from_client && !seg.payload.is_empty();
                leg.server_payload |= !seg.from_client && !seg.payload.is_empty();
            }
        }
        let (mut sni, mut pin, mut mtls, mut pin_cut, mut mtls_closed) = (0, 0, 0, 0, 0);
        for [i, o] in legs.values() {
            let (Some(syn_in), Some(syn_out)) = (i.syn, o.syn) else {
                panic!("a session not seen at both points")
            };
            let lag = syn_out.0 - syn_in.0;
            assert!((100 * NS_US..=MB_DELAY_MAX).contains(&lag), "lag {lag}");
            assert_eq!(syn_in.1, syn_out.1);
            if let (Some(a), Some(b)) = (i.synack, o.synack) {
                assert_eq!((a.1, a.2), (b.1, b.2));
                assert_eq!(a.0 - b.0, lag, "the same latency both ways");
            }
            match (i.forged, o.forged) {
                (0, 0) => {}
                // A blocked SNI: the ClientHello inside, nothing outside.
                (1, _) if !o.client_payload => {
                    assert!(i.client_payload && !i.server_payload && o.forged <= 1);
                    sni += 1;
                }
                // A pinning client: the middlebox resets both legs (the client's leg
                // after its FIN, unless the files ended first).
                (1, 1) => pin += 1,
                (0, 1) => pin_cut += 1,
                // A client certificate required: the server's alert outside.
                (1, 0) => {
                    assert!(o.server_payload);
                    mtls += 1;
                    mtls_closed += u64::from(o.mb_fin);
                }
                other => panic!("forged RSTs {other:?}"),
            }
        }
        assert_eq!(legs.len() as u64, s.sessions);
        // A session cut by the end of the files: a client certificate required may
        // already have its forged RST (the server's leg goes on); a pinning client's
        // only the one toward the server.
        let ended = s.clean + s.pin_rejected + s.client_cert_required + s.sni_blocked;
        assert_eq!((sni, pin), (s.sni_blocked, s.pin_rejected));
        assert!(mtls >= s.client_cert_required);
        assert!(mtls_closed >= s.client_cert_required && mtls_closed <= mtls);
        assert!(mtls - s.client_cert_required + pin_cut <= s.sessions - ended);
        assert!(s.sni_blocked > 10 && s.pin_rejected > 10 && s.client_cert_required > 10);
        assert!(s.clean > s.sessions / 4);
    }

    #[test]
    fn test_exact_packet_count() {
        let (file, s) = generate(&config(1, 0));
        assert_eq!(file.len(), 24);
        assert_eq!(s, SynthSummary::default());
        let (file, s) = generate(&SynthConfig {
            packets: 1,
            concurrent: 0,
            ..SynthConfig::default()
        });
        assert_eq!((s.packets, s.sessions), (1, 1));
        let segs = decode(&file);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].flags, SYN);
        let (file, s) = generate(&config(3, 12_345));
        assert_eq!(s.packets, 12_345);
        assert_eq!(CaptureReader::new(&file).unwrap().count(), 12_345);
    }

    #[derive(Default)]
    struct Track {
        syn_ts: Vec<u64>,
        synack: bool,
        rst_client: bool,
        rst_server: bool,
        fin_client: bool,
        fin_server: bool,
        last_ack: bool,
        /// Next sequence number per side (client, server), once known.
        next: [Option<u32>; 2],
        ip_id: [Option<u16>; 2],
        ended: bool,
        client_payload: bool,
        server_payload: bool,
        /// A plaintext alert, or TLS 1.3's 19-byte record where the Finished was due.
        client_alert: bool,
        server_alert: bool,
    }

    /// Replays the capture session by session: counts, timestamps, checksums (in
    /// `decode`), sequence and acknowledgment numbers, IP IDs, TTLs and outcomes all
    /// agree with the model and the summary.
    #[test]
    fn test_summary_matches_capture() {
        let cfg = SynthConfig {
            packets: 60_000,
            concurrent: 200,
            failure_share: 0.4,
            seed: 5,
            ..SynthConfig::default()
        };
        let (file, s) = generate(&cfg);
        let segs = decode(&file);
        assert_eq!(segs.len() as u64, s.packets);
        let frame_bytes: u64 = CaptureReader::new(&file)
            .unwrap()
            .map(|f| f.unwrap().data.len() as u64)
            .sum();
        assert_eq!(frame_bytes, s.bytes);
        assert!(segs[0].ts >= cfg.start_ns && segs[0].ts < cfg.start_ns + RAMP_NS);
        assert!(
            segs.windows(2).all(|w| w[0].ts <= w[1].ts),
            "timestamps decrease"
        );

        let mut tracks: HashMap<Key, Track> = HashMap::new();
        let mut ports = HashMap::new();
        for seg in &segs {
            *ports.entry(seg.server_port).or_insert(0u64) += 1;
            let t = tracks.entry(seg.key).or_default();
            assert!(!t.ended, "4-tuple reused after its session ended");
            let side = usize::from(!seg.from_client);
            assert_eq!(
                seg.ttl,
                if seg.from_client {
                    64
                } else {
                    seg.ttl.clamp(55, 59)
                }
            );
            if let Some(id) = t.ip_id[side] {
                assert_eq!(
                    seg.ip_id,
                    id.wrapping_add(1),
                    "IP ID must increment per sender"
                );
            }
            t.ip_id[side] = Some(seg.ip_id);
            let syn = seg.flags & SYN != 0;
            let rst = seg.flags & RST != 0;
            let fin = seg.flags & FIN != 0;
            match (seg.from_client, syn, rst) {
                (true, true, _) => {
                    assert_eq!(seg.flags, SYN);
                    assert_eq!(seg.tcp_header_len, 40);
                    assert!(!t.synack && t.syn_ts.len() < 3);
                    t.syn_ts.push(seg.ts);
                    t.next[0] = Some(seg.seq.wrapping_add(1));
                    continue;
                }
                (false, true, _) => {
                    assert_eq!(seg.flags, SYN | ACK);
                    assert_eq!(seg.tcp_header_len, 40);
                    assert_eq!(Some(seg.ack), t.next[0]);
                    t.synack = true;
                    t.next[1] = Some(seg.seq.wrapping_add(1));
                    continue;
                }
                (false, false, true) if !t.synack => {
                    // Rejected: RST/ACK, seq 0, ack = SYN + 1, no options.
                    assert_eq!(
                        (seg.flags, seg.seq, Some(seg.ack), seg.tcp_header_len),
                        (RST | ACK, 0, t.next[0], 20)
                    );
                    t.rst_server = true;
                    t.ended = true;
                    continue;
                }
                _ => {}
            }
            assert!(t.synack, "data or control before the handshake");
            if seg.from_client {
                t.client_payload |= !seg.payload.is_empty();
                t.client_alert |= seg.payload.starts_with(&[0x15, 3, 3, 0, 2, 2])
                    || seg
                        .payload
                        .starts_with(&[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0, 19]);
            } else {
                t.server_payload |= !seg.payload.is_empty();
                t.server_alert |= seg.payload == [0x15, 3, 3, 0, 2, 2, 40];
            }
            assert_eq!(seg.tcp_header_len, 32);
            assert!(seg.payload.len() <= SEG_PAYLOAD);
            assert_eq!(Some(seg.seq), t.next[side], "sequence gap");
            assert_eq!(Some(seg.ack), t.next[1 - side], "ACK of unseen or old data");
            assert!(seg.flags & ACK != 0);
            t.next[side] = Some(
                seg.seq
                    .wrapping_add(seg.payload.len() as u32 + u32::from(fin)),
            );
            if rst {
                assert!(seg.payload.is_empty());
                if seg.from_client {
                    t.rst_client = true
                } else {
                    t.rst_server = true
                }
                t.ended = true;
            } else if fin {
                if seg.from_client {
                    t.fin_client = true
                } else {
                    t.fin_server = true
                }
            } else if t.fin_client && t.fin_server {
                assert!(seg.payload.is_empty());
                t.last_ack = true;
                t.ended = true;
            }
        }

        let mut seen = SynthSummary {
            packets: s.packets,
            bytes: s.bytes,
            tls13: s.tls13,
            tls12: s.tls12,
            client_hellos: s.client_hellos,
            server_hellos: s.server_hellos,
            certificates: s.certificates,
            plaintext_alerts: s.plaintext_alerts,
            ..SynthSummary::default()
        };
        for t in tracks.values() {
            seen.sessions += 1;
            if t.rst_server && !t.synack {
                seen.rejected += 1;
            } else if t.server_alert && t.last_ack {
                seen.handshake_failure += 1;
            } else if t.client_alert && (t.last_ack || t.rst_client) {
                seen.cert_rejected += 1;
            } else if t.client_payload && !t.server_payload && (t.last_ack || t.rst_client) {
                seen.no_server_hello += 1;
            } else if t.rst_server {
                seen.reset_by_server += 1;
            } else if t.rst_client {
                seen.reset_by_client += 1;
            } else if t.last_ack {
                seen.clean += 1;
            } else if t.syn_ts.len() == 3 {
                // SYN retransmitted 1 s and 3 s after the first.
                assert_eq!(
                    (t.syn_ts[1] - t.syn_ts[0], t.syn_ts[2] - t.syn_ts[0]),
                    (NS_S, 3 * NS_S)
                );
                seen.no_response += 1;
            }
        }
        assert_eq!(seen, s);
        // Every pattern occurs, most sessions close cleanly, port 443 dominates.
        assert!(s.clean > s.sessions / 2);
        assert!(
            s.reset_by_client > 0 && s.reset_by_server > 0 && s.rejected > 0 && s.no_response > 0
        );
        assert!(s.cert_rejected > 0 && s.handshake_failure > 0 && s.no_server_hello > 0);
        // About 30 % of TLS sessions are TLS 1.2.
        let share12 = s.tls12 as f64 / (s.tls12 + s.tls13) as f64;
        assert!((0.25..0.35).contains(&share12), "TLS 1.2 share {share12}");
        assert!(ports[&443] > ports[&80] && ports[&80] > 0 && ports[&8443] > 0);
    }

    /// The TLS byte streams are made of well-formed records: ClientHello first,
    /// ServerHello and ChangeCipherSpec first from the server, the client's Finished a
    /// 53-byte record, and record boundaries consistent across segments.
    #[test]
    fn test_tls_streams_are_records() {
        let (file, _) = generate(&config(11, 30_000));
        let mut streams: HashMap<(Key, bool), Vec<u8>> = HashMap::new();
        let mut closed = HashSet::new();
        for seg in decode(&file) {
            if seg.server_port == 80 {
                continue;
            }
            streams
                .entry((seg.key, seg.from_client))
                .or_default()
                .extend_from_slice(seg.payload);
            if seg.flags & FIN != 0 {
                closed.insert((seg.key, seg.from_client));
            }
        }
        let (mut hellos, mut alerts, mut certs) = (0, 0, 0);
        for ((key, from_client), bytes) in &streams {
            let mut records = Vec::new();
            let mut at = 0;
            while at + 5 <= bytes.len() {
                let (ty, ver, len) = (
                    bytes[at],
                    [bytes[at + 1], bytes[at + 2]],
                    usize::from(u16::from_be_bytes([bytes[at + 3], bytes[at + 4]])),
                );
                assert!(matches!(ty, 20..=23), "record type {ty}");
                assert!(ver == [3, 3] || (ver == [3, 1] && at == 0));
                assert!(len <= 16384 + 256);
                records.push((ty, len));
                at += 5 + len;
            }
            if closed.contains(&(*key, *from_client)) {
                assert_eq!(at, bytes.len(), "stream ends inside a record");
            }
            if bytes.is_empty() {
                continue;
            }
            // TLS 1.2 clients do not send supported_versions (0x002b).
            let tls12 = !streams[&(*key, true)]
                .windows(5)
                .any(|w| w == [0x00, 0x2b, 0x00, 0x05, 0x04]);
            if *from_client {
                assert_eq!(records[0].0, 22);
                assert_eq!(bytes[5], 1, "ClientHello first");
                let sni = b"srv";
                assert!(bytes.windows(3).any(|w| w == sni));
                match records.get(1..) {
                    None | Some([]) => {}
                    // A rejected certificate.
                    Some([(21, 2)]) if tls12 => alerts += 1,
                    Some([(20, 1), (23, 19)]) if !tls12 => alerts += 1,
                    Some(rest) if tls12 => {
                        // ClientKeyExchange (RSA-2048), CCS, Finished (GCM), then data.
                        assert_eq!(rest[..3], [(22, 262), (20, 1), (22, 40)]);
                        assert!(rest[3..].iter().all(|r| r.0 == 23));
                    }
                    Some(rest) => {
                        assert_eq!(rest[..2], [(20, 1), (23, 53)], "Finished");
                        assert!(rest[2..].iter().all(|r| r.0 == 23));
                    }
                }
                hellos += 1;
            } else if records[0] == (21, 2) {
                assert_eq!(bytes, &[0x15, 3, 3, 0, 2, 2, 40], "handshake_failure alone");
                alerts += 1;
            } else if tls12 {
                assert_eq!(records[0], (22, 80));
                assert_eq!(bytes[5], 2, "ServerHello first");
                assert_eq!(bytes[9..11], [3, 3]);
                if records.len() > 1 {
                    let cert = &bytes[85..85 + 5 + records[1].1];
                    assert_eq!(cert[5], 11, "Certificate");
                    let leaf_len = usize::from(cert[12]) << 16
                        | usize::from(cert[13]) << 8
                        | usize::from(cert[14]);
                    let leaf = &cert[15..15 + leaf_len];
                    assert_eq!(leaf, LEAF_DER);
                    assert_eq!(records[2], (22, 4), "ServerHelloDone");
                    certs += 1;
                }
                if records.len() > 3 {
                    assert_eq!(records[3..5], [(20, 1), (22, 40)]);
                    assert!(records[5..].iter().all(|r| r.0 == 23));
                }
            } else {
                assert_eq!(records[0], (22, 122));
                assert_eq!(bytes[5], 2, "ServerHello first");
                assert_eq!(records[1], (20, 1));
                assert!(records[2..].iter().all(|r| r.0 == 23 && r.1 >= 17));
            }
        }
        assert!(hellos > 100 && alerts > 10 && certs > 10);
    }

    /// The embedded chain is what x509-parser (tapwatch's certificate reader) accepts:
    /// the leaf names `*.example.test` and is issued by the CA.
    #[test]
    fn test_embedded_certificates_parse() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let (rest, leaf) = X509Certificate::from_der(LEAF_DER).unwrap();
        assert!(rest.is_empty());
        let (_, ca) = X509Certificate::from_der(CA_DER).unwrap();
        assert!(leaf.subject().to_string().contains("*.example.test"));
        assert_eq!(leaf.issuer(), ca.subject());
        assert!(ca.is_ca() && !leaf.is_ca());
        assert_eq!(cert_flight(LEAF_DER, CA_DER, false).len(), CERT_FLIGHT_LEN);
    }

    #[test]
    fn test_checksum_rfc1071_vector() {
        let ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&ip, 0), 0xb861);
        // Odd length: the last byte is the high half of a word.
        assert_eq!(checksum(&[0x01], 0), !0x0100);
        assert_eq!(
            checksum(&[0xff; 9], 0),
            !0xffffu16.wrapping_add(0xff00).wrapping_add(1)
        );
    }

    #[test]
    fn test_client_tuples_distinct() {
        let cfg = SynthConfig::default();
        let params = Generator::new(&SynthConfig {
            concurrent: 1,
            ..cfg
        })
        .params;
        let mut seen = HashSet::new();
        for n in 0..3 * CLIENT_HOSTS + 17 {
            let (host, port) = params.tuple(n);
            assert!(host < CLIENT_HOSTS && (32768..=60999).contains(&port));
            assert!(seen.insert((host, port)), "tuple of session {n} reused");
        }
        assert_eq!(params.tuple(5), params.tuple(5 + CLIENT_HOSTS * PORTS));
    }

    #[test]
    fn test_tls_records_len_valid() {
        for want in [
            0,
            1,
            21,
            22,
            100,
            TLS_FULL_RECORD,
            TLS_FULL_RECORD + 1,
            TLS_FULL_RECORD + 21,
            3 * TLS_FULL_RECORD + 5,
        ] {
            let len = tls_records_len(want);
            let rest = len % TLS_FULL_RECORD;
            assert!(
                len >= want && (rest == 0 || rest >= TLS_MIN_RECORD),
                "{want} -> {len}"
            );
        }
    }
}
