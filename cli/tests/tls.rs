//! TLS verdicts, end to end, session by session, with expectations checked by hand
//! against tshark 4.0.17 (and the key logs of our own captures):
//! - every capture of tests/captures/tls/ (its README.md gives, per frame, what tshark
//!   shows and what the key log decrypts);
//! - the key sessions of the corpus (docs/design/tls-observation.md section 6, and the
//!   JA4/JA3 and leaf-certificate tables of sections 4 and 6).
//!
//! Frame numbers (`fN`) are tshark's, `C` is the client and `S` the server. tshark was run
//! as `tshark -n -o tcp.reassemble_out_of_order:TRUE -r F -d tcp.port==443,tls -Y tls
//! -T fields -e frame.number -e ip.src -e tcp.srcport -e tls.record.content_type
//! -e tls.record.opaque_type -e tls.handshake.type -e tls.alert_message.level
//! -e tls.alert_message.desc -e tls.record.length`. Where tapwatch reports something
//! tshark does not show, the row says why. The kinds:
//! - [ENC12] a TLS <= 1.2 alert after the sender's ChangeCipherSpec: tshark shows a
//!   content type 21 record ("Encrypted Alert") with no level and no description;
//!   tapwatch reports it with `encrypted: true`, level and description `unknown`.
//! - [ENC13] a TLS 1.3 alert: tshark shows only an `opaque_type 23` record; tapwatch
//!   infers the alert from the record's size and position (`inferred: true`).
//! - [SSLV2] an SSLv2-format ClientHello: tshark shows its record length only; tapwatch
//!   reads it but computes no JA4/JA3 (as Suricata and FoxIO) and writes no
//!   `client_random`.
//! - [OOO] tshark sees the records only with `-o tcp.reassemble_out_of_order:TRUE`.
//! - [PORT] TLS on a port tshark does not dissect as TLS: it needs `-d tcp.port==N,tls`;
//!   tapwatch detects TLS by content.
//! - [CLOSE13] a TLS 1.3 close_notify after data both ways (tshark: opaque 19): not
//!   listed in `alerts`, by design (docs/verdicts.md, "Alert" and rule 4 of "TLS 1.3:
//!   inferred alerts"; the design note's section 5 had proposed listing it).
//!
//! `tls_crosscheck_against_tshark` runs scripts/tls-crosscheck.py, which checks the
//! plaintext alerts and the hellos of every TLS session of every capture against tshark.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const C: &str = "client";
const S: &str = "server";

/// One alert as tapwatch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct A<'a> {
    from: &'a str,
    level: &'a str,
    desc: &'a str,
    encrypted: bool,
    inferred: bool,
    after_data: bool,
    len: u64,
}

/// A plaintext alert: tshark shows the same level and description (a 2-byte record).
const fn plain(from: &'static str, level: &'static str, desc: &'static str) -> A<'static> {
    A {
        from,
        level,
        desc,
        encrypted: false,
        inferred: false,
        after_data: false,
        len: 2,
    }
}

/// [ENC12] A TLS <= 1.2 alert record after ChangeCipherSpec (content type 21).
const fn enc12(from: &'static str, len: u64, after_data: bool) -> A<'static> {
    A {
        from,
        level: "unknown",
        desc: "unknown",
        encrypted: true,
        inferred: false,
        after_data,
        len,
    }
}

/// [ENC13] A TLS 1.3 alert inferred from a short protected record.
const fn inferred(from: &'static str, len: u64) -> A<'static> {
    A {
        from,
        level: "unknown",
        desc: "unknown",
        encrypted: true,
        inferred: true,
        after_data: false,
        len,
    }
}

/// One session: the capture (under tests/), the client's port (which picks the
/// session), and what tapwatch must say about it.
#[derive(Debug)]
struct Row {
    cap: &'static str,
    port: u16,
    verdict: &'static str,
    pan: Option<&'static str>,
    hs: &'static str,
    ver: Option<&'static str>,
    /// In the order tapwatch lists them: read ones by time, then inferred ones.
    alerts: &'static [A<'static>],
    /// JSON pointer under the point, and the value (`null`, `true`, numbers as text).
    facts: &'static [(&'static str, &'static str)],
}

const fn ja4(v: &'static str) -> (&'static str, &'static str) {
    ("/ja4", v)
}
const fn leaf(v: &'static str) -> (&'static str, &'static str) {
    ("/leaf_cert_sha256", v)
}
/// TLS 1.3: the certificate is encrypted.
const NO_LEAF: (&str, &str) = ("/leaf_cert_sha256", "null");
const NOT_TLS_ANSWER: (&str, &str) = ("/tls/server/not_tls", "true");

// JA4 of our clients, each recomputed from the ClientHello bytes tshark shows (an
// independent implementation of FoxIO's JA4.md); tshark 4.0 has no JA4 field.
/// `s_client -tls1_2` (28 ciphers, 7 extensions).
const JA4_OSSL12: &str = "t12d280700_d943125447b4_e7e480e5a997";
/// `s_client` offering TLS 1.3 only (4 ciphers: 0x1302, 0x1303, 0x1301 + SCSV).
const JA4_OSSL13: &str = "t13d041000_16476d049b0b_78f1d400d464";
/// `s_client` with no version flag (1.3 to 1.0).
const JA4_OSSL_ANY: &str = "t13d311000_e8f1e7e78f70_1f22a2ca17c4";
/// `gnutls-cli` 3.7.9, TLS 1.3 only.
const JA4_GNUTLS13: &str = "t13d041300_9caa18292e23_2cc26d266019";
/// `CN=server.test`, the server leaf of the OpenSSL/Python captures (the DER tshark
/// shows in the Certificate message, through sha256sum).
const LEAF_SERVER_TEST: &str = "61afe9a02b2eb7f1e9ce4d5b580c40ce16a36a5e8e4e05814c78675e4369ccc0";

const TLS: &str = "captures/tls";

#[rustfmt::skip]
const ROWS: &[Row] = &[
    // ---------------------------------------------------------------- tests/captures/tls
    // Handshake in f6+f8 / f10 / f11, data f12-f13; f14 S and f16 C: 26-byte type-21
    // records after data [ENC12] (close_notify, per the key log).
    Row { cap: "captures/tls/tls12-ok.pcap", port: 40301, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.2"),
          alerts: &[enc12(S, 26, true), enc12(C, 26, true)],
          facts: &[ja4(JA4_OSSL12), leaf(LEAF_SERVER_TEST), ("/leaf_cert_issuer", "CN=tapwatch test CA"), ("/tls/cert_chain_len", "2"),
                   ("/tls/cipher", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"), ("/tls/sni", "server.test")] },
    // f16 S and f18 C: opaque 19 after data both ways (close_notify) [CLOSE13].
    Row { cap: "captures/tls/tls13-ok.pcap", port: 40302, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4(JA4_OSSL13), NO_LEAF, ("/tls/cipher", "TLS_AES_256_GCM_SHA384")] },
    // f10: C plaintext fatal unknown_ca (48), 2 bytes, right after the server's flight.
    Row { cap: "captures/tls/tls12-client-rejects-ca.pcap", port: 40303, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.2"),
          alerts: &[plain(C, "fatal", "unknown_ca")], facts: &[ja4(JA4_OSSL12), leaf(LEAF_SERVER_TEST)] },
    // f10: C plaintext fatal unknown_ca after the encrypted server flight (OpenSSL's
    // middlebox-compatibility mode writes it before switching keys).
    Row { cap: "captures/tls/tls13-client-rejects-ca.pcap", port: 40304, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.3"),
          alerts: &[plain(C, "fatal", "unknown_ca")], facts: &[ja4(JA4_OSSL13), NO_LEAF] },
    // `-no_middlebox`: still plaintext with OpenSSL 3.0 (README "Differences" item 1).
    Row { cap: "captures/tls/tls13-client-rejects-ca-nomb.pcap", port: 40305, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.3"),
          alerts: &[plain(C, "fatal", "unknown_ca")], facts: &[NO_LEAF, ("/tls/cipher", "TLS_AES_256_GCM_SHA384")] },
    // S f8 has a CertificateRequest; C f10 an empty Certificate (7 bytes); f11 S
    // plaintext fatal handshake_failure (40).
    Row { cap: "captures/tls/tls12-mtls-no-client-cert.pcap", port: 40306, verdict: "server_rejected_client_certificate", pan: Some("decrypt-unsupport-param"), hs: "aborted", ver: Some("1.2"),
          alerts: &[plain(S, "fatal", "handshake_failure")],
          facts: &[ja4(JA4_OSSL12), leaf(LEAF_SERVER_TEST), ("/tls/cert_request", "true"), ("/tls/client_cert", "empty")] },
    // f11: S opaque 19 right after the client's flight [ENC13] (the key log: fatal
    // certificate_required (116)). The description is unknown, so no PAN hint.
    Row { cap: "captures/tls/tls13-mtls-no-client-cert.pcap", port: 40307, verdict: "server_rejected_client_certificate", pan: None, hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(S, 19)], facts: &[ja4(JA4_OSSL13), NO_LEAF] },
    // As 40307, but C f11 (the GET, opaque 44) comes before S f12 opaque 19 [ENC13].
    Row { cap: "captures/tls/tls13-mtls-no-client-cert-request.pcap", port: 40318, verdict: "server_rejected_client_certificate", pan: None, hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(S, 19)], facts: &[ja4(JA4_OSSL13)] },
    // Client certificate sent (C f10+f11: Certificate 2042); f16 S, f18 C: 26-byte
    // type-21 records after data [ENC12].
    Row { cap: "captures/tls/tls12-mtls-ok.pcap", port: 40308, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.2"),
          alerts: &[enc12(S, 26, true), enc12(C, 26, true)],
          facts: &[ja4(JA4_OSSL12), leaf(LEAF_SERVER_TEST), ("/tls/cert_request", "true"), ("/tls/client_cert", "sent")] },
    // f18 S and f20 C: opaque 19 after data (close_notify) [CLOSE13].
    Row { cap: "captures/tls/tls13-mtls-ok.pcap", port: 40309, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4(JA4_OSSL13), NO_LEAF] },
    // f6: S plaintext fatal protocol_version (70) answers the ClientHello; no ServerHello.
    Row { cap: "captures/tls/tls-version-mismatch.pcap", port: 40310, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-error"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "protocol_version")], facts: &[ja4(JA4_OSSL13), ("/tls/cipher", "null")] },
    // f6: S plaintext fatal handshake_failure (40): no shared cipher.
    Row { cap: "captures/tls/tls12-cipher-mismatch.pcap", port: 40311, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-unsupport-param"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "handshake_failure")], facts: &[ja4("t12d030700_5b3c101289ec_e7e480e5a997")] },
    // f10: C (Python ssl) plaintext fatal unknown_ca, then C RST/ACK f11: the TLS
    // verdict wins over reset_by_client.
    Row { cap: "captures/tls/py-client-rejects-ca.pcap", port: 40312, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.3"),
          alerts: &[plain(C, "fatal", "unknown_ca")], facts: &[ja4("t13d181100_85036bcba153_d41ae481755e")] },
    // Handshake complete (C f10 CCS + Finished 69), two tickets, no alert, no client
    // data, C RST/ACK f15.
    Row { cap: "captures/tls/py-pinned-abandon-tls13.pcap", port: 40313, verdict: "client_abandoned_handshake", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4(JA4_OSSL13)] },
    // Handshake complete; C FIN f13; S f14 a 26-byte type-21 record [ENC12] (the key
    // log: fatal decode_error), not after data: the client sent none. C RST f15.
    Row { cap: "captures/tls/py-pinned-abandon-tls12.pcap", port: 40314, verdict: "client_abandoned_handshake", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.2"),
          alerts: &[enc12(S, 26, false)], facts: &[ja4("t12d150700_d68b136fe8d9_e7e480e5a997"), leaf(LEAF_SERVER_TEST)] },
    // S FIN f6 with no answer; then f7 C plaintext fatal decode_error (50) (OpenSSL's
    // "unexpected eof"); S RST f8 (its socket is closed). A client alert does not
    // prevent no_server_hello, whose PAN hint comes from the TCP close: the server's RST.
    Row { cap: "captures/tls/no-server-hello.pcap", port: 40315, verdict: "no_server_hello", pan: Some("tcp-rst-from-server"), hs: "aborted", ver: None,
          alerts: &[plain(C, "fatal", "decode_error")], facts: &[ja4(JA4_OSSL_ANY), ("/tls/server_random", "null")] },
    // S f6: "HTTP/1.1 400 Bad Request" (tshark: no TLS record); the client sends no alert.
    Row { cap: "captures/tls/no-server-hello-http.pcap", port: 40316, verdict: "no_server_hello", pan: Some("tcp-fin"), hs: "aborted", ver: None,
          alerts: &[], facts: &[ja4(JA4_OSSL_ANY), NOT_TLS_ANSWER] },
    // Python client and server; f16 C, f17 S opaque 19 after data (close_notify)
    // [CLOSE13]; C RST/ACK f18 (SO_LINGER 0): still an orderly end.
    Row { cap: "captures/tls/tls13-ok-rst-after-close-notify.pcap", port: 40317, verdict: "ok", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4(JA4_OSSL13)] },
    // gnutls-cli: C f10 CCS alone, C f11 opaque 19 where its Finished (69) was due, with
    // the FIN [ENC13] (the key log: fatal bad_certificate (42)).
    Row { cap: "captures/tls/gnutls13-client-rejects-ca.pcap", port: 40319, verdict: "client_rejected_certificate", pan: None, hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(C, 19)], facts: &[ja4(JA4_GNUTLS13), NO_LEAF] },
    // No CCS: C f10 opaque 19 is its first record after the ClientHello [ENC13]; C FIN
    // f11, C RST/ACK f12.
    Row { cap: "captures/tls/gnutls13-client-rejects-ca-nomb.pcap", port: 40320, verdict: "client_rejected_certificate", pan: None, hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(C, 19)], facts: &[ja4(JA4_GNUTLS13)] },
    // gnutls-serv: S f13 opaque 19 after the client's flight [ENC13] (the key log:
    // fatal certificate_required).
    Row { cap: "captures/tls/gnutls13-mtls-no-client-cert.pcap", port: 40321, verdict: "server_rejected_client_certificate", pan: None, hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(S, 19)], facts: &[ja4(JA4_OSSL13)] },

    // ----------------------------------------------------------------- tests/corpus
    // s0 f6: S plaintext fatal handshake_failure answers the ClientHello.
    Row { cap: "corpus/zeek/tls-1.2-handshake-failure.pcap", port: 53525, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-unsupport-param"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "handshake_failure")], facts: &[ja4("t12i090500_de31b28e7183_a1e935682795")] },
    // Same, with record version TLS 1.0.
    Row { cap: "corpus/suricata-verify/tls-extra-alert_input.pcap", port: 37720, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-unsupport-param"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "handshake_failure")], facts: &[] },
    // IPv6, server port 3000. CertificateRequest (f6), an empty client Certificate (f8),
    // then f9 S plaintext fatal handshake_failure.
    Row { cap: "corpus/zeek/certificate-request-failed.pcap", port: 52464, verdict: "server_rejected_client_certificate", pan: Some("decrypt-unsupport-param"), hs: "aborted", ver: Some("1.2"),
          alerts: &[plain(S, "fatal", "handshake_failure")],
          facts: &[ja4("t13i310900_e8f1e7e78f70_1f22a2ca17c4"), leaf("0a171ee771a26530c650fe8b8a6bf205177bfb64fbb3e5303ba348c13ffc7dfa"),
                   ("/tls/cert_request", "true"), ("/tls/client_cert", "empty")] },
    // f9: C plaintext fatal certificate_unknown (46) after the server Certificate (f7),
    // then FIN. The wire ALPN is "H2" (bytes 48 32), so JA4 says `H2` as the spec does
    // (FoxIO's snapshot says `h2`; design note section 4).
    Row { cap: "corpus/arkime/badcurveball.pcap", port: 55318, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.2"),
          alerts: &[plain(C, "fatal", "certificate_unknown")],
          facts: &[ja4("t13d1615H2_46e7e9700bed_45f260be83e2"), leaf("37a074a3c248aef1f27cbd26093f3364765bb01a97e8b3f387f5bf0cd7b4e1b4"),
                   ("/leaf_cert_issuer", "C=HR, ST=Zagreb, O=INFIGO IS, CN=INFIGO"), ("/tls/alpn", "H2")] },
    // Draft 16 (ChaCha20). f8: C plaintext fatal unknown_ca after the encrypted server
    // flight; C FIN f9; then S f10 and f12 opaque 19 [ENC13]: the first is reported as
    // an inferred server alert (shorter than any EncryptedExtensions, before any client
    // protected record), the second not. The client's alert decides.
    Row { cap: "corpus/zeek/tls13draft16-ff52.a01.pcap", port: 36778, verdict: "client_rejected_certificate", pan: Some("decrypt-error"), hs: "aborted", ver: Some("1.3-draft"),
          alerts: &[plain(C, "fatal", "unknown_ca"), inferred(S, 19)],
          facts: &[ja4("t00i1812h2_29a2cd9e9f10_410211a62323"), ("/tls/ja3", "7475b427c2658e9ae2388737ecc29164")] },
    // s1: the retry completes, the capture ends while it is open.
    Row { cap: "corpus/zeek/tls13draft16-ff52.a01.pcap", port: 36782, verdict: "incomplete_capture", pan: None, hs: "complete", ver: Some("1.3-draft"),
          alerts: &[], facts: &[] },
    // s0 f6 and s1 f18: S plaintext fatal protocol_version.
    Row { cap: "corpus/zeek/tls13draft16-chrome55.0.2879.0-canary-aborted.pcap", port: 53226, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-error"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "protocol_version")], facts: &[ja4("t00d1715h2_67e6df579eba_1c40c51c0bfd")] },
    Row { cap: "corpus/zeek/tls13draft16-chrome55.0.2879.0-canary-aborted.pcap", port: 53227, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-error"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "protocol_version")], facts: &[ja4("t00d2015h2_49212685c681_1c40c51c0bfd")] },
    // s0 f6 and s1 f16: the same; the retry (s1) offers TLS 1.2 only.
    Row { cap: "corpus/zeek/tls13draft16-ff52.a01-aborted.pcap", port: 54980, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-error"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "protocol_version")], facts: &[ja4("t00d1813h2_29a2cd9e9f10_410211a62323")] },
    Row { cap: "corpus/zeek/tls13draft16-ff52.a01-aborted.pcap", port: 54982, verdict: "handshake_parameter_mismatch", pan: Some("decrypt-error"), hs: "aborted", ver: None,
          alerts: &[plain(S, "fatal", "protocol_version")], facts: &[ja4("t12d1510h2_073e58a039a6_24d0d7553946")] },
    // Draft 16, 0xcca9: C f8 Finished 53, C FIN f10, S f11 opaque 19 after it (not
    // listed: after the client's Finished no rule infers an alert): the client closed
    // without data.
    Row { cap: "corpus/zeek/tls13draft16-chrome55.0.2879.0-canary.pcap", port: 53994, verdict: "client_abandoned_handshake", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3-draft"),
          alerts: &[], facts: &[ja4("t00i1714h2_67e6df579eba_1c40c51c0bfd")] },
    // [PORT] 64132. f6: S plaintext *warning* unrecognized_name (112) before the
    // ServerHello, in the same segment; the handshake completes: not a failure (the
    // capture ends while the session is open).
    Row { cap: "corpus/zeek/tls-early-alert.pcap", port: 50020, verdict: "incomplete_capture", pan: None, hs: "complete", ver: Some("1.2"),
          alerts: &[plain(S, "warning", "unrecognized_name")],
          facts: &[ja4("t12d1109h2_43e74fd21232_fed6c16fddd0"), leaf("808bb91f30ac93207eb49932750b319d24b3d473c0847dc87f76329e0363767a")] },
    // [OOO] The second ServerHello (f11, 155 + 1248) arrives after f9 in sequence order
    // but is captured first. HRR f6, CCS + ClientHello 2 f8; C f13 Finished 69, S f14
    // 517 (ticket), C f16 opaque 19 + FIN: after its Finished, a single short record is
    // its close_notify, not data and not an abort (not listed).
    Row { cap: "corpus/zeek/hrr.pcap", port: 63564, verdict: "client_abandoned_handshake", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[],
          facts: &[ja4("t13i040900_16476d049b0b_78f1d400d464"), ("/tls/hello_retry", "true"), ("/tls/client_hellos", "2"),
                   ("/tls/ja3", "0f14b679807628ec7f9c02cada3ee941"), ("/tls/cipher", "TLS_AES_256_GCM_SHA384")] },
    // [PORT] 4433. C f10 Finished 69, S 250 x 2 (tickets), C f14 opaque 19 (its
    // close_notify, not listed), FIN, RST: no client data.
    Row { cap: "corpus/suricata-verify/tls13_draft28.pcap", port: 39632, verdict: "client_abandoned_handshake", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.3-draft"),
          alerts: &[], facts: &[ja4("t00d291200_723694b0fccc_aaaa04918165")] },
    // [PORT] 13443. s0: C f11 Finished 69, S f12 217, C f14 opaque 19 (its
    // close_notify, not listed), FIN: no client data.
    Row { cap: "corpus/zeek/tls-13draft19-early-data.pcap", port: 65503, verdict: "client_abandoned_handshake", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.3-draft"),
          alerts: &[], facts: &[ja4("t00i310900_e8f1e7e78f70_c5203e7bca43")] },
    // s1: 0-RTT data C f27 (57) before the ServerHello, EndOfEarlyData 21 + Finished 69
    // in f32: early data counts as client data; C f45 and S f47 opaque 19 at the end
    // [CLOSE13].
    Row { cap: "corpus/zeek/tls-13draft19-early-data.pcap", port: 65504, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3-draft"),
          alerts: &[], facts: &[ja4("t00i311100_e8f1e7e78f70_b3ab037a06c5")] },
    // C f18 opaque 19 after data both ways (close_notify) [CLOSE13], FINs, then three
    // server RSTs: orderly.
    Row { cap: "corpus/suricata-verify/debug-s13.pcap", port: 53576, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[],
          facts: &[ja4("t13d1717h2_5b57614c22b0_3cbfd9057e0d"), ("/tls/ja3", "6f7889b9fb1a62a9577e685c1fcfa919"), ("/tls/alpn", "h2")] },
    // C f30 opaque 19 after data both ways (close_notify) [CLOSE13]; S f28 (26) is
    // HTTP/2 data, not an alert.
    Row { cap: "corpus/arkime/curl-enabled-tls13.pcap", port: 46638, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4("t13d0413h2_16476d049b0b_ffceb19bae65")] },
    // PSK resumption (0x1303): C f11 20 bytes is data (3 bytes), not an alert; C f15
    // opaque 19 at the end [CLOSE13].
    Row { cap: "corpus/zeek/tls13_psk_succesfull.pcap", port: 54220, verdict: "ok", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.3"),
          alerts: &[], facts: &[ja4("t13i571000_131602cb7446_a11995863d32"), ("/tls/cipher", "TLS_CHACHA20_POLY1305_SHA256")] },
    // [PORT] 8443. s1: the ClientHello twice (f7, f9); S f11 flight ending with
    // Finished 53 + 139; S f12 opaque 19 [ENC13]: an inferred server alert during the
    // handshake; C RST f15. Its description is unknown and fits no TLS verdict, so the
    // TCP verdict stays (design note section 8, open question). JA4/JA3 of hello 1.
    Row { cap: "corpus/suricata-verify/tls-duplicate-hello_input.pcap", port: 49954, verdict: "reset_by_client", pan: Some("tcp-rst-from-client"), hs: "aborted", ver: Some("1.3"),
          alerts: &[inferred(S, 19)],
          facts: &[ja4("t13d291200_723694b0fccc_aaaa04918165"), ("/tls/client_hellos", "2"), ("/tls/ja3", "43202faa1c8c1760d6f7f4bd9adde4ab")] },
    // S f6: 7 bytes `00 00 00 00 02 00 28`: record type 0, not TLS, although the tail
    // looks like an alert (tshark: "Continuation Data"); then FIN.
    Row { cap: "corpus/zeek/tls-1.2-protocol-error.pcap", port: 53525, verdict: "no_server_hello", pan: Some("tcp-fin"), hs: "aborted", ver: None,
          alerts: &[], facts: &[ja4("t12i090500_de31b28e7183_a1e935682795"), NOT_TLS_ANSWER] },
    // The ClientHello (TLS 1.0) is answered by FIN.
    Row { cap: "corpus/suricata-verify/TLSv1-Extracted-MaliciousC2.pcap", port: 49905, verdict: "no_server_hello", pan: Some("tcp-fin"), hs: "aborted", ver: None,
          alerts: &[], facts: &[ja4("t10i070600_c50f5591e341_c39ab67fec8e"), ("/tls/server/not_tls", "false")] },
    // [PORT] 80: a TLS ClientHello to an HTTP server, which answers with HTTP; C RST.
    Row { cap: "corpus/zeek/https-to-http.pcap", port: 50382, verdict: "no_server_hello", pan: Some("tcp-rst-from-client"), hs: "aborted", ver: None,
          alerts: &[], facts: &[ja4("t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"), ("/tls/ja3", "78f0dc5ac5b19daf131a133cfdee9691"), NOT_TLS_ANSWER] },
    // [PORT] 80. The server's FIN (f5) is captured before its HTTP 400 answer (f8),
    // which comes first in sequence order: the server sent non-TLS data, then closed.
    Row { cap: "corpus/zeek/ssl-to-http-server.pcap", port: 62561, verdict: "no_server_hello", pan: Some("tcp-fin"), hs: "aborted", ver: None,
          alerts: &[], facts: &[ja4("t10d100600_0fa29e80c1bb_b5c89f4acd37"), NOT_TLS_ANSWER] },
    // The client sends FIN (f10) right after the server's Finished, with no alert and
    // no data.
    Row { cap: "corpus/suricata-verify/ja4-tls_input.pcap", port: 49365, verdict: "client_abandoned_handshake", pan: Some("tcp-fin"), hs: "complete", ver: Some("1.2"),
          alerts: &[],
          facts: &[ja4("t12i1810s1_27d4652c4487_06a4338d0495"), ("/tls/ja3", "308b0bd904abbef5e0034a1ff7a78920"),
                   leaf("a1384fd08fc279c929dc62253e9eed1330684bfe4d274b62e5b27e22999a1646")] },
    // [SSLV2] f4: an SSLv2-format ClientHello (version 0x0301); the server answers in
    // TLS 1.0. f30 S and f33 C: 32-byte type-21 records after data [ENC12]
    // (AES-CBC, TLS 1.0); then C RSTs: orderly.
    Row { cap: "corpus/suricata-verify/ssl-v2-s1.pcap", port: 1660, verdict: "ok", pan: Some("tcp-rst-from-client"), hs: "complete", ver: Some("1.0"),
          alerts: &[enc12(S, 32, true), enc12(C, 32, true)],
          facts: &[("/tls/sslv2_client_hello", "true"), ("/ja4", "null"), ("/tls/ja3", "null"), ("/client_random", "null"),
                   leaf("9b8a39a0ce1a16413bcbf6830ea8c9fdfcb2934eb2d406332c4073f0fc80661a")] },
];

/// JA4 and JA3 of the design note's section 4 tables (JA4 from FoxIO and Suricata
/// references or an independent implementation; JA3 equal to tshark's
/// `tls.handshake.ja3`), and the SSLv2-format hellos that have neither.
#[rustfmt::skip]
const FINGERPRINTS: &[(&str, u16, Option<&str>, Option<&str>)] = &[
    ("corpus/suricata-verify/ja4-tls_input.pcap", 49365, Some("t12i1810s1_27d4652c4487_06a4338d0495"), Some("308b0bd904abbef5e0034a1ff7a78920")),
    ("corpus/arkime/tls-alpn-h2.pcap", 64034, Some("t12d4605h2_85626a9a5f7f_aaf95bb78ec9"), Some("3faa4ad39f690c4ef1c3160caa375465")),
    ("corpus/arkime/badcurveball.pcap", 55318, Some("t13d1615H2_46e7e9700bed_45f260be83e2"), Some("66918128f1b9b03303d77c6f2eefd128")),
    ("corpus/zeek/chrome-1250-tls-x25519-kyber.pcap", 13783, Some("t13d1516h2_8daaf6152771_02713d6af862"), Some("9d33d8206d4fec4c8b1423c728f4cd3c")),
    ("corpus/zeek/tls13-ech.pcap", 51066, Some("t13d1517h2_8daaf6152771_b1ff8ab2d16f"), Some("2fcbf8655473005933c5869b2b5d8044")), // s1
    ("corpus/zeek/hrr.pcap", 63564, Some("t13i040900_16476d049b0b_78f1d400d464"), Some("0f14b679807628ec7f9c02cada3ee941")),
    ("corpus/zeek/certificate-request-failed.pcap", 52464, Some("t13i310900_e8f1e7e78f70_1f22a2ca17c4"), Some("c216e752cae6f8755fd27f561d031636")),
    ("corpus/zeek/tls-1.2-handshake-failure.pcap", 53525, Some("t12i090500_de31b28e7183_a1e935682795"), Some("62bd27c43a9a4d7fcbc45d8c9e7e04dd")),
    ("corpus/zeek/tls13draft16-ff52.a01.pcap", 36778, Some("t00i1812h2_29a2cd9e9f10_410211a62323"), Some("7475b427c2658e9ae2388737ecc29164")),
    ("corpus/zeek/tls-fragmented-handshake.pcap", 61454, Some("t12d370500_07a749158664_d075105c1994"), Some("799135475da362592a4be9199d258726")),
    ("corpus/suricata-verify/debug-s13.pcap", 53576, Some("t13d1717h2_5b57614c22b0_3cbfd9057e0d"), Some("6f7889b9fb1a62a9577e685c1fcfa919")),
    ("corpus/zeek/client-certificate.pcap", 49480, Some("t13d1715h2_5b57614c22b0_3d5424432f57"), Some("579ccef312d18482fc42e2b822ca2430")),
    ("corpus/arkime/openssl-tls1_2.pcap", 57413, Some("t12i740500_c43983326036_3eafcbe19126"), Some("c1a36e1a870786cc75edddc0009eaf3a")),
    ("corpus/zeek/https-to-http.pcap", 50382, Some("t13i3111h2_e8f1e7e78f70_b26ce05bbdd6"), Some("78f0dc5ac5b19daf131a133cfdee9691")),
    // [SSLV2] ssl_version_negated s1 and zeek/ssl.v3 s0 as ssl-v2-s1; https2-301-get;
    // zeek/ssl-v2 is real SSLv2 (server-hello, message type 4).
    ("corpus/suricata-verify/ssl-v2-s1.pcap", 1660, None, None),
    ("corpus/suricata-verify/ssl_version_negated_input.pcap", 1660, None, None),
    ("corpus/zeek/ssl.v3.pcap", 58868, None, None),
    ("corpus/arkime/https2-301-get.pcap", 50754, None, None),
    ("corpus/zeek/ssl-v2.pcap", 59062, None, None),
];

/// Leaf certificates of the design note's section 6 table (SHA-256 of the DER as sent;
/// each also recomputed here from the bytes tshark shows). tls-client-auth: the
/// server's leaf (the client's is a25ade46...).
#[rustfmt::skip]
const LEAVES: &[(&str, u16, &str)] = &[
    ("corpus/suricata-verify/ja4-tls_input.pcap", 49365, "a1384fd08fc279c929dc62253e9eed1330684bfe4d274b62e5b27e22999a1646"),
    ("corpus/arkime/badcurveball.pcap", 55318, "37a074a3c248aef1f27cbd26093f3364765bb01a97e8b3f387f5bf0cd7b4e1b4"),
    ("corpus/arkime/tls-alpn-h2.pcap", 64034, "84694645cbd183bf9be472ce702bd189246e1fcd1544ffead466d956a71690bf"),
    ("corpus/zeek/certificate-request-failed.pcap", 52464, "0a171ee771a26530c650fe8b8a6bf205177bfb64fbb3e5303ba348c13ffc7dfa"),
    ("corpus/suricata-verify/tls-client-auth.pcap", 58606, "d061196de0be0925d949192619eafe97746f245c1f775f9b3fbc3ec033d7d07a"),
    ("corpus/suricata-verify/tls-pre-1970_input.pcap", 46135, "6ded6ad00f50d930239004cc46325300993d33af77a96d3c4e4716721d389c1d"),
    ("corpus/suricata-verify/tls-cert-noissuer_tls.pcap", 54080, "428f25ae72d8fe8eab9a69eb3b4beeec02a6af6aea8cd4fdccb013a1c55f24d1"),
];

// ------------------------------------------------------------------------ helpers

/// The records of one capture (under tests/), one worker.
fn capture_records(cap: &str) -> Vec<Value> {
    let path = root().join("tests").join(cap);
    assert!(path.is_file(), "no capture {}", path.display());
    records(&replay(&["--workers", "1", path.to_str().unwrap()]).stdout)
}

/// The session of `port` (the client's) and its only point.
fn session<'a>(recs: &'a [Value], cap: &str, port: u16) -> Result<(&'a Value, &'a Value), String> {
    let found: Vec<&Value> = recs
        .iter()
        .filter(|r| r["client"]["port"].as_u64() == Some(u64::from(port)))
        .collect();
    let [rec] = found[..] else {
        return Err(format!(
            "{cap}: {} sessions with client port {port}, want 1",
            found.len()
        ));
    };
    let points = rec["points"].as_object().expect("points");
    assert_eq!(points.len(), 1, "{cap}:{port}: one capture file, one point");
    Ok((rec, points.values().next().unwrap()))
}

/// A JSON value as the tables write it: strings bare, everything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn alert_of(v: &Value) -> Result<A<'_>, String> {
    let s = |k: &str| {
        v[k].as_str()
            .ok_or_else(|| format!("alert without {k}: {v}"))
    };
    let b = |k: &str| {
        v[k].as_bool()
            .ok_or_else(|| format!("alert without {k}: {v}"))
    };
    Ok(A {
        from: s("from")?,
        level: s("level")?,
        desc: s("description")?,
        encrypted: b("encrypted")?,
        inferred: b("inferred")?,
        after_data: b("after_data")?,
        len: v["record_len"]
            .as_u64()
            .ok_or_else(|| format!("alert without record_len: {v}"))?,
    })
}

fn alerts_of(point: &Value) -> Result<Vec<A<'_>>, String> {
    point["alerts"]
        .as_array()
        .ok_or_else(|| format!("no alerts array in {point}"))?
        .iter()
        .map(alert_of)
        .collect()
}

/// The differences between a row and tapwatch's record of that session.
fn check_row(row: &Row, rec: &Value, point: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut want = |what: &str, got: &Value, expected: Option<&str>| {
        let ok = match expected {
            Some(e) => got.as_str() == Some(e),
            None => got.is_null(),
        };
        if !ok {
            bad.push(format!("{what}: got {got}, want {expected:?}"));
        }
    };
    want("verdict", &rec["verdict"], Some(row.verdict));
    want("pan_end_reason", &rec["pan_end_reason"], row.pan);
    want("handshake", &point["handshake"], Some(row.hs));
    want("tls_version", &point["tls_version"], row.ver);
    match alerts_of(point) {
        Ok(got) => {
            if got.as_slice() != row.alerts {
                bad.push(format!(
                    "alerts:\n      got  {got:?}\n      want {:?}",
                    row.alerts
                ));
            }
        }
        Err(e) => bad.push(e),
    }
    for (ptr, expected) in row.facts {
        match point.pointer(ptr) {
            Some(v) if text(v) == *expected => {}
            got => bad.push(format!("{ptr}: got {got:?}, want {expected}")),
        }
    }
    bad
}

// -------------------------------------------------------------------------- tests

/// Every row of `ROWS` against tapwatch's records, all differences reported at once.
#[test]
fn tls_sessions_match_the_hand_checked_table() {
    let mut failures = Vec::new();
    let mut caps: Vec<&str> = ROWS.iter().map(|r| r.cap).collect();
    caps.dedup();
    for cap in caps {
        let recs = capture_records(cap);
        for row in ROWS.iter().filter(|r| r.cap == cap) {
            match session(&recs, cap, row.port) {
                Ok((rec, point)) => {
                    for b in check_row(row, rec, point) {
                        failures.push(format!("{cap} client port {}: {b}", row.port));
                    }
                }
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} difference(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Every capture of tests/captures/tls/ holds one TCP session (README.md there), and
/// the table has a row for it.
#[test]
fn every_tls_capture_has_one_session_and_a_row() {
    let dir = root().join("tests").join(TLS);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("tests/captures/tls") {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("pcap") {
            continue;
        }
        n += 1;
        let cap = format!("{TLS}/{}", path.file_name().unwrap().to_str().unwrap());
        let recs = capture_records(&cap);
        assert_eq!(recs.len(), 1, "{cap}: one session, got {}", recs.len());
        let port = recs[0]["client"]["port"].as_u64().unwrap();
        assert!(
            ROWS.iter()
                .any(|r| r.cap == cap && u64::from(r.port) == port),
            "{cap}: no row in ROWS for client port {port}"
        );
    }
    assert_eq!(n, 21, "tests/captures/tls/README.md lists 21 captures");
}

#[test]
fn ja4_and_ja3_of_the_design_note() {
    let mut failures = Vec::new();
    for &(cap, port, ja4, ja3) in FINGERPRINTS {
        let recs = capture_records(cap);
        let (_, p) = match session(&recs, cap, port) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if p["ja4"].as_str() != ja4 || p["tls"]["ja3"].as_str() != ja3 {
            failures.push(format!(
                "{cap}:{port}: ja4 {} ja3 {}, want {ja4:?} {ja3:?}",
                p["ja4"], p["tls"]["ja3"]
            ));
        }
        let sslv2 = ja4.is_none();
        if p["tls"]["sslv2_client_hello"].as_bool() != Some(sslv2) {
            failures.push(format!(
                "{cap}:{port}: sslv2_client_hello {}",
                p["tls"]["sslv2_client_hello"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn leaf_certificates_of_the_design_note() {
    let mut failures = Vec::new();
    for &(cap, port, sha) in LEAVES {
        let recs = capture_records(cap);
        match session(&recs, cap, port) {
            Ok((_, p)) if p["leaf_cert_sha256"].as_str() == Some(sha) => {}
            Ok((_, p)) => failures.push(format!(
                "{cap}:{port}: leaf {}, want {sha}",
                p["leaf_cert_sha256"]
            )),
            Err(e) => failures.push(e),
        }
    }
    // tls-pre-1970: not_before is 1969-12-31 00:00:00 UTC, a negative timestamp.
    let cap = "corpus/suricata-verify/tls-pre-1970_input.pcap";
    let recs = capture_records(cap);
    let (_, p) = session(&recs, cap, 46135).unwrap();
    assert_eq!(p["tls"]["leaf_cert_not_before"], -86400, "{cap}");
    // tls-cert-noissuer: an empty issuer, and the server's random carries the TLS 1.3
    // downgrade sentinel.
    let cap = "corpus/suricata-verify/tls-cert-noissuer_tls.pcap";
    let recs = capture_records(cap);
    let (_, p) = session(&recs, cap, 54080).unwrap();
    assert_eq!(p["leaf_cert_issuer"], "", "{cap}");
    assert_eq!(p["tls"]["downgrade"], true, "{cap}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// scripts/tls-crosscheck.py: per session of every TLS capture (ours and the corpus),
/// tshark's plaintext alerts and hellos against tapwatch's, with an explained
/// allow-list. Needs tshark: without it the test fails under CI and is skipped
/// otherwise.
#[test]
fn tls_crosscheck_against_tshark() {
    let tshark = std::env::var("TSHARK").unwrap_or_else(|_| "tshark".to_string());
    let have_tshark = Command::new(&tshark)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_tshark {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark ({tshark}) is not installed, and CI is set: the TLS cross-check must run \
             there (scripts/setup.sh installs tshark)"
        );
        eprintln!("SKIPPED tls_crosscheck_against_tshark: tshark ({tshark}) is not installed");
        return;
    }
    let out = Command::new("python3")
        .arg(root().join("scripts/tls-crosscheck.py"))
        .arg("--tapwatch")
        .arg(env!("CARGO_BIN_EXE_tapwatch"))
        .arg("--tshark")
        .arg(&tshark)
        .output()
        .expect("run python3 scripts/tls-crosscheck.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/tls-crosscheck.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.contains(" 0 disagreements"),
        "unexpected summary: {last}"
    );
    eprintln!("{last}");
}
