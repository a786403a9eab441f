//! The verdict: why a session ended, decided once, when it ends, from what every
//! capture point saw. This module holds the taxonomy (see docs/verdicts.md), the
//! record a worker hands to the exporter, and the classification.
//!
//! Evidence is kept as small `Copy` values, rendered to text by the exporter, so that
//! ending a session never allocates on a worker.

use crate::correlate::{sign, Comparison, Interception, Suspect, Suspicion, Tamper};
use crate::flow::FlowKey;
use crate::pairing::{Confidence, Pairing};
use crate::session::{PointId, PointState, Role, Session, MAX_POINTS};
use crate::tcp::SegEvent;
use crate::time::{Nanos, Timestamp};
use crate::tls::judge::{judge, Judgement, MinSizes, NoServerHello, TlsOutcome};
use crate::tls::names::{alert_name, handshake_type_name, version_name};
use crate::tls::observe::{Alert, ClientCert, TlsFacts};

/// Why a session died (docs/verdicts.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    ClientRejectedCertificate,
    ClientAbandonedHandshake,
    ServerRejectedClientCertificate,
    HandshakeParameterMismatch,
    NoServerHello,
    MiddleboxReset,
    ResetByClient,
    ResetByServer,
    Rejected,
    NoResponse,
    Timeout,
    IncompleteCapture,
}

impl Verdict {
    pub const ALL: [Verdict; 13] = [
        Verdict::Ok,
        Verdict::ClientRejectedCertificate,
        Verdict::ClientAbandonedHandshake,
        Verdict::ServerRejectedClientCertificate,
        Verdict::HandshakeParameterMismatch,
        Verdict::NoServerHello,
        Verdict::MiddleboxReset,
        Verdict::ResetByClient,
        Verdict::ResetByServer,
        Verdict::Rejected,
        Verdict::NoResponse,
        Verdict::Timeout,
        Verdict::IncompleteCapture,
    ];
    pub const COUNT: usize = Verdict::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::ClientRejectedCertificate => "client_rejected_certificate",
            Verdict::ClientAbandonedHandshake => "client_abandoned_handshake",
            Verdict::ServerRejectedClientCertificate => "server_rejected_client_certificate",
            Verdict::HandshakeParameterMismatch => "handshake_parameter_mismatch",
            Verdict::NoServerHello => "no_server_hello",
            Verdict::MiddleboxReset => "middlebox_reset",
            Verdict::ResetByClient => "reset_by_client",
            Verdict::ResetByServer => "reset_by_server",
            Verdict::Rejected => "rejected",
            Verdict::NoResponse => "no_response",
            Verdict::Timeout => "timeout",
            Verdict::IncompleteCapture => "incomplete_capture",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The session end reason a decrypting Palo Alto Networks firewall logs for the
/// same pattern (docs/verdicts.md, `pan_end_reason`): a hint for reading its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PanReason {
    DecryptCertValidation,
    DecryptUnsupportParam,
    DecryptError,
    TcpFin,
    TcpRstFromClient,
    TcpRstFromServer,
    AgedOut,
    PolicyDeny,
}

impl PanReason {
    pub const ALL: [PanReason; 8] = [
        PanReason::DecryptCertValidation,
        PanReason::DecryptUnsupportParam,
        PanReason::DecryptError,
        PanReason::TcpFin,
        PanReason::TcpRstFromClient,
        PanReason::TcpRstFromServer,
        PanReason::AgedOut,
        PanReason::PolicyDeny,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PanReason::DecryptCertValidation => "decrypt-cert-validation",
            PanReason::DecryptUnsupportParam => "decrypt-unsupport-param",
            PanReason::DecryptError => "decrypt-error",
            PanReason::TcpFin => "tcp-fin",
            PanReason::TcpRstFromClient => "tcp-rst-from-client",
            PanReason::TcpRstFromServer => "tcp-rst-from-server",
            PanReason::AgedOut => "aged-out",
            PanReason::PolicyDeny => "policy-deny",
        }
    }

    /// The reason for a fatal alert with this description.
    pub fn for_alert(desc: u8) -> PanReason {
        match desc {
            41..=44 | 49 => PanReason::DecryptCertValidation,
            10 | 40 | 110 => PanReason::DecryptUnsupportParam,
            _ => PanReason::DecryptError,
        }
    }
}

/// What made the worker judge the session now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Closed by an RST, judged after the linger time.
    Rst,
    /// Closed by a FIN from each end, judged after the linger time.
    Fin,
    /// No packet for the idle timeout.
    IdleTimeout,
    /// Evicted to make room in a full flow table.
    Evicted,
    /// A new SYN reused the 4-tuple of this session.
    PortReused,
    /// The capture ended while the session was open (or lingering).
    EndOfInput,
    /// A live capture was stopped (SIGINT, SIGTERM) while the session was open.
    Shutdown,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        EndReason::Rst,
        EndReason::Fin,
        EndReason::IdleTimeout,
        EndReason::Evicted,
        EndReason::PortReused,
        EndReason::EndOfInput,
        EndReason::Shutdown,
    ];
    pub const COUNT: usize = EndReason::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Rst => "rst",
            EndReason::Fin => "fin",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Evicted => "evicted",
            EndReason::PortReused => "port_reused",
            EndReason::EndOfInput => "end_of_input",
            EndReason::Shutdown => "shutdown",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One fact behind a verdict. Rendered by [`Evidence::render`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Neither SYN nor SYN-ACK seen anywhere.
    MidStream,
    /// The client's SYN was not seen, its SYN-ACK was.
    SynNotSeen,
    /// `count` SYNs from the client, no SYN-ACK, over `span` of capture time.
    NoSynAck { count: u16, span: Nanos },
    /// The server answered the SYN with an RST.
    SynAnsweredByRst { point: PointId },
    /// The server sent packets but no SYN-ACK was captured.
    SynAckNotSeen,
    /// The capture ended `after` the first SYN: too soon to call it unanswered.
    CaptureEndedAfterSyn { after: Nanos },
    /// First RST of the session.
    Rst {
        point: PointId,
        from: Role,
        data_before: bool,
        count: u16,
    },
    /// A FIN from each end.
    BothFin { point: PointId },
    /// Only one end sent a FIN.
    HalfClosed { point: PointId, from: Role },
    /// The RST came after both FINs: an orderly close.
    RstAfterClose { point: PointId, from: Role },
    /// Packets sent after an RST.
    DataAfterRst {
        point: PointId,
        from: Role,
        segments: u32,
    },
    /// The peer acknowledged data the capture did not see.
    AckedUnseen {
        point: PointId,
        from: Role,
        count: u32,
    },
    /// Went idle.
    Idle { timeout: Nanos },
    /// Evicted from a full flow table.
    Evicted,
    /// The capture ended while the session was open.
    EndOfInput,
    /// A new connection reused the 4-tuple.
    PortReused,
    /// The TLS alert that decided the verdict (or an inferred encrypted one).
    TlsAlert {
        point: PointId,
        from: Role,
        level: u8,
        description: u8,
        encrypted: bool,
        inferred: bool,
        len: u16,
        /// The peer's last plaintext handshake message before it (0: none).
        answers: u8,
        /// The smallest Finished record of the negotiated cipher (inferred alerts).
        min_finished: u16,
    },
    /// A ClientHello and no ServerHello.
    NoServerHello {
        point: PointId,
        answer: NoServerHello,
    },
    /// The handshake completed and the client closed without sending data.
    HandshakeNoData { point: PointId },
    /// The server asked for a client certificate.
    CertRequested {
        point: PointId,
        client_cert: ClientCert,
        /// TLS 1.3: inferred from the client's flight.
        inferred: bool,
    },
    /// An encrypted close (close_notify) came before the RST: an orderly end.
    CloseBeforeRst { point: PointId, from: Role },
    /// Part of a TLS stream was not captured before the handshake ended.
    TlsGap { point: PointId, from: Role },
    /// Two points: an RST or FIN seen on one side of the middlebox only.
    Tampered {
        point: PointId,
        other: PointId,
        toward: Role,
        tamper: Tamper,
        rst: bool,
        ttl: u8,
        /// The sender's first packet at that point came with this TTL.
        sender_ttl: u8,
        /// See [`crate::correlate::Unmatched::confident`].
        confident: bool,
        /// Such segments the other point saw from the same sender, at other times.
        other_count: u16,
        /// The other point saw nothing of the session ([`crate::correlate::Unmatched::unseen`]).
        unseen: bool,
    },
    /// Two points: the TLS sessions at the two points are not the same one.
    Intercepted {
        client: PointId,
        server: PointId,
        what: Interception,
    },
    /// Two points: the legs negotiated different TLS versions.
    Downgrade {
        client: PointId,
        server: PointId,
        client_version: u16,
        server_version: u16,
    },
    /// Two points: the handshake completed on one leg and not on the other.
    FailedLeg { failed: PointId, completed: PointId },
    /// One point: an RST with signs of forgery ([`crate::correlate::sign`]).
    SuspectRst {
        point: PointId,
        from: Role,
        signs: u8,
        confidence: Suspicion,
        ttl: u8,
        usual_ttl: u8,
    },
    /// Two points: the server-side entry is a leg a proxy opened from its own
    /// address, paired by server endpoint, SNI and time.
    Paired {
        client: PointId,
        server: PointId,
        legs: u16,
        confidence: Confidence,
    },
}

/// The evidence of one verdict: a bounded list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EvidenceList {
    items: [Option<Evidence>; EvidenceList::CAP],
    len: u8,
}

impl EvidenceList {
    pub const CAP: usize = 8;

    /// Adds a fact; beyond `CAP` facts the least important (last) are dropped.
    pub fn push(&mut self, e: Evidence) {
        if usize::from(self.len) < Self::CAP {
            self.items[usize::from(self.len)] = Some(e);
            self.len += 1;
        }
    }
    /// Keeps only the facts for which `keep` is true, in order.
    pub fn retain(&mut self, keep: impl Fn(&Evidence) -> bool) {
        let mut out = EvidenceList::default();
        for e in self.iter().filter(|e| keep(e)) {
            out.push(*e);
        }
        *self = out;
    }

    /// Puts `e` at `at` (or last), dropping the last fact if full.
    pub fn insert(&mut self, at: usize, e: Evidence) {
        let at = at.min(usize::from(self.len));
        if at >= Self::CAP {
            return;
        }
        let end = usize::from(self.len).min(Self::CAP - 1);
        self.items.copy_within(at..end, at + 1);
        self.items[at] = Some(e);
        self.len = (end + 1) as u8;
    }
    pub fn iter(&self) -> impl Iterator<Item = &Evidence> {
        self.items[..usize::from(self.len)].iter().flatten()
    }
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Evidence {
    /// Human-readable text. `point` names points by index.
    pub fn render(&self, point: &dyn Fn(PointId) -> String) -> String {
        let secs = |n: Nanos| n.0 as f64 / 1e9;
        match *self {
            Evidence::MidStream => "no SYN or SYN-ACK seen: the capture started mid-session".into(),
            Evidence::SynNotSeen => "the client's SYN was not captured; roles taken from the SYN-ACK".into(),
            Evidence::NoSynAck { count, span } => {
                format!("client sent {count} SYN(s) over {:.3} s, no SYN-ACK seen", secs(span))
            }
            Evidence::SynAnsweredByRst { point: p } => format!("{}: server answered the SYN with an RST", point(p)),
            Evidence::SynAckNotSeen => "server sent packets but its SYN-ACK was not captured".into(),
            Evidence::CaptureEndedAfterSyn { after } => {
                format!("the capture ended {:.3} s after the SYN, too soon to call it unanswered", secs(after))
            }
            Evidence::Rst { point: p, from, data_before, count } => format!(
                "{}: {} sent RST{}{}",
                point(p),
                from.as_str(),
                if data_before { " after data" } else { " before any data" },
                if count > 1 { format!(" ({count} RSTs)") } else { String::new() }
            ),
            Evidence::BothFin { point: p } => format!("{}: FIN from both ends", point(p)),
            Evidence::HalfClosed { point: p, from } => format!("{}: only the {} sent a FIN", point(p), from.as_str()),
            Evidence::RstAfterClose { point: p, from } => {
                format!("{}: {} sent RST after both FINs (orderly close)", point(p), from.as_str())
            }
            Evidence::DataAfterRst { point: p, from, segments } => {
                format!("{}: {} sent {segments} data segment(s) after the RST", point(p), from.as_str())
            }
            Evidence::AckedUnseen { point: p, from, count } => format!(
                "{}: {} data acknowledged but not captured ({count} hole(s)): packets lost at the capture",
                point(p),
                from.as_str()
            ),
            Evidence::Idle { timeout } if timeout.0 % 1_000_000_000 == 0 => {
                format!("no packet for {} s (idle timeout)", timeout.0 / 1_000_000_000)
            }
            Evidence::Idle { timeout } => format!("no packet for {:.3} s (idle timeout)", secs(timeout)),
            Evidence::Evicted => "evicted from a full flow table before it ended".into(),
            Evidence::EndOfInput => "the capture ended while the session was open".into(),
            Evidence::PortReused => "a new SYN reused the 4-tuple while the session was open".into(),
            Evidence::TlsAlert { point: p, from, level, description, encrypted, inferred, len, answers, min_finished } => {
                let peer = match from {
                    Role::Client => "server",
                    Role::Server => "client",
                };
                let after = if answers == 0 {
                    String::new()
                } else {
                    format!(" after the {peer}'s {}", handshake_type_name(answers))
                };
                if inferred {
                    let due = if from == Role::Client {
                        format!("where its Finished (at least {min_finished} bytes) was due")
                    } else {
                        "where the handshake was due to go on".to_string()
                    };
                    format!(
                        "{}: {} sent a {len}-byte encrypted record {due}: an encrypted alert (inferred)",
                        point(p),
                        from.as_str()
                    )
                } else if encrypted {
                    format!("{}: {} encrypted alert ({len}-byte record){after}", point(p), from.as_str())
                } else {
                    let level = match level {
                        1 => "warning",
                        2 => "fatal",
                        _ => "unknown-level",
                    };
                    let name = alert_name(description).map_or_else(|| format!("alert {description}"), str::to_string);
                    format!("{}: {} {level} alert {name}{after}", point(p), from.as_str())
                }
            }
            Evidence::NoServerHello { point: p, answer } => {
                let what = match answer {
                    NoServerHello::Fin => "the server closed (FIN)",
                    NoServerHello::Rst => "the server reset the connection",
                    NoServerHello::NotTls => "the server sent non-TLS data",
                    NoServerHello::Silence => "the server sent nothing until the idle timeout",
                    NoServerHello::ClientClosed => "the server sent nothing before the client closed",
                };
                format!("{}: ClientHello answered by no ServerHello: {what}", point(p))
            }
            Evidence::HandshakeNoData { point: p } => format!(
                "{}: handshake complete, then the client closed without sending application data",
                point(p)
            ),
            Evidence::CertRequested { point: p, client_cert, inferred } => {
                if inferred {
                    format!("{}: the client's encrypted flight carried a certificate message: the server asked for one", point(p))
                } else {
                    let c = match client_cert {
                        ClientCert::None => "none",
                        ClientCert::Empty => "an empty one",
                        ClientCert::Sent => "one",
                    };
                    format!("{}: the server asked for a client certificate; the client sent {c}", point(p))
                }
            }
            Evidence::CloseBeforeRst { point: p, from } => format!(
                "{}: {} closed TLS (close_notify) before the RST: an orderly end",
                point(p),
                from.as_str()
            ),
            Evidence::TlsGap { point: p, from } => format!(
                "{}: part of the {}'s TLS stream was not captured: not followed further",
                point(p),
                from.as_str()
            ),
            Evidence::Tampered { point: p, other, toward, tamper, rst, ttl, sender_ttl, confident, other_count, unseen } => {
                let what = if rst { "RST" } else { "FIN" };
                let sender = match toward {
                    Role::Client => "server",
                    Role::Server => "client",
                };
                let elsewhere = if other_count > 0 {
                    format!(" (it saw {other_count} at other times)")
                } else {
                    String::new()
                };
                let unsure = if confident {
                    String::new()
                } else {
                    format!(" (or its copy was lost at {}'s capture)", point(other))
                };
                let ttls = if sender_ttl == 0 {
                    format!("TTL {ttl}")
                } else {
                    format!("TTL {ttl}, the {sender}'s packets came with {sender_ttl}")
                };
                if unseen {
                    return format!(
                        "{}: {what} toward the {} ({ttls}) never seen at {}: {} saw nothing of this session and no proxy connection for it; sent by the middlebox in the {sender}'s name, unless {}'s capture missed the session",
                        point(p),
                        toward.as_str(),
                        point(other),
                        point(other),
                        point(other)
                    );
                }
                match tamper {
                    Tamper::Forged => format!(
                        "{}: {what} toward the {} ({ttls}) never seen at {}{elsewhere}: sent by the middlebox in the {sender}'s name{unsure}",
                        point(p),
                        toward.as_str(),
                        point(other)
                    ),
                    Tamper::Absorbed => format!(
                        "{}: {what} from the {sender} never seen at {}{elsewhere}: absorbed by the middlebox{unsure}",
                        point(p),
                        point(other)
                    ),
                }
            }
            Evidence::Intercepted { client, server, what } => {
                let mut differs = Vec::new();
                if what.client_random {
                    differs.push("ClientHello random");
                }
                if what.ja4 {
                    differs.push("JA4");
                }
                if what.leaf_cert {
                    differs.push("leaf certificate");
                }
                format!(
                    "{} and {}: the {} differ: the middlebox intercepts TLS",
                    point(client),
                    point(server),
                    differs.join(", ")
                )
            }
            Evidence::Downgrade { client, server, client_version, server_version } => {
                let low = if client_version < server_version { client } else { server };
                format!(
                    "{} negotiated {}, {} {}: the {} leg was downgraded",
                    point(client),
                    version_name(client_version),
                    point(server),
                    version_name(server_version),
                    point(low)
                )
            }
            Evidence::Paired { client, server, legs, confidence } => format!(
                "{} and {}: a proxy re-originated the session from its own address ({legs} connection(s) at {}), paired by server endpoint{} and time ({} confidence)",
                point(client),
                point(server),
                point(server),
                if confidence == Confidence::High { ", SNI" } else { "" },
                confidence.as_str()
            ),
            Evidence::SuspectRst { point: p, from, signs, confidence, ttl, usual_ttl } => {
                let mut why = Vec::new();
                for (bit, _) in sign::NAMES {
                    if signs & bit == 0 {
                        continue;
                    }
                    why.push(match bit {
                        sign::TTL => format!("TTL {ttl} where its other packets had {usual_ttl}"),
                        sign::DATA_AFTER => format!("the {} sent data after it", from.as_str()),
                        sign::STEPPING => "several RSTs with different sequence numbers".to_string(),
                        sign::SEQ_OFF => "its sequence number was not the next one".to_string(),
                        _ => "its IP ID copied from the other end's packet".to_string(),
                    });
                }
                format!(
                    "{}: the {}'s RST may be forged ({}): {} confidence",
                    point(p),
                    from.as_str(),
                    why.join("; "),
                    confidence.as_str()
                )
            }
            Evidence::FailedLeg { failed, completed } => format!(
                "the handshake completed at {} and failed at {}: the {} leg failed",
                point(completed),
                point(failed),
                point(failed)
            ),
        }
    }
}

/// Everything the exporter needs to write one verdict: a copy of the session, its
/// per-point state, the classification and its evidence. Plain data: moving it to
/// the exporter's ring is a copy, never an allocation.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    pub session_id: u64,
    pub key: FlowKey,
    pub session: Session,
    pub end: EndReason,
    /// Capture time at which the session was judged.
    pub judged_at: Timestamp,
    pub verdict: Verdict,
    pub evidence: EvidenceList,
    pub pan_end_reason: Option<PanReason>,
    pub npoints: u8,
    pub points: [PointState; MAX_POINTS],
    /// What TLS showed at each point (`detected` false: nothing).
    pub tls: [TlsFacts; MAX_POINTS],
    /// What comparing the client-side and the server-side point showed.
    pub compare: Comparison,
    /// Set when the server-side point's entry is another leg (another 5-tuple) that
    /// a proxy opened for this session ([`crate::pairing`]).
    pub pairing: Option<Pairing>,
    /// Each end's first RST that shows signs of forgery, by the sender's side,
    /// unless comparing two points already found it forged or absorbed.
    pub suspect: [Option<Suspect>; 2],
    /// When the worker pushed the record on its ring: [`crate::metrics::mono_ns`],
    /// 0 when metrics are off. Only the export latency histogram reads it.
    pub pushed_ns: u64,
}

// Moved through the record rings by copy: its size is the cost per verdict
// (7,424 bytes before `pushed_ns`, 7,432 before the session lost its flow hash
// and the close its `Option`).
const _: () = assert!(std::mem::size_of::<Record>() == 7416);

impl Record {
    pub fn points(&self) -> impl Iterator<Item = (PointId, &PointState)> {
        self.points[..usize::from(self.npoints)]
            .iter()
            .enumerate()
            .filter(|(_, p)| p.seen())
            .map(|(i, p)| (PointId(i as u8), p))
    }
}

/// Timing knobs of the classification.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyConfig {
    pub idle_timeout: Nanos,
    /// At the end of the capture, a SYN younger than this is "incomplete", not
    /// "no_response" (the client's own first retransmission comes after 1 s).
    pub syn_grace: Nanos,
}

/// The first event over all points, by time, and where it was.
fn first_event(
    points: &[PointState],
    pick: impl Fn(&PointState, usize) -> Option<SegEvent>,
    side: usize,
) -> Option<(PointId, SegEvent)> {
    points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| pick(p, side).map(|e| (PointId(i as u8), e)))
        .min_by_key(|(_, e)| e.ts)
}

/// Decides the verdict of an ended session.
pub fn classify(
    s: &Session,
    points: &[PointState],
    end: EndReason,
    now: Timestamp,
    cfg: &ClassifyConfig,
) -> (Verdict, EvidenceList) {
    let mut ev = EvidenceList::default();
    let c = s.side_of(Role::Client).index();
    let sv = s.side_of(Role::Server).index();
    let syn = first_event(points, |p, d| p.dirs[d].syn(), c);
    let synack = first_event(points, |p, d| p.dirs[d].syn(), sv);

    if syn.is_none() && synack.is_none() {
        ev.push(Evidence::MidStream);
        add_close_evidence(s, points, &mut ev);
        return (Verdict::IncompleteCapture, ev);
    }
    if synack.is_none() {
        if let Some((point, _)) = first_event(points, |p, d| p.dirs[d].rst(), sv) {
            ev.push(Evidence::SynAnsweredByRst { point });
            return (Verdict::Rejected, ev);
        }
        if points.iter().any(|p| p.dirs[sv].seen()) {
            ev.push(Evidence::SynAckNotSeen);
            add_close_evidence(s, points, &mut ev);
            return (Verdict::IncompleteCapture, ev);
        }
        let (_, first_syn) = syn.unwrap_or_default();
        let count = points
            .iter()
            .map(|p| p.dirs[c].syn_count)
            .max()
            .unwrap_or(0);
        let last = points
            .iter()
            .map(|p| p.dirs[c].last_ts)
            .max()
            .unwrap_or(first_syn.ts);
        if matches!(end, EndReason::EndOfInput | EndReason::Shutdown)
            && now.saturating_sub(first_syn.ts) < cfg.syn_grace
        {
            ev.push(Evidence::CaptureEndedAfterSyn {
                after: now.saturating_sub(first_syn.ts),
            });
            return (Verdict::IncompleteCapture, ev);
        }
        ev.push(Evidence::NoSynAck {
            count,
            span: last.saturating_sub(first_syn.ts),
        });
        return (Verdict::NoResponse, ev);
    }
    if syn.is_none() {
        ev.push(Evidence::SynNotSeen);
    }

    // Established (a SYN-ACK was seen). How did it end?
    let verdict = match close_of(s, points) {
        Close::RstAfterFins {
            point,
            fin_point,
            from,
        } => {
            ev.push(Evidence::BothFin { point: fin_point });
            ev.push(Evidence::RstAfterClose { point, from });
            Verdict::Ok
        }
        Close::Rst { from, .. } => match from {
            Role::Client => Verdict::ResetByClient,
            Role::Server => Verdict::ResetByServer,
        },
        Close::Fins { .. } => Verdict::Ok,
        Close::Open => match end {
            EndReason::IdleTimeout => Verdict::Timeout,
            _ => Verdict::IncompleteCapture,
        },
    };
    add_close_evidence(s, points, &mut ev);
    match end {
        EndReason::IdleTimeout => ev.push(Evidence::Idle {
            timeout: cfg.idle_timeout,
        }),
        EndReason::Evicted => ev.push(Evidence::Evicted),
        EndReason::EndOfInput | EndReason::Shutdown if verdict == Verdict::IncompleteCapture => {
            ev.push(Evidence::EndOfInput)
        }
        EndReason::PortReused => ev.push(Evidence::PortReused),
        _ => {}
    }
    for (i, p) in points.iter().enumerate() {
        for d in [c, sv] {
            if p.dirs[d].acked_unseen > 0 {
                let from = if d == c { Role::Client } else { Role::Server };
                ev.push(Evidence::AckedUnseen {
                    point: PointId(i as u8),
                    from,
                    count: p.dirs[d].acked_unseen,
                });
            }
        }
    }
    (verdict, ev)
}

enum Close {
    Open,
    Fins {
        point: PointId,
    },
    Rst {
        point: PointId,
        from: Role,
    },
    RstAfterFins {
        point: PointId,
        fin_point: PointId,
        from: Role,
    },
}

fn role_of_index(s: &Session, d: usize) -> Role {
    if d == s.client.index() {
        Role::Client
    } else {
        Role::Server
    }
}

/// How the session closed, over all points: the first RST, unless both FINs came
/// before it at that point.
fn close_of(s: &Session, points: &[PointState]) -> Close {
    let rst = [0usize, 1]
        .into_iter()
        .filter_map(|d| first_event(points, |p, d| p.dirs[d].rst(), d).map(|(pt, e)| (pt, e, d)))
        .min_by_key(|(_, e, _)| e.ts);
    let fins = points
        .iter()
        .enumerate()
        .find(|(_, p)| p.both_fin())
        .map(|(i, p)| {
            let last_fin = p.dirs[0]
                .fin()
                .map_or(Timestamp::ZERO, |f| f.ts)
                .max(p.dirs[1].fin().map_or(Timestamp::ZERO, |f| f.ts));
            (PointId(i as u8), last_fin)
        });
    match (rst, fins) {
        (Some((point, e, d)), Some((fin_point, fin_ts))) if fin_ts <= e.ts => Close::RstAfterFins {
            point,
            fin_point,
            from: role_of_index(s, d),
        },
        (Some((point, _, d)), _) => Close::Rst {
            point,
            from: role_of_index(s, d),
        },
        (None, Some((point, _))) => Close::Fins { point },
        (None, None) => Close::Open,
    }
}

fn add_close_evidence(s: &Session, points: &[PointState], ev: &mut EvidenceList) {
    match close_of(s, points) {
        Close::Rst { point, from } => {
            let p = &points[usize::from(point.0)];
            let d = s.side_of(from).index();
            let rst_ts = p.dirs[d].rst().map_or(Timestamp::ZERO, |e| e.ts);
            let data_before = p
                .dirs
                .iter()
                .any(|dir| dir.first_data_ts().is_some_and(|t| t < rst_ts));
            ev.push(Evidence::Rst {
                point,
                from,
                data_before,
                count: p.dirs[d].rst_count,
            });
        }
        Close::Fins { point } => ev.push(Evidence::BothFin { point }),
        Close::RstAfterFins { .. } => {}
        Close::Open => {
            for (i, p) in points.iter().enumerate() {
                for d in 0..2 {
                    if p.dirs[d].fin().is_some() && p.dirs[1 - d].fin().is_none() {
                        ev.push(Evidence::HalfClosed {
                            point: PointId(i as u8),
                            from: role_of_index(s, d),
                        });
                    }
                }
            }
        }
    }
    for (i, p) in points.iter().enumerate() {
        for d in 0..2 {
            if p.dirs[d].data_after_rst > 0 {
                ev.push(Evidence::DataAfterRst {
                    point: PointId(i as u8),
                    from: role_of_index(s, d),
                    segments: p.dirs[d].data_after_rst,
                });
            }
        }
    }
}

/// The evidence for alert `a`, seen at `point` whose TLS facts are `f`.
fn alert_evidence(point: PointId, f: &TlsFacts, from: Role, a: &Alert) -> Evidence {
    Evidence::TlsAlert {
        point,
        from,
        level: a.level,
        description: a.description,
        encrypted: a.encrypted,
        inferred: a.inferred,
        len: a.len,
        answers: a.answers,
        min_finished: f
            .server_hello
            .map_or(53, |sh| MinSizes::for_cipher(sh.cipher).finished),
    }
}

/// Refines a TCP verdict with what TLS showed at each point (`tls[i]` for point
/// `i`; judging also fills in each point's handshake state and inferred alerts).
/// TLS evidence goes first. Returns the verdict and the PAN-OS end-reason hint.
pub fn classify_tls(
    s: &Session,
    points: &[PointState],
    tls: &mut [TlsFacts],
    ended_by_capture: bool,
    tcp: Verdict,
    tcp_evidence: &EvidenceList,
) -> (Verdict, EvidenceList, Option<PanReason>) {
    let mut ev = EvidenceList::default();
    let mut verdict = tcp;
    let mut decided: Option<(usize, Judgement)> = None;
    let mut orderly: Option<(usize, Judgement)> = None;
    let mut decisive_alert = None;
    // With several points, the earliest decisive alert wins: a failure starts on
    // one leg and the middlebox passes it on (or reacts to it) on the other later.
    let when = |j: &Judgement| j.decisive.map_or(Timestamp(u64::MAX), |a| a.ts);
    for (i, (f, p)) in tls.iter_mut().zip(points).enumerate() {
        let j = judge(f, p, s.client, ended_by_capture);
        if let Some(a) = j.decisive {
            if decisive_alert.is_none_or(|(_, b): (usize, Alert)| a.ts < b.ts) {
                decisive_alert = Some((i, a));
            }
        }
        if j.outcome.is_some() && decided.is_none_or(|(_, d)| when(&j) < when(&d)) {
            decided = Some((i, j));
        }
        if j.close_before_rst.is_some() && orderly.is_none() {
            orderly = Some((i, j));
        }
    }
    let role = |f: &TlsFacts, side: crate::flow::Side| {
        if side == f.client.unwrap_or(s.client) {
            Role::Client
        } else {
            Role::Server
        }
    };
    if let Some((i, j)) = decided {
        let f = &tls[i];
        let point = PointId(i as u8);
        verdict = match j.outcome {
            Some(TlsOutcome::ClientRejectedCertificate) => Verdict::ClientRejectedCertificate,
            Some(TlsOutcome::ServerRejectedClientCertificate) => {
                Verdict::ServerRejectedClientCertificate
            }
            Some(TlsOutcome::HandshakeParameterMismatch) => Verdict::HandshakeParameterMismatch,
            Some(TlsOutcome::NoServerHello(answer)) => {
                ev.push(Evidence::NoServerHello { point, answer });
                Verdict::NoServerHello
            }
            Some(TlsOutcome::ClientAbandonedHandshake) => {
                ev.push(Evidence::HandshakeNoData { point });
                Verdict::ClientAbandonedHandshake
            }
            None => tcp,
        };
        if let Some(a) = j.decisive {
            ev.push(alert_evidence(point, f, role(f, a.side), &a));
        }
        if verdict == Verdict::ServerRejectedClientCertificate {
            ev.push(Evidence::CertRequested {
                point,
                client_cert: f.client_cert,
                inferred: f.is_tls13(),
            });
        }
    } else if let (Some((i, j)), Verdict::ResetByClient | Verdict::ResetByServer) = (orderly, tcp) {
        if let Some(side) = j.close_before_rst {
            ev.push(Evidence::CloseBeforeRst {
                point: PointId(i as u8),
                from: role(&tls[i], side),
            });
            verdict = Verdict::Ok;
        }
    }
    if verdict == tcp
        || matches!(
            verdict,
            Verdict::NoServerHello | Verdict::ClientAbandonedHandshake
        )
    {
        // A fatal alert that decided nothing is still worth showing.
        if let (Some((i, a)), None) = (decisive_alert, decided.and_then(|(_, j)| j.decisive)) {
            let f = &tls[i];
            ev.push(alert_evidence(PointId(i as u8), f, role(f, a.side), &a));
        }
    }
    for (i, f) in tls.iter().enumerate() {
        if f.handshake != crate::tls::observe::Handshake::Complete {
            for side in [crate::flow::Side::Lo, crate::flow::Side::Hi] {
                if f.dirs[side.index()].gap && f.client_hello.is_some() {
                    ev.push(Evidence::TlsGap {
                        point: PointId(i as u8),
                        from: role(f, side),
                    });
                }
            }
        }
    }
    for e in tcp_evidence.iter() {
        ev.push(*e);
    }
    // PAN-OS logs the decrypt reason of a fatal alert it saw; the end of a session
    // that TLS judged without an alert is named after its TCP close.
    let alert_based = !matches!(
        verdict,
        Verdict::NoServerHello | Verdict::ClientAbandonedHandshake
    );
    let pan = match decisive_alert {
        Some((_, a)) if alert_based && !a.encrypted && a.level == 2 => {
            Some(PanReason::for_alert(a.description))
        }
        Some((_, a)) if alert_based && a.encrypted && verdict != tcp => None,
        _ => match close_of(s, points) {
            Close::Rst {
                from: Role::Client, ..
            } => Some(PanReason::TcpRstFromClient),
            Close::Rst {
                from: Role::Server, ..
            } => Some(PanReason::TcpRstFromServer),
            Close::Open if matches!(verdict, Verdict::Timeout | Verdict::NoServerHello) => {
                Some(PanReason::AgedOut)
            }
            Close::Open => None,
            _ => Some(PanReason::TcpFin),
        },
    };
    (verdict, ev, pan)
}

/// Refines a verdict with what comparing two points showed (`cmp`): a session that
/// ended by an RST the middlebox forged becomes `middlebox_reset`; the two-point
/// facts go into the evidence after the first (deciding) item.
pub fn apply_comparison(
    verdict: Verdict,
    evidence: &EvidenceList,
    pan: Option<PanReason>,
    cmp: &Comparison,
) -> (Verdict, EvidenceList, Option<PanReason>) {
    let Some((client, server)) = cmp.points else {
        return (verdict, *evidence, pan);
    };
    let mut facts = EvidenceList::default();
    // Forged RSTs first: for middlebox_reset they are the deciding facts.
    let forged_first = cmp
        .unmatched()
        .filter(|u| u.rst && u.tamper == Tamper::Forged)
        .chain(
            cmp.unmatched()
                .filter(|u| !(u.rst && u.tamper == Tamper::Forged)),
        );
    for u in forged_first {
        facts.push(Evidence::Tampered {
            point: u.point,
            other: u.other,
            toward: u.toward,
            tamper: u.tamper,
            rst: u.rst,
            ttl: u.seg.ttl,
            sender_ttl: u.sender_ttl,
            confident: u.confident(),
            other_count: u.other_count,
            unseen: u.unseen,
        });
    }
    if cmp.interception.any() {
        facts.push(Evidence::Intercepted {
            client,
            server,
            what: cmp.interception,
        });
    }
    if let Some((client_version, server_version)) = cmp.downgrade {
        facts.push(Evidence::Downgrade {
            client,
            server,
            client_version,
            server_version,
        });
    }
    if let Some((failed, completed)) = cmp.failed_leg {
        facts.push(Evidence::FailedLeg { failed, completed });
    }
    let reset = matches!(
        verdict,
        Verdict::ResetByClient
            | Verdict::ResetByServer
            | Verdict::Rejected
            | Verdict::NoServerHello
    );
    let (verdict, pan) = match cmp.forged_rst() {
        Some(_) if reset => (Verdict::MiddleboxReset, Some(PanReason::PolicyDeny)),
        _ => (verdict, pan),
    };
    let mut ev = EvidenceList::default();
    let mut rest = evidence.iter();
    if verdict != Verdict::MiddleboxReset {
        if let Some(first) = rest.next() {
            ev.push(*first);
        }
    }
    for e in facts.iter().chain(rest) {
        ev.push(*e);
    }
    (verdict, ev, pan)
}

/// Adds the single-point suspicions of medium or high confidence to the evidence,
/// after the first (deciding) sentence (low ones are in `suspect_rst` only). They
/// do not change the verdict: they are signs, not proof.
pub fn add_suspects(evidence: &mut EvidenceList, suspects: &[Option<Suspect>; 2]) {
    let shown = suspects
        .iter()
        .flatten()
        .filter(|u| u.confidence() >= Suspicion::Medium);
    for (at, u) in (1..).zip(shown) {
        evidence.insert(
            at,
            Evidence::SuspectRst {
                point: u.point,
                from: u.from,
                signs: u.signs,
                confidence: u.confidence(),
                ttl: u.seg.ttl,
                usual_ttl: u.usual_ttl,
            },
        );
    }
}
