//! The TLS record layer on real captures: the handshake messages and alerts that
//! tshark shows (`tshark -r FILE -Y tls -T fields -e tls.handshake.type -e
//! tls.alert_message.desc`) come out of `tls::record::RecordReader` fed with each
//! direction's TCP payload in sequence order.

use std::collections::BTreeMap;
use std::path::Path;

use engine::capture::CaptureReader;
use engine::tls::record::{Event, RecordReader};
use engine::wire::decode;

/// Per direction (source port), the TCP payload in sequence order, retransmissions
/// dropped (these captures have no gaps).
fn streams(file: &str) -> BTreeMap<u16, Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(file);
    let data = std::fs::read(path).unwrap();
    let mut segs: BTreeMap<u16, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for f in CaptureReader::new(&data).unwrap().flatten() {
        let Ok(p) = decode(f.link, f.data, f.wire_len) else {
            continue;
        };
        if p.payload_captured == 0 {
            continue;
        }
        let at = p.payload_offset as usize;
        let body = f.data[at..at + p.payload_captured as usize].to_vec();
        segs.entry(p.src.port)
            .or_default()
            .entry(p.seq)
            .or_insert(body);
    }
    segs.into_iter()
        .map(|(port, s)| (port, s.into_values().flatten().collect()))
        .collect()
}

fn events(stream: &[u8]) -> (Vec<u8>, Vec<(u8, u8)>) {
    let mut r = RecordReader::new(65_536);
    let (mut hs, mut alerts) = (Vec::new(), Vec::new());
    r.feed(stream, &mut |e| match e {
        Event::Handshake { msg_type, .. } => hs.push(msg_type),
        Event::Alert { level, description } => alerts.push((level, description)),
        _ => {}
    });
    (hs, alerts)
}

/// CurveBall test site: the client rejects the certificate with a fatal
/// certificate_unknown (46) alert after the server's Certificate (tshark: handshake
/// types 1 | 2, 11, 12, 14 and alert 46 from the client).
#[test]
fn curveball_client_rejects_certificate() {
    let s = streams("arkime/badcurveball.pcap");
    let client = s.keys().copied().find(|&p| p != 443).unwrap();
    let (client_hs, client_alerts) = events(&s[&client]);
    let (server_hs, server_alerts) = events(&s[&443]);
    assert_eq!(client_hs, vec![1], "ClientHello");
    assert_eq!(client_alerts, vec![(2, 46)], "fatal certificate_unknown");
    assert_eq!(
        &server_hs[..3],
        &[2, 11, 12],
        "ServerHello, Certificate, ServerKeyExchange"
    );
    assert!(server_hs.contains(&14), "ServerHelloDone");
    assert!(server_alerts.is_empty());
}

/// Zeek's tls-1.2-handshake-failure: ClientHello answered by a fatal
/// handshake_failure (40) from the server.
#[test]
fn server_handshake_failure_alert() {
    let s = streams("zeek/tls-1.2-handshake-failure.pcap");
    let (alerts_by_dir, hs_by_dir): (Vec<_>, Vec<_>) = s
        .values()
        .map(|st| {
            let (hs, al) = events(st);
            (al, hs)
        })
        .unzip();
    assert!(
        hs_by_dir.iter().any(|h| h == &vec![1]),
        "one direction sent just a ClientHello: {hs_by_dir:?}"
    );
    assert!(
        alerts_by_dir.iter().any(|a| a == &vec![(2, 40)]),
        "fatal handshake_failure: {alerts_by_dir:?}"
    );
}
