//! Joining the legs a proxy re-originated (another 5-tuple outside): what is joined,
//! what is never joined, and the bounds. Synthetic plain-TCP sessions (no SNI)
//! through a real worker, then through the pairer.

use engine::correlate::CorrelateConfig;
use engine::flow::Endpoint;
use engine::pairing::{Confidence, PairConfig, Pairer};
use engine::session::PointId;
use engine::time::{Nanos, Timestamp};
use engine::verdict::Record;
use engine::wire::{Packet, TcpFlags};
use engine::worker::{PacketMeta, Worker, WorkerConfig};

const INSIDE: PointId = PointId(0);
const OUTSIDE: PointId = PointId(1);
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// A complete short TCP session (SYN, SYN-ACK, ACK, data both ways, FINs) from
/// `client` to `server`, seen at `at`, starting at `ms`.
fn session(at: PointId, client: Endpoint, server: Endpoint, ms: u64) -> Vec<(u64, PacketMeta)> {
    let steps: [(u64, bool, u8, u32); 7] = [
        (0, true, TcpFlags::SYN, 0),
        (1, false, TcpFlags::SYN | TcpFlags::ACK, 0),
        (2, true, TcpFlags::ACK | TcpFlags::PSH, 50),
        (3, false, TcpFlags::ACK | TcpFlags::PSH, 80),
        (4, true, TcpFlags::FIN | TcpFlags::ACK, 0),
        (5, false, TcpFlags::FIN | TcpFlags::ACK, 0),
        (6, true, TcpFlags::ACK, 0),
    ];
    steps
        .iter()
        .map(|&(dt, from_client, flags, len)| {
            let (src, dst) = if from_client {
                (client, server)
            } else {
                (server, client)
            };
            let pkt = Packet {
                src,
                dst,
                seq: 1000,
                flags: TcpFlags(flags),
                ttl: 64,
                payload_len: len,
                wire_len: 54 + len,
                ..Packet::default()
            };
            let ts = ms + dt;
            (ts, PacketMeta::new(Timestamp(T0 + ts * MS), at, pkt))
        })
        .collect()
}

fn inside_client(port: u16) -> Endpoint {
    Endpoint::v4([198, 18, 5, 1], port)
}
fn proxy(port: u16) -> Endpoint {
    Endpoint::v4([198, 18, 6, 1], port)
}
fn server(port: u16) -> Endpoint {
    Endpoint::v4([198, 18, 6, 2], port)
}

/// Replays the sessions through one two-point worker and the pairer.
fn run(sessions: Vec<Vec<(u64, PacketMeta)>>, cfg: PairConfig) -> (Vec<Record>, Pairer) {
    let mut packets: Vec<(u64, PacketMeta)> = sessions.into_iter().flatten().collect();
    packets.sort_by_key(|(t, _)| *t);
    let mut w = Worker::new(WorkerConfig {
        points: 2,
        ..WorkerConfig::default()
    });
    let mut pairer = Pairer::new(cfg);
    let mut out = Vec::new();
    for (_, m) in &packets {
        w.process(m, &[], &mut |r| pairer.push(&r, &mut |x| out.push(*x)));
        // One worker: its clock is how far every worker has got.
        pairer.advance(w.now(), &mut |x| out.push(*x));
    }
    w.finish(&mut |r| pairer.push(&r, &mut |x| out.push(*x)));
    pairer.finish(&mut |x| out.push(*x));
    (out, pairer)
}

fn two_points() -> PairConfig {
    PairConfig {
        points: 2,
        correlate: CorrelateConfig::default(),
        ..PairConfig::default()
    }
}

#[test]
fn a_proxy_leg_is_joined_with_medium_confidence_without_sni() {
    let (out, p) = run(
        vec![
            session(INSIDE, inside_client(40_001), server(80), 0),
            // The proxy connects 1 ms after the client's SYN, from its own address.
            session(OUTSIDE, proxy(50_001), server(80), 1),
        ],
        two_points(),
    );
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    let pairing = r.pairing.expect("joined");
    assert_eq!(pairing.confidence, Confidence::Medium);
    assert_eq!(pairing.legs().next().unwrap().client, proxy(50_001));
    assert_eq!(r.key.endpoint(r.session.client), inside_client(40_001));
    assert_eq!(r.points().count(), 2, "both points in the record");
    assert_eq!(p.stats.joined, 1);
}

#[test]
fn two_clients_of_one_server_at_once_are_never_joined() {
    // Two client sessions to the same server, open at the same time, and two proxy
    // connections: each proxy leg fits both clients, so neither is joined.
    let (out, p) = run(
        vec![
            session(INSIDE, inside_client(40_001), server(80), 0),
            session(INSIDE, inside_client(40_002), server(80), 0),
            session(OUTSIDE, proxy(50_001), server(80), 1),
            session(OUTSIDE, proxy(50_002), server(80), 1),
        ],
        two_points(),
    );
    assert_eq!(out.len(), 4, "{out:#?}");
    assert!(out.iter().all(|r| r.pairing.is_none()));
    assert!(p.stats.ambiguous > 0);
    assert_eq!(p.stats.joined, 0);
}

#[test]
fn legs_to_another_server_or_outside_the_session_are_not_joined() {
    let (out, _) = run(
        vec![
            session(INSIDE, inside_client(40_001), server(80), 0),
            // Another server port.
            session(OUTSIDE, proxy(50_001), server(8080), 1),
            // The right server, but starting after the client's session ended.
            session(OUTSIDE, proxy(50_002), server(80), 500),
        ],
        two_points(),
    );
    assert_eq!(out.len(), 3, "{out:#?}");
    assert!(out.iter().all(|r| r.pairing.is_none()));
}

#[test]
fn one_point_runs_and_two_point_sessions_pass_straight_through() {
    // The same 5-tuple at both points: one record, no pairing.
    let mut both = session(INSIDE, inside_client(40_001), server(80), 0);
    both.extend(session(OUTSIDE, inside_client(40_001), server(80), 0));
    let (out, p) = run(vec![both], two_points());
    assert_eq!(out.len(), 1);
    assert!(out[0].pairing.is_none());
    assert_eq!(p.stats.peak_held, 0, "nothing held");
    // A run with one point holds nothing either.
    let (out, p) = run(
        vec![session(INSIDE, inside_client(40_001), server(80), 0)],
        PairConfig::default(),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(p.stats.peak_held, 0);
}

#[test]
fn the_hold_is_bounded_and_overflow_counted() {
    // 50 unrelated client sessions held at once with room for 8.
    let sessions = (0..50)
        .map(|i| session(INSIDE, inside_client(40_000 + i), server(80 + i), 0))
        .collect();
    let cfg = PairConfig {
        max_held: 8,
        window: Nanos::from_secs(60),
        ..two_points()
    };
    let (out, p) = run(sessions, cfg);
    assert_eq!(out.len(), 50, "every record still written");
    assert!(p.stats.peak_held <= 8);
    assert_eq!(p.stats.overflow, 42);
}

// Through the whole pipeline (reader, workers, rings, exporter): what the pairer
// must know of sessions still open.

/// One TCP segment of a synthetic two-point capture.
#[derive(Clone, Copy)]
struct Seg {
    ms: u64,
    at: PointId,
    src: Endpoint,
    dst: Endpoint,
    flags: u8,
    len: usize,
}

/// A plain-TCP session (no TLS, so no SNI) from `client` to `server` at `at`:
/// handshake at `start` ms, a request and an answer, then one more request every
/// `every` ms until `until`; then FINs from both ends, or from the client only
/// (`half`: the server never answers it, so the session ends by the idle timeout),
/// or no close at all (`None`).
fn tcp(
    at: PointId,
    client: Endpoint,
    server: Endpoint,
    start: u64,
    until: u64,
    close: Option<bool>,
) -> Vec<Seg> {
    let s = |ms, from_client: bool, flags: u8, len| {
        let (src, dst) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        Seg {
            ms,
            at,
            src,
            dst,
            flags,
            len,
        }
    };
    let mut v = vec![
        s(start, true, TcpFlags::SYN, 0),
        s(start + 1, false, TcpFlags::SYN | TcpFlags::ACK, 0),
        s(start + 2, true, TcpFlags::ACK | TcpFlags::PSH, 50),
        s(start + 3, false, TcpFlags::ACK | TcpFlags::PSH, 80),
    ];
    let mut t = start + 500;
    while t < until {
        v.push(s(t, true, TcpFlags::ACK | TcpFlags::PSH, 10));
        t += 500;
    }
    if let Some(half) = close {
        v.push(s(until, true, TcpFlags::FIN | TcpFlags::ACK, 0));
        if !half {
            v.push(s(until + 1, false, TcpFlags::FIN | TcpFlags::ACK, 0));
            v.push(s(until + 2, true, TcpFlags::ACK, 0));
        }
    }
    v
}

/// The two captures (inside, outside) of `segs`, and their replay with `workers`
/// workers and an idle timeout of 10 s.
fn replay(segs: &[Seg], workers: usize) -> (Vec<Record>, engine::pairing::PairStats) {
    use engine::capture::write::PcapWriter;
    use engine::pipeline::{self, PipelineConfig, Progress, ReplaySource};
    let mut segs = segs.to_vec();
    segs.sort_by_key(|s| s.ms);
    let mut files = [
        PcapWriter::new(Vec::new(), 1).unwrap(),
        PcapWriter::new(Vec::new(), 1).unwrap(),
    ];
    let mut seqs = std::collections::HashMap::new();
    for s in &segs {
        let ip = |e: Endpoint| [e.addr[12], e.addr[13], e.addr[14], e.addr[15]];
        let seq = seqs.entry((s.at, s.src, s.dst)).or_insert(1000u32);
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(ip(s.src), ip(s.dst), 64)
            .tcp(s.src.port, s.dst.port, *seq, 64_000);
        let f = TcpFlags(s.flags);
        let b = if f.syn() { b.syn() } else { b };
        let b = if f.ack() { b.ack(1) } else { b };
        let b = if f.fin() { b.fin() } else { b };
        let b = if f.rst() { b.rst() } else { b };
        *seq = seq.wrapping_add(s.len as u32 + u32::from(f.syn()) + u32::from(f.fin()));
        let mut frame = Vec::new();
        b.write(&mut frame, &vec![0u8; s.len]).unwrap();
        files[usize::from(s.at.0)]
            .write_frame(Timestamp(T0 + s.ms * MS), &frame, frame.len() as u32)
            .unwrap();
    }
    let [inside, outside] = files.map(|f| f.into_inner());
    let cfg = PipelineConfig {
        workers,
        worker: WorkerConfig {
            points: 2,
            idle_timeout: Nanos::from_secs(10),
            ..WorkerConfig::default()
        },
        pairing: two_points(),
        ..PipelineConfig::default()
    };
    let sources = [
        ReplaySource {
            name: "inside".into(),
            data: &inside,
            clock_offset: 0,
        },
        ReplaySource {
            name: "outside".into(),
            data: &outside,
            clock_offset: 0,
        },
    ];
    let mut out = Vec::new();
    let report = pipeline::replay::<()>(
        &cfg,
        &sources,
        |r| {
            out.push(*r);
            Ok(())
        },
        &Progress::default(),
    );
    assert!(report.errors.is_empty());
    (out, report.export.pairing)
}

/// Another session, seen at both points, with a packet every 500 ms until `until`:
/// the workers' clocks move on while the sessions under test are open.
fn clockwork(until: u64) -> Vec<Seg> {
    let c = Endpoint::v4([198, 18, 5, 9], 45_000);
    let s = Endpoint::v4([198, 18, 6, 9], 9_999);
    let mut v = tcp(INSIDE, c, s, 0, until, Some(false));
    v.extend(tcp(OUTSIDE, c, s, 0, until, Some(false)));
    v
}

fn by_client(rs: &[Record], e: Endpoint) -> &Record {
    rs.iter()
        .find(|r| r.key.endpoint(r.session.client) == e)
        .unwrap_or_else(|| panic!("no record from {e:?}"))
}

/// Clients A and B both reach the server through the proxy within a millisecond;
/// A and the proxy's leg for B end at once, B and A's leg go on for seconds. B's
/// leg started while A was open and fits it, but it fits B too, still open: it is
/// never joined to A, nor A's leg to B later (A is remembered while a leg that
/// fits it is open). Before the workers told the pairer of open sessions, B's leg
/// was joined into A.
#[test]
fn a_leg_that_fits_a_session_still_open_is_never_joined() {
    let (a, b) = (inside_client(40_001), inside_client(40_002));
    let (a2, b2) = (proxy(50_001), proxy(50_002));
    let mut segs = clockwork(12_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 150, Some(false)));
    segs.extend(tcp(INSIDE, b, server(80), 100, 8_000, Some(false)));
    segs.extend(tcp(OUTSIDE, a2, server(80), 101, 8_000, Some(false)));
    segs.extend(tcp(OUTSIDE, b2, server(80), 102, 150, Some(false)));
    for workers in [1, 2] {
        let (rs, stats) = replay(&segs, workers);
        let ra = by_client(&rs, a);
        assert!(
            ra.pairing.is_none(),
            "{workers} workers: A joined with {:?}",
            ra.pairing.unwrap().legs().collect::<Vec<_>>()
        );
        let rb = by_client(&rs, b);
        assert!(rb.pairing.is_none(), "{workers} workers: B joined");
        assert_eq!(stats.joined, 0, "{workers} workers");
        assert!(stats.ambiguous >= 2, "{workers} workers: {stats:?}");
        // Every connection still has its record.
        assert_eq!(rs.len(), 5, "{workers} workers");
    }
}

/// The same without B: A's leg is joined, whichever ends first.
#[test]
fn a_leg_with_one_candidate_is_joined_through_the_pipeline() {
    let a = inside_client(40_001);
    let mut segs = clockwork(12_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 3_000, Some(false)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        3_000,
        Some(false),
    ));
    let (rs, stats) = replay(&segs, 2);
    let ra = by_client(&rs, a);
    let p = ra.pairing.expect("joined");
    assert_eq!(p.legs().next().unwrap().client, proxy(50_001));
    assert_eq!(stats.joined, 1);
    assert_eq!(rs.len(), 2);
}

/// The proxy's leg ends only by the idle timeout (it sent its FIN and the server
/// never answered), long after the client's session was judged: the client's
/// session waits for it while it is open, and they are joined. Before, the
/// client's session left after its window, unjoined.
#[test]
fn a_proxy_leg_ended_by_the_idle_timeout_is_joined() {
    let a = inside_client(40_001);
    let mut segs = clockwork(20_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 200, Some(false)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        201,
        Some(true),
    ));
    for workers in [1, 2] {
        let (rs, stats) = replay(&segs, workers);
        let ra = by_client(&rs, a);
        let p = ra.pairing.expect("joined");
        let leg = p.legs().next().unwrap();
        assert_eq!(leg.client, proxy(50_001));
        assert_eq!(leg.verdict, engine::verdict::Verdict::Timeout);
        assert_eq!(rs.len(), 2, "{workers} workers");
        assert_eq!(stats.joined, 1, "{workers} workers");
    }
}

/// The other way round: the client's session ends by the idle timeout, the
/// proxy's leg closed long before; the leg waits for the only session it fits.
#[test]
fn a_client_session_ended_by_the_idle_timeout_gets_its_leg() {
    let a = inside_client(40_001);
    let mut segs = clockwork(20_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 200, Some(true)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        201,
        Some(false),
    ));
    let (rs, stats) = replay(&segs, 2);
    let ra = by_client(&rs, a);
    assert_eq!(ra.verdict, engine::verdict::Verdict::Timeout);
    assert!(ra.pairing.is_some(), "joined");
    assert_eq!(stats.joined, 1);
}

// The same, sans-IO and step by step: one worker, whose clock the pairer follows
// after every packet (as the exporter follows the slowest worker). Deterministic,
// and shows what the pairer did without the notices (as before them).

/// A worker's output straight into the pairer.
struct ToPairer<'a> {
    pairer: &'a mut Pairer,
    out: &'a mut Vec<Record>,
    /// Whether notices reach the pairer.
    notices: bool,
    /// Opened notices of client-side sessions to this server are refused (as by a
    /// full ring) and announced as lost at once.
    refuse: Option<Endpoint>,
}

impl engine::worker::Output for ToPairer<'_> {
    fn record(&mut self, r: Record) {
        let out = &mut *self.out;
        self.pairer.push(&r, &mut |x| out.push(*x));
    }
    fn notice(&mut self, n: &engine::pairing::Notice) -> bool {
        use engine::pairing::Notice;
        if let (Notice::Opened(o), Some(refused)) = (n, self.refuse) {
            if o.point == INSIDE && o.server == refused {
                self.pairer.notice(&Notice::Lost {
                    since: o.first,
                    count: 1,
                });
                return false;
            }
        }
        if self.notices {
            self.pairer.notice(n);
        }
        self.notices
    }
}

fn step_by_step(segs: &[Seg], notices: bool) -> (Vec<Record>, engine::pairing::PairStats) {
    step_by_step_refusing(segs, notices, None)
}

fn step_by_step_refusing(
    segs: &[Seg],
    notices: bool,
    refuse: Option<Endpoint>,
) -> (Vec<Record>, engine::pairing::PairStats) {
    let mut segs = segs.to_vec();
    segs.sort_by_key(|s| s.ms);
    let mut w = Worker::new(WorkerConfig {
        points: 2,
        idle_timeout: Nanos::from_secs(10),
        pair_notices: true,
        ..WorkerConfig::default()
    });
    let mut pairer = Pairer::new(PairConfig {
        max_wait: Nanos::from_secs(12),
        ..two_points()
    });
    let mut out = Vec::new();
    let mut seqs = std::collections::HashMap::new();
    for s in &segs {
        let seq = seqs.entry((s.at, s.src, s.dst)).or_insert(1000u32);
        let f = TcpFlags(s.flags);
        let pkt = Packet {
            src: s.src,
            dst: s.dst,
            seq: *seq,
            ack: 1,
            flags: f,
            ttl: 64,
            payload_len: s.len as u32,
            wire_len: 54 + s.len as u32,
            ..Packet::default()
        };
        *seq = seq.wrapping_add(s.len as u32 + u32::from(f.syn()) + u32::from(f.fin()));
        let m = PacketMeta::new(Timestamp(T0 + s.ms * MS), s.at, pkt);
        let mut o = ToPairer {
            pairer: &mut pairer,
            out: &mut out,
            notices,
            refuse,
        };
        w.process_to(&m, &[], &mut o);
        let now = w.now();
        pairer.advance(now, &mut |x| out.push(*x));
    }
    let mut o = ToPairer {
        pairer: &mut pairer,
        out: &mut out,
        notices,
        refuse,
    };
    w.finish_to(&mut o);
    pairer.finish(&mut |x| out.push(*x));
    (out, pairer.stats)
}

#[test]
fn step_by_step_a_leg_that_fits_a_session_still_open_is_never_joined() {
    let (a, b) = (inside_client(40_001), inside_client(40_002));
    let (a2, b2) = (proxy(50_001), proxy(50_002));
    let mut segs = clockwork(12_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 150, Some(false)));
    segs.extend(tcp(INSIDE, b, server(80), 100, 8_000, Some(false)));
    segs.extend(tcp(OUTSIDE, a2, server(80), 101, 8_000, Some(false)));
    segs.extend(tcp(OUTSIDE, b2, server(80), 102, 150, Some(false)));
    let (rs, stats) = step_by_step(&segs, true);
    assert!(by_client(&rs, a).pairing.is_none(), "A joined");
    assert!(by_client(&rs, b).pairing.is_none(), "B joined");
    assert_eq!(stats.joined, 0);
    assert_eq!(rs.len(), 5);
    // Without the notices, B was not known while open: B's leg went into A.
    let (rs, _) = step_by_step(&segs, false);
    let wrong = by_client(&rs, a).pairing.expect("joined without notices");
    assert_eq!(wrong.legs().next().unwrap().client, b2);
}

#[test]
fn step_by_step_a_proxy_leg_ended_by_the_idle_timeout_is_joined() {
    let a = inside_client(40_001);
    let mut segs = clockwork(20_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 200, Some(false)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        201,
        Some(true),
    ));
    let (rs, stats) = step_by_step(&segs, true);
    let p = by_client(&rs, a).pairing.expect("joined");
    assert_eq!(
        p.legs().next().unwrap().verdict,
        engine::verdict::Verdict::Timeout
    );
    assert_eq!((stats.joined, stats.waited), (1, 1));
    assert_eq!(rs.len(), 2);
    // Without the notices, the client's session left before its leg ended.
    let (rs, stats) = step_by_step(&segs, false);
    assert!(by_client(&rs, a).pairing.is_none());
    assert_eq!((stats.joined, rs.len()), (0, 3));
}

#[test]
fn step_by_step_a_client_session_ended_by_the_idle_timeout_gets_its_leg() {
    let a = inside_client(40_001);
    let mut segs = clockwork(20_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 200, Some(true)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        201,
        Some(false),
    ));
    let (rs, stats) = step_by_step(&segs, true);
    assert!(by_client(&rs, a).pairing.is_some(), "joined");
    assert_eq!((stats.joined, stats.waited), (1, 1));
    let (rs, stats) = step_by_step(&segs, false);
    assert!(by_client(&rs, a).pairing.is_none());
    assert_eq!(stats.joined, 0);
}

/// A leg waits at most `max_wait` for its other leg: one that stays open longer
/// (here, busy for 30 s) is not waited for.
#[test]
fn step_by_step_the_wait_is_bounded() {
    let a = inside_client(40_001);
    let mut segs = clockwork(40_000);
    segs.extend(tcp(INSIDE, a, server(80), 100, 200, Some(false)));
    segs.extend(tcp(
        OUTSIDE,
        proxy(50_001),
        server(80),
        101,
        30_000,
        Some(false),
    ));
    let (rs, stats) = step_by_step(&segs, true);
    assert!(by_client(&rs, a).pairing.is_none());
    assert_eq!((stats.joined, stats.waited, rs.len()), (0, 1, 3));
}

/// A notice lost (a full ring) while a session is open: the pairer cannot prove
/// that a leg which started since has no other candidate, so it joins nothing
/// that started after it until that session's record arrives.
#[test]
fn step_by_step_a_lost_notice_makes_later_legs_unproven() {
    let a = inside_client(40_001);
    // C goes to another server; its notice is lost.
    let c = inside_client(40_003);
    for (c_until, joined) in [(9_000u64, false), (300, true)] {
        let mut segs = clockwork(20_000);
        segs.extend(tcp(INSIDE, c, server(8443), 50, c_until, Some(false)));
        segs.extend(tcp(INSIDE, a, server(80), 100, 2_000, Some(false)));
        segs.extend(tcp(
            OUTSIDE,
            proxy(50_001),
            server(80),
            101,
            2_000,
            Some(false),
        ));
        let (rs, stats) = step_by_step_refusing(&segs, true, Some(server(8443)));
        assert_eq!(
            by_client(&rs, a).pairing.is_some(),
            joined,
            "C open until {c_until} ms: {stats:?}"
        );
        assert_eq!(stats.unproven, u64::from(!joined), "{stats:?}");
        assert_eq!(rs.len(), if joined { 3 } else { 4 });
    }
}

// A session that only the client-side point saw, answered by an RST in the
// server's name: with no sign of it at the server-side point, and no proxy
// connection for it, the RST was sent by the middlebox (or the server-side capture
// missed the session: medium confidence).

/// A client's SYN answered by an RST in the server's name, seen at `at` only.
fn syn_reset(at: PointId, client: Endpoint, server: Endpoint, start: u64) -> Vec<Seg> {
    let seg = |ms, src, dst, flags| Seg {
        ms,
        at,
        src,
        dst,
        flags,
        len: 0,
    };
    vec![
        seg(start, client, server, TcpFlags::SYN),
        seg(start + 1, server, client, TcpFlags::RST | TcpFlags::ACK),
    ]
}

#[test]
fn a_syn_reset_that_the_server_side_never_saw_is_a_middlebox_reset() {
    use engine::correlate::Tamper;
    use engine::verdict::{PanReason, Verdict};
    let a = inside_client(40_001);
    let mut segs = clockwork(8_000);
    segs.extend(syn_reset(INSIDE, a, server(443), 100));
    let (rs, _) = replay(&segs, 2);
    let r = by_client(&rs, a);
    assert_eq!(r.verdict, Verdict::MiddleboxReset, "{:#?}", r.evidence);
    assert_eq!(r.pan_end_reason, Some(PanReason::PolicyDeny));
    let u: Vec<_> = r.compare.unmatched().copied().collect();
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!((u[0].point, u[0].tamper), (INSIDE, Tamper::Forged));
    assert!(
        !u[0].confident(),
        "medium: the other capture may have missed it"
    );
    let names = |p: PointId| ["inside", "outside"][usize::from(p.0)].to_string();
    let first = r.evidence.iter().next().unwrap().render(&names);
    assert!(
        first.contains("outside saw nothing of this session"),
        "{first}"
    );
    assert_eq!(r.points().count(), 1, "still seen at one point only");
    assert!(r.pairing.is_none());
}

#[test]
fn a_syn_reset_is_not_blamed_on_the_middlebox_without_pairing_or_with_a_leg() {
    use engine::verdict::Verdict;
    let a = inside_client(40_001);
    // A proxy connection to that server, started while the client's session was
    // open (it fits, whether or not it is joined): the session may well have
    // reached the server side.
    let mut segs = clockwork(8_000);
    segs.extend(syn_reset(INSIDE, a, server(443), 100));
    segs.extend(syn_reset(OUTSIDE, proxy(50_001), server(443), 100));
    let (rs, _) = replay(&segs, 1);
    let r = by_client(&rs, a);
    assert_ne!(r.verdict, Verdict::MiddleboxReset, "{:#?}", r.evidence);
    assert!(r.compare.unmatched().next().is_none());
    // An RST from the client, not toward it: nothing forged to report.
    let mut segs = clockwork(8_000);
    segs.push(Seg {
        ms: 100,
        at: INSIDE,
        src: a,
        dst: server(443),
        flags: TcpFlags::SYN,
        len: 0,
    });
    segs.push(Seg {
        ms: 101,
        at: INSIDE,
        src: a,
        dst: server(443),
        flags: TcpFlags::RST,
        len: 0,
    });
    let (rs, _) = replay(&segs, 1);
    assert_eq!(by_client(&rs, a).verdict, Verdict::NoResponse);
}
