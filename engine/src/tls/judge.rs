//! Judging one capture point's TLS facts when its session ends: how far the
//! handshake got, which alerts encryption hid, and whether TLS explains the end
//! (docs/verdicts.md, docs/design/tls-observation.md sections 5 and 8).
//!
//! TLS 1.3 encrypts everything after the ServerHello, alerts included, so an alert
//! is inferred from where a short protected record falls, never from one exact
//! length: records may be padded, and the smallest Finished depends on the cipher.
//! The rules:
//! 1. The client's first protected record after the ServerHello is shorter than the
//!    smallest Finished, and no client record that long follows: the client aborted
//!    the handshake with an encrypted alert (a rejected certificate, typically).
//! 2. Before the client's first protected record, the server sends one shorter
//!    than the smallest EncryptedExtensions (no message of its first flight is
//!    that short): an encrypted server alert.
//! 3. After the client's flight, the server sends only short records, before the
//!    client closes and before any client data: an encrypted server alert. If the
//!    client's flight held more than one record, it carried a Certificate: the
//!    server asked for one.
//! 4. Once application data has flowed both ways, a short record is a close_notify
//!    or another post-handshake alert, never an abort.

use super::observe::{is_tls13, Alert, ClientCert, Handshake, Log13, LoggedRecord, TlsFacts};
use super::record::content;
use crate::flow::Side;
use crate::session::PointState;
use crate::time::Timestamp;

/// Smallest protected records of a TLS 1.3 cipher suite (RFC 8446 5.2: content,
/// one byte of inner type, no padding, the AEAD tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinSizes {
    /// Finished: the suite's hash length + 4-byte header + 1 + tag.
    pub finished: u16,
    /// EncryptedExtensions with no extension: 4 + 2 + 1 + tag.
    pub encrypted_extensions: u16,
}

impl MinSizes {
    pub fn for_cipher(cipher: u16) -> MinSizes {
        let (hash, tag) = match cipher {
            0x1302 => (48, 16),
            0x1305 => (32, 8),
            // Drafts negotiated TLS 1.2 suites: the PRF hash decides.
            c if super::names::cipher_name(c).is_some_and(|n| n.ends_with("SHA384")) => (48, 16),
            _ => (32, 16),
        };
        MinSizes {
            finished: hash + 4 + 1 + tag,
            encrypted_extensions: 4 + 2 + 1 + tag,
        }
    }
}

/// Why a point's TLS ended the session, when it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    ClientRejectedCertificate,
    ServerRejectedClientCertificate,
    HandshakeParameterMismatch,
    NoServerHello(NoServerHello),
    ClientAbandonedHandshake,
}

/// What the server did instead of a ServerHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoServerHello {
    Fin,
    Rst,
    NotTls,
    /// Nothing until the idle timeout.
    Silence,
    /// Nothing before the client gave up (closed).
    ClientClosed,
}

/// The outcome of judging one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Judgement {
    pub outcome: Option<TlsOutcome>,
    /// The alert that decided the outcome.
    pub decisive: Option<Alert>,
    /// The handshake completed and application data flowed both ways.
    pub data_both_ways: bool,
    /// The client sent application data.
    pub client_data: bool,
    /// The server asked for a client certificate (TLS 1.3: inferred).
    pub cert_asked: bool,
    /// An encrypted close (close_notify or another alert after data) preceded the
    /// first RST at this point, from this side: the RST ends an orderly session.
    pub close_before_rst: Option<Side>,
}

/// Alerts that say the peer's certificate was refused (RFC 8446 6.2).
pub fn is_certificate_alert(desc: u8) -> bool {
    matches!(desc, 42..=46 | 48 | 49 | 113 | 114)
}

/// Alerts with which a server refuses a client's certificate (or its absence).
fn is_client_cert_refusal(desc: u8) -> bool {
    matches!(desc, 40 | 42..=46 | 48 | 49 | 51 | 116)
}

/// Alerts that say the two ends could not agree on parameters.
pub fn is_parameter_alert(desc: u8) -> bool {
    matches!(desc, 40 | 47 | 70 | 71 | 86 | 109 | 110 | 112 | 120)
}

fn first_close(p: &PointState, side: Side) -> Option<Timestamp> {
    let d = &p.dirs[side.index()];
    match (d.fin().map(|e| e.ts), d.rst().map(|e| e.ts)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn protected(r: &LoggedRecord) -> bool {
    r.content_type == content::APPLICATION_DATA
}

/// Judges one point: infers hidden alerts (added to `f.alerts`), sets
/// `f.handshake`, and says whether TLS explains the end. `client` is the session's
/// client; the end that sent the ClientHello wins if known. `ended_by_capture`: the
/// capture ended (or the table was full) before the session did.
pub fn judge(f: &mut TlsFacts, p: &PointState, client: Side, ended_by_capture: bool) -> Judgement {
    let mut j = Judgement::default();
    if !f.detected {
        return j;
    }
    let c = f.client.unwrap_or(client);
    let s = c.other();
    let client_close = first_close(p, c);
    let server_close = first_close(p, s);
    let log_complete = f.log_dropped == 0;

    let mut complete;
    if f.is_tls13() {
        let sh = f.server_hello.unwrap_or_default();
        let min = MinSizes::for_cipher(sh.cipher);
        if let Log13::Settled { cert_asked } = f.log13 {
            // Decided while the session was open ([`settled`]): the log keeps only
            // rule 2's record, if any.
            if f.nlog > 0 {
                let r = f.log[0];
                push_inferred(f, &r, false);
            }
            complete = true;
            j.client_data = true;
            j.cert_asked = cert_asked;
            j.data_both_ways = true;
        } else {
            let start = usize::from(f.after_server_hello).min(usize::from(f.nlog));
            let log = f.log;
            let ch = f.client_hello;
            let early = ch.is_some_and(|ch| ch.offers_early_data);
            let fl = flights(&log[..usize::from(f.nlog)], start, c, min, early);
            if let Some(r) = fl.rule2 {
                push_inferred(f, &r, false);
            }
            complete = false;
            if let Some((_, r0)) = fl.first {
                if !fl.any_finished {
                    // Rule 1.
                    push_inferred(f, &r0, false);
                } else {
                    complete = true;
                    j.client_data = fl.client_data()
                        || (!log_complete && f.dirs[c.index()].app_records as usize > fl.n_flight);
                    j.cert_asked = fl.cert_asked(min);
                    // Rule 3: the server answers the flight with short records only,
                    // before the client closes or sends data.
                    if let Some(a) = fl.server_post_first {
                        if a.len < min.finished
                            && !fl.server_post_long
                            && !fl.client_before
                            && client_close.is_none_or(|t| { a.ts } < t)
                            && log_complete
                        {
                            push_inferred(f, &a, false);
                            complete = false;
                        }
                    }
                    let server_data =
                        fl.server_post_long || (!log_complete && f.dirs[s.index()].app_records > 0);
                    j.data_both_ways = complete && j.client_data && server_data;
                }
            }
        }
        // Rule 4: a short record closing a session that carried data.
        if j.data_both_ways {
            j.close_before_rst = close_before_rst(f, p, |r| protected(r) && r.len < min.finished);
        }
    } else {
        let [d0, d1] = &f.dirs;
        complete = d0.ccs.get().is_some()
            && d1.ccs.get().is_some()
            && d0.encrypted_handshake > 0
            && d1.encrypted_handshake > 0;
        j.client_data = f.dirs[c.index()].app_records > 0;
        j.cert_asked = f.cert_request;
        j.data_both_ways = complete && f.data_both_ways();
        if j.data_both_ways {
            j.close_before_rst = close_before_rst(f, p, |r| r.content_type == content::ALERT);
        }
    }

    // The decisive alert: the first fatal (or unreadable) one while the handshake
    // was not complete. Once it is, alerts are closes (TLS 1.2 encrypts them after
    // ChangeCipherSpec; TLS 1.3 ones that abort were made to undo `complete`).
    let decisive = if complete {
        None
    } else {
        f.alerts()
            .iter()
            .filter(|a| a.fatal_or_unknown() && !a.after_data)
            .min_by_key(|a| a.ts)
            .copied()
    };
    let closed = client_close.is_some() || server_close.is_some();
    f.handshake = if f.client_hello.is_none() && f.server_hello.is_none() {
        Handshake::None
    } else if complete {
        Handshake::Complete
    } else if decisive.is_some() || closed {
        Handshake::Aborted
    } else if f.server_hello.is_some_and(|sh| !sh.hello_retry) || f.sslv2_server.is_some() {
        Handshake::ServerHello
    } else {
        Handshake::ClientHello
    };

    if let Some(a) = decisive {
        j.decisive = Some(a);
        j.outcome = alert_outcome(f, &a, c, j.cert_asked);
        if j.outcome.is_some() {
            return j;
        }
    }
    if f.client_hello.is_some()
        && f.server_hello.is_none()
        && f.sslv2_server.is_none()
        && f.alerts().iter().all(|a| a.side != s)
    {
        let sd = &f.dirs[s.index()];
        let server_sent = p.dirs[s.index()].payload_bytes > 0;
        let why = if sd.not_tls {
            Some(NoServerHello::NotTls)
        } else if server_sent || sd.gap || p.dirs[s.index()].acked_unseen > 0 {
            // The server said something the capture could not read: undecided.
            None
        } else if let Some(first) = first_close(p, s) {
            // Whichever the server sent first.
            if p.dirs[s.index()].fin().is_some_and(|e| e.ts == first) {
                Some(NoServerHello::Fin)
            } else {
                Some(NoServerHello::Rst)
            }
        } else if client_close.is_some() {
            Some(NoServerHello::ClientClosed)
        } else if !ended_by_capture {
            Some(NoServerHello::Silence)
        } else {
            None
        };
        j.outcome = why.map(TlsOutcome::NoServerHello);
        return j;
    }
    if complete && !j.client_data {
        let client_alert = f
            .alerts()
            .iter()
            .filter(|a| a.side == c)
            .map(|a| a.ts)
            .min();
        let client_end = match (client_close, client_alert) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(t) = client_end {
            if server_close.is_none_or(|st| t <= st) {
                j.outcome = Some(TlsOutcome::ClientAbandonedHandshake);
            }
        }
    }
    j
}

/// The verdict a decisive alert gives.
fn alert_outcome(f: &TlsFacts, a: &Alert, client: Side, cert_asked: bool) -> Option<TlsOutcome> {
    let known = !a.encrypted;
    if a.side == client {
        if (known && is_certificate_alert(a.description)) || (!known && a.inferred) {
            return Some(TlsOutcome::ClientRejectedCertificate);
        }
    } else if cert_asked
        && (f.client_cert != ClientCert::None || f.is_tls13())
        && (!known || is_client_cert_refusal(a.description))
    {
        return Some(TlsOutcome::ServerRejectedClientCertificate);
    }
    if known && is_parameter_alert(a.description) {
        return Some(TlsOutcome::HandshakeParameterMismatch);
    }
    None
}

/// What the TLS 1.3 rules read from a point's record log: the client's first
/// flight and what each end sent around it.
#[derive(Clone, Copy, Debug, Default)]
struct Flights {
    /// The client sent protected records before the ServerHello (early data).
    early_data: bool,
    /// Rule 2's record: the server's, too short for its first flight.
    rule2: Option<LoggedRecord>,
    /// The client's flight: where it starts after the ServerHello, its first record.
    first: Option<(usize, LoggedRecord)>,
    /// Records in the flight, and those of Finished size or more.
    n_flight: usize,
    big: usize,
    /// A client record of Finished size or more from the flight on.
    any_finished: bool,
    /// Client records after its Finished (after its Certificate, CertificateVerify
    /// and Finished when the flight had three long records), and whether one was
    /// long.
    after_fin: usize,
    after_fin_long: bool,
    /// The server's first record after the client's flight, whether any of its
    /// records from there was long, and whether a client record after the flight
    /// came no later than that first one.
    server_post_first: Option<LoggedRecord>,
    server_post_long: bool,
    client_before: bool,
}

impl Flights {
    /// The client sent data after its handshake, as far as the log shows.
    fn client_data(&self) -> bool {
        self.early_data || self.after_fin_long || self.after_fin >= 2
    }

    /// The client's flight carried a Certificate: an empty one (shorter than a
    /// Finished) before the Finished, or Certificate, CertificateVerify and Finished.
    fn cert_asked(&self, min: MinSizes) -> bool {
        self.first
            .is_some_and(|(_, r0)| r0.len < min.finished && self.n_flight >= 2)
            || self.big >= 3
    }
}

/// Reads the flights from `log`, whose records from `start` follow the last
/// ServerHello; `c` is the client.
fn flights(log: &[LoggedRecord], start: usize, c: Side, min: MinSizes, early: bool) -> Flights {
    let s = c.other();
    let mut fl = Flights::default();
    let after = &log[start..];
    fl.early_data = log[..start].iter().any(|r| r.side == c && protected(r));

    // Rule 2: a server record too short for any message of its first flight,
    // before the client's first protected record.
    let client_first = after
        .iter()
        .position(|r| r.side == c && protected(r))
        .unwrap_or(after.len());
    fl.rule2 = after[..client_first]
        .iter()
        .find(|r| r.side == s && protected(r) && r.len < min.encrypted_extensions)
        .copied();
    // The client's flight: its protected records until the server answers.
    let mut client_recs = after
        .iter()
        .enumerate()
        .filter(|(_, r)| r.side == c && protected(r));
    let first = client_recs.next();
    // An EndOfEarlyData (client offered early data) may come first.
    let first = match first {
        Some((_, r))
            if early
                && r.len < min.finished
                && after
                    .iter()
                    .any(|x| x.side == c && protected(x) && x.len >= min.finished) =>
        {
            client_recs.next()
        }
        other => other,
    };
    let Some((i, r0)) = first else {
        return fl;
    };
    fl.first = Some((i, *r0));
    let flight_end = after[i..]
        .iter()
        .position(|r| r.side == s && protected(r))
        .map_or(after.len(), |k| i + k);
    let flight = after[i..flight_end]
        .iter()
        .filter(|r| r.side == c && protected(r));
    fl.n_flight = flight.clone().count();
    fl.big = flight.filter(|r| r.len >= min.finished).count();
    fl.any_finished = after[i..]
        .iter()
        .any(|r| r.side == c && protected(r) && r.len >= min.finished);
    // A flight of Certificate, CertificateVerify and Finished has three long
    // records; without a certificate, Finished is the one. What the client sends
    // after its Finished is data, except a last short record (its close_notify or
    // another alert).
    let hs_big = if fl.big >= 3 { 3 } else { 1 };
    let mut seen_big = 0;
    for r in after[i..].iter().filter(|r| r.side == c && protected(r)) {
        if seen_big < hs_big {
            seen_big += usize::from(r.len >= min.finished);
        } else {
            fl.after_fin += 1;
            fl.after_fin_long |= r.len >= min.finished;
        }
    }
    let post = &after[flight_end..];
    let mut server_post = post.iter().filter(|r| r.side == s && protected(r));
    fl.server_post_first = server_post.clone().next().copied();
    fl.server_post_long = server_post.any(|r| r.len >= min.finished);
    if let Some(a) = fl.server_post_first {
        fl.client_before = post
            .iter()
            .filter(|r| r.side == c && protected(r))
            .any(|r| { r.ts } <= { a.ts });
    }
    fl
}

/// Whether the TLS 1.3 rules have decided what they will say of this point,
/// whatever records follow: the client's flight is complete and it sent data
/// after it, and the server answered with a long record. What they say then
/// depends on the log only through rule 2's record and whether the client's
/// flight carried a Certificate ([`Log13::Settled`]), so the log need not be kept
/// further. `log` is the point's log so far (the first records, as `judge` sees
/// them); `c` its client.
pub fn settled(
    log: &[LoggedRecord],
    start: usize,
    c: Side,
    cipher: u16,
    early: bool,
) -> Option<(Option<LoggedRecord>, bool)> {
    let min = MinSizes::for_cipher(cipher);
    let fl = flights(log, start.min(log.len()), c, min, early);
    (fl.first.is_some() && fl.any_finished && fl.client_data() && fl.server_post_long)
        .then(|| (fl.rule2, fl.cert_asked(min)))
}

fn push_inferred(f: &mut TlsFacts, r: &LoggedRecord, after_data: bool) {
    let peer = r.side.other().index();
    let answers = f.dirs[peer].last_message;
    f.push_alert(Alert {
        ts: r.ts,
        side: r.side,
        level: 0,
        description: 0,
        encrypted: true,
        inferred: true,
        len: r.len,
        after_data,
        answers,
    });
}

/// The side whose last record (a close) came before the first RST at this point.
fn close_before_rst(
    f: &TlsFacts,
    p: &PointState,
    is_close: impl Fn(&LoggedRecord) -> bool,
) -> Option<Side> {
    let rst = [Side::Lo, Side::Hi]
        .into_iter()
        .filter_map(|sd| p.dirs[sd.index()].rst().map(|e| e.ts))
        .min()?;
    [Side::Lo, Side::Hi].into_iter().find(|sd| {
        f.dirs[sd.index()]
            .last_record
            .is_some_and(|r| is_close(&r) && { r.ts } <= rst)
    })
}

/// The negotiated version is TLS 1.3 (or a draft).
pub fn tls13(f: &TlsFacts) -> bool {
    f.version().is_some_and(is_tls13)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::hello::{ClientHello, ServerHello};
    use crate::tls::observe::{TlsCore, MAX_LOG};
    use proptest::prelude::*;

    /// A point's facts with `log` (its first records), the ServerHello's record
    /// at `start - 1`, and the counters the rules read.
    fn facts(
        log: &[LoggedRecord],
        start: usize,
        cipher: u16,
        early: bool,
        dropped: u32,
    ) -> TlsFacts {
        let mut f = TlsFacts {
            core: TlsCore {
                detected: true,
                client: Some(Side::Lo),
                server_hello: Some(ServerHello {
                    legacy_version: 0x0303,
                    version: 0x0304,
                    cipher,
                    ..ServerHello::default()
                }),
                after_server_hello: start as u8,
                nlog: log.len() as u8,
                log_dropped: dropped,
                ..TlsCore::default()
            },
            client_hello: Some(ClientHello {
                offers_early_data: early,
                ..ClientHello::default()
            }),
            ..TlsFacts::default()
        };
        f.log[..log.len()].copy_from_slice(log);
        for r in log {
            if protected(r) {
                f.dirs[r.side.index()].app_records += 1;
            }
        }
        f.dirs[0].app_records += dropped;
        f
    }

    fn record() -> impl Strategy<Value = LoggedRecord> {
        // Lengths around the thresholds (EncryptedExtensions 23, Finished 45 to
        // 69), mostly protected records.
        (
            any::<bool>(),
            0u8..8,
            prop_oneof![0u16..80, 80u16..20_000],
            0u64..40,
        )
            .prop_map(|(hi, ct, len, ts)| LoggedRecord {
                ts: Timestamp(ts),
                side: if hi { Side::Hi } else { Side::Lo },
                content_type: if ct < 6 {
                    content::APPLICATION_DATA
                } else {
                    content::HANDSHAKE
                },
                len,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Settling while the session is open ([`settled`] on the log so far, the
        /// log then given back but for rule 2's record) judges exactly as the whole
        /// log would: whatever records came after, however the log ended (full or
        /// not), and whenever the client closed.
        #[test]
        fn settled_judges_as_the_whole_log(
            log in proptest::collection::vec(record(), 1..MAX_LOG),
            start in 0usize..4,
            cipher in prop_oneof![Just(0x1301u16), Just(0x1302), Just(0x1305)],
            early in any::<bool>(),
            dropped in prop_oneof![Just(0u32), 1u32..5],
            close in proptest::option::of(0u64..40),
            captured_end in any::<bool>(),
        ) {
            let start = start.min(log.len());
            let settle_at = (start + 1..=log.len())
                .find(|&k| settled(&log[..k], start, Side::Lo, cipher, early).is_some());
            let Some(k) = settle_at else {
                return Ok(());
            };
            let (rule2, cert_asked) = settled(&log[..k], start, Side::Lo, cipher, early).unwrap();
            let mut p = PointState::default();
            if let Some(t) = close {
                let fin = crate::tcp::SegEvent { ts: Timestamp(t), ..Default::default() };
                p.dirs[0] = crate::tcp::DirState::new(p.dirs[0].live, None, Some(fin));
                p.dirs[0].live.fin_count = 1;
            }
            let mut whole = facts(&log, start, cipher, early, dropped);
            let mut kept = whole;
            kept.log13 = Log13::Settled { cert_asked };
            kept.nlog = 0;
            if let Some(r) = rule2 {
                kept.log[0] = r;
                kept.nlog = 1;
            }
            let a = judge(&mut whole, &p, Side::Lo, captured_end);
            let b = judge(&mut kept, &p, Side::Lo, captured_end);
            prop_assert_eq!(a, b);
            prop_assert_eq!(whole.alerts(), kept.alerts());
            prop_assert_eq!(whole.handshake, kept.handshake);
        }
    }

    #[test]
    fn test_min_sizes_follow_the_cipher() {
        assert_eq!(MinSizes::for_cipher(0x1301).finished, 53);
        assert_eq!(MinSizes::for_cipher(0x1302).finished, 69);
        assert_eq!(MinSizes::for_cipher(0x1303).finished, 53);
        assert_eq!(MinSizes::for_cipher(0x1305).finished, 45);
        assert_eq!(MinSizes::for_cipher(0x1301).encrypted_extensions, 23);
    }
}
