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
