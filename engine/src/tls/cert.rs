//! The Certificate and CertificateRequest handshake messages of TLS <= 1.2 (RFC 5246
//! sections 7.4.2 and 7.4.4; in TLS 1.3 both are encrypted): the leaf certificate's
//! SHA-256, names and validity, and the chain length.
//!
//! The message framing is read by hand rather than with tls-parser's
//! `parse_tls_handshake_msg_certificate`: the layout is two levels of 3-byte
//! lengths, and walking it in place costs no allocation, where tls-parser builds a
//! `Vec` of every entry only for us to look at the first. Only the leaf goes to
//! x509-parser (without deep parsing of extensions); that allocates a few times,
//! once per session.
//!
//! Guarantees: never panics on any input; never reads the clock (validity is
//! reported, never judged: `Validity::is_valid` would read it). The SHA-256 is over
//! the DER exactly as sent, so it is reported even when the certificate does not
//! parse, and equals `openssl x509 -fingerprint -sha256`.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509CertificateParser;
use x509_parser::nom::Parser;

use super::hello::HelloError;
use super::names::FixedStr;

/// The leaf (first) certificate of a Certificate message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeafCert {
    /// SHA-256 of the DER as sent, whether or not it parses.
    pub sha256: [u8; 32],
    /// x509-parser accepted the DER.
    pub parsed: bool,
    /// The subject DN as x509-parser displays it, in DER order
    /// (`"C=FR, ST=IDF, O=Stamus, CN=SELKS"`); empty if unparsed.
    pub subject: FixedStr<128>,
    /// The issuer DN, likewise (empty for an empty issuer too).
    pub issuer: FixedStr<128>,
    /// notBefore in Unix seconds (negative before 1970); `None` if unparsed.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Certificates in the message (capped at `u16::MAX`).
    pub chain_len: u16,
}

/// A Certificate message: no certificate (a client declining a
/// CertificateRequest), or the leaf of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "made once per Certificate message and copied into the session's facts; \
              boxing would allocate and lose Copy"
)]
pub enum CertMessage {
    Empty,
    Leaf(LeafCert),
}

/// A 3-byte big-endian length at the front of `b`, and the rest.
fn u24(b: &[u8]) -> Option<(usize, &[u8])> {
    let [a, b2, c, ..] = *b else {
        return None;
    };
    let rest = b.get(3..)?;
    Some((
        usize::from(a) << 16 | usize::from(b2) << 8 | usize::from(c),
        rest,
    ))
}

/// Parses a TLS <= 1.2 Certificate handshake body: `certificate_list<0..2^24-1>` of
/// `ASN.1Cert<1..2^24-1>` entries, the sender's certificate first (RFC 5246
/// section 7.4.2). The list must fill the body, and the entries the list.
pub fn parse_certificate(body: &[u8]) -> Result<CertMessage, HelloError> {
    use HelloError::{Malformed, Truncated};
    let (list_len, rest) = u24(body).ok_or(Truncated)?;
    let list = rest.get(..list_len).ok_or(Truncated)?;
    if rest.len() != list_len {
        return Err(Malformed);
    }
    let mut leaf: Option<&[u8]> = None;
    let mut chain_len = 0u16;
    let mut entries = list;
    while !entries.is_empty() {
        let (len, rest) = u24(entries).ok_or(Malformed)?;
        let der = rest.get(..len).ok_or(Malformed)?;
        entries = rest.get(len..).unwrap_or_default();
        leaf = leaf.or(Some(der));
        chain_len = chain_len.saturating_add(1);
    }
    let Some(der) = leaf else {
        return Ok(CertMessage::Empty);
    };
    let mut cert = LeafCert {
        sha256: Sha256::digest(der).into(),
        parsed: false,
        subject: FixedStr::EMPTY,
        issuer: FixedStr::EMPTY,
        not_before: None,
        not_after: None,
        chain_len,
    };
    let mut parser = X509CertificateParser::new().with_deep_parse_extensions(false);
    if let Ok((_, x509)) = parser.parse(der) {
        cert.parsed = true;
        cert.subject = FixedStr::from_display(x509.subject());
        cert.issuer = FixedStr::from_display(x509.issuer());
        cert.not_before = Some(x509.validity().not_before.timestamp());
        cert.not_after = Some(x509.validity().not_after.timestamp());
    }
    Ok(CertMessage::Leaf(cert))
}

/// A vector with an `n`-byte length prefix (1 or 2) at the front of `b`, and the
/// rest.
fn vec(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    let (len, rest) = match *b {
        [l, ref rest @ ..] if n == 1 => (usize::from(l), rest),
        [h, l, ref rest @ ..] if n == 2 => (usize::from(u16::from_be_bytes([h, l])), rest),
        _ => return None,
    };
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// `DistinguishedName certificate_authorities<0..2^16-1>`, each `<1..2^16-1>`,
/// filling `b` exactly.
fn authorities_ok(b: &[u8]) -> bool {
    let Some((mut list, [])) = vec(b, 2) else {
        return false;
    };
    while !list.is_empty() {
        match vec(list, 2) {
            Some((dn, rest)) if !dn.is_empty() => list = rest,
            _ => return false,
        }
    }
    true
}

/// A CertificateRequest body of TLS <= 1.2 is well formed (RFC 5246 section
/// 7.4.4: `certificate_types<1..2^8-1>`, `supported_signature_algorithms<2..2^16-2>`
/// in TLS 1.2 only, `certificate_authorities<0..2^16-1>`), in either the TLS 1.2
/// layout or the earlier one without signature algorithms.
pub fn parse_certificate_request(body: &[u8]) -> bool {
    let Some((types, rest)) = vec(body, 1) else {
        return false;
    };
    if types.is_empty() {
        return false;
    }
    let tls12 = matches!(vec(rest, 2), Some((sigs, cas))
        if !sigs.is_empty() && sigs.len() % 2 == 0 && authorities_ok(cas));
    tls12 || authorities_ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u24b(n: usize) -> [u8; 3] {
        [(n >> 16) as u8, (n >> 8) as u8, n as u8]
    }

    fn cert_msg(ders: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for d in ders {
            list.extend(u24b(d.len()));
            list.extend_from_slice(d);
        }
        let mut b = u24b(list.len()).to_vec();
        b.extend(list);
        b
    }

    #[test]
    fn test_certificate_empty() {
        // zeek/certificate-request-failed frame 8: the client's 7-byte Certificate
        // message is a header and an empty list.
        assert_eq!(parse_certificate(&[0, 0, 0]), Ok(CertMessage::Empty));
    }

    #[test]
    fn test_certificate_unparsed_leaf_is_hashed() {
        let junk: &[u8] = b"\x30\x82\x01\x00\x01\x02\x03";
        let Ok(CertMessage::Leaf(c)) = parse_certificate(&cert_msg(&[junk, b"x"])) else {
            panic!("leaf expected");
        };
        assert!(!c.parsed);
        assert_eq!(c.sha256, <[u8; 32]>::from(Sha256::digest(junk)));
        assert_eq!(c.chain_len, 2);
        assert!(c.subject.is_empty() && c.issuer.is_empty());
        assert_eq!((c.not_before, c.not_after), (None, None));
    }

    #[test]
    fn test_certificate_framing_errors() {
        assert_eq!(parse_certificate(&[]), Err(HelloError::Truncated));
        assert_eq!(parse_certificate(&[0, 0, 5, 0]), Err(HelloError::Truncated));
        assert_eq!(parse_certificate(&[0, 0, 0, 0]), Err(HelloError::Malformed));
        // An entry overrunning the list.
        assert_eq!(
            parse_certificate(&[0, 0, 4, 0, 0, 2, 0x30]),
            Err(HelloError::Malformed)
        );
        // A list too short to hold an entry header.
        assert_eq!(
            parse_certificate(&[0, 0, 2, 0, 0]),
            Err(HelloError::Malformed)
        );
    }

    #[test]
    fn test_certificate_request_layouts() {
        // TLS 1.2: types [rsa_sign, ecdsa_sign], sigs [0x0401], one CA "AB".
        let tls12 = [2, 1, 64, 0, 2, 4, 1, 0, 4, 0, 2, b'A', b'B'];
        assert!(parse_certificate_request(&tls12));
        // TLS <= 1.1: types [rsa_sign], no CAs.
        assert!(parse_certificate_request(&[1, 1, 0, 0]));
        assert!(!parse_certificate_request(&[]));
        assert!(!parse_certificate_request(&[0, 0, 0]));
        assert!(!parse_certificate_request(&[1, 1, 0, 0, 9]));
        // An empty DistinguishedName is not allowed.
        assert!(!parse_certificate_request(&[1, 1, 0, 2, 0, 0]));
    }
}
