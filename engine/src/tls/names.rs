//! Names for what the TLS parsers find, and [`FixedStr`], the bounded byte string
//! that carries names taken from the wire (SNI, ALPN, certificate DNs) in records.
//!
//! Guarantees: nothing here allocates or panics, whatever the input; names are
//! `&'static str` from fixed tables (IANA registries, RFC 8446 spelling).

use std::fmt;

/// A byte string of at most `N` bytes, stored inline (`Copy`, no allocation), for
/// record fields copied from the wire. A longer source is cut to `N` bytes, on a
/// UTF-8 character boundary when the kept bytes are UTF-8, and marked
/// [`truncated`](FixedStr::truncated). The bytes are kept as sent: they need not be
/// UTF-8 (see [`FixedStr::as_str`]). `N` must be at most `u16::MAX`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<const N: usize> {
    len: u16,
    truncated: bool,
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    /// The empty string.
    pub const EMPTY: Self = FixedStr {
        len: 0,
        truncated: false,
        bytes: [0; N],
    };

    /// Copies `src`, or its first `N` bytes (fewer if that would split a UTF-8
    /// character of a UTF-8 prefix).
    pub fn new(src: &[u8]) -> Self {
        let cap = N.min(usize::from(u16::MAX));
        let mut out = Self::EMPTY;
        let keep = if src.len() <= cap {
            src.len()
        } else {
            out.truncated = true;
            utf8_floor(src, cap)
        };
        out.push(src.get(..keep).unwrap_or_default());
        out
    }

    /// The value's `Display` output, cut like [`FixedStr::new`] (always on a
    /// character boundary, since `Display` writes UTF-8). Allocates only if the
    /// `Display` implementation does.
    pub fn from_display(value: &impl fmt::Display) -> Self {
        let mut out = Self::EMPTY;
        // `Writer` never fails: a full buffer sets `truncated` and drops the rest.
        let _ = fmt::write(&mut Writer(&mut out), format_args!("{value}"));
        out
    }

    /// The kept bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The kept bytes as text, if they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The source was longer than what is kept.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Appends as much of `b` as fits; returns whether all of it did.
    fn push(&mut self, b: &[u8]) -> bool {
        let at = usize::from(self.len);
        let room = N.min(usize::from(u16::MAX)).saturating_sub(at);
        let n = b.len().min(room);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(at..at + n), b.get(..n)) {
            dst.copy_from_slice(src);
            // `at + n <= cap <= u16::MAX`.
            self.len = u16::try_from(at + n).unwrap_or(u16::MAX);
        }
        n == b.len()
    }
}

/// The kept bytes and the truncation mark, not the unused rest of the buffer:
/// equal values have equal kept bytes, so this agrees with `Eq`. (Hashing all `N`
/// bytes made a ClientHello, with its 255-byte SNI, cost about 390 instructions to
/// hash in the per-worker hello store; callgrind, 200k synth replay.)
impl<const N: usize> std::hash::Hash for FixedStr<N> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.truncated.hash(state);
        self.as_bytes().hash(state);
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))?;
        if self.truncated {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// `fmt::Write` into a [`FixedStr`], keeping whole characters only.
struct Writer<'a, const N: usize>(&'a mut FixedStr<N>);

impl<const N: usize> fmt::Write for Writer<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.truncated {
            return Ok(());
        }
        let room = N.min(usize::from(u16::MAX)).saturating_sub(self.0.len());
        let keep = if s.len() <= room {
            s.len()
        } else {
            self.0.truncated = true;
            utf8_floor(s.as_bytes(), room)
        };
        self.0.push(s.as_bytes().get(..keep).unwrap_or_default());
        Ok(())
    }
}

/// Where to cut `src` (longer than `cap`) to keep at most `cap` bytes: `cap`, moved
/// back to the start of the character it would split if the bytes around the cut
/// are valid UTF-8. Only the window that can hold that character is checked.
fn utf8_floor(src: &[u8], cap: usize) -> usize {
    // A character is at most 4 bytes: the one that spans `cap` ends before `cap + 3`.
    let window = src.get(..src.len().min(cap + 3)).unwrap_or_default();
    let valid = match std::str::from_utf8(window) {
        Ok(_) => window.len(),
        Err(e) => e.valid_up_to(),
    };
    if valid <= cap {
        // Either `cap` ends the valid prefix (a boundary) or invalid bytes come
        // first: not UTF-8 there, cut at `cap`.
        return cap;
    }
    let mut cut = cap;
    while cut > 0 && src.get(cut).is_some_and(|&b| b & 0xc0 == 0x80) {
        cut -= 1;
    }
    cut
}

/// Alert description names (IANA TLS Alert registry, RFC 8446 section 6 spelling).
pub fn alert_name(desc: u8) -> Option<&'static str> {
    Some(match desc {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return None,
    })
}

/// Protocol version names: `"1.0"` to `"1.3"`, `"ssl2"`, `"ssl3"`, `"1.3-draft"`
/// for the IETF drafts (0x7fNN) and Facebook's fizz drafts (0x7e01..=0x7eff),
/// `"unknown"` otherwise.
pub fn version_name(v: u16) -> &'static str {
    match v {
        0x0002 => "ssl2",
        0x0300 => "ssl3",
        0x0301 => "1.0",
        0x0302 => "1.1",
        0x0303 => "1.2",
        0x0304 => "1.3",
        // fizz 0x7e01..=0x7eff, then IETF 0x7f00..=0x7fff.
        0x7e01..=0x7fff => "1.3-draft",
        _ => "unknown",
    }
}

/// The IANA name of a cipher suite (tls-parser's table), e.g.
/// `"TLS_AES_128_GCM_SHA256"` for 0x1301.
pub fn cipher_name(id: u16) -> Option<&'static str> {
    tls_parser::TlsCipherSuite::from_id(id).map(|c| c.name)
}

/// Handshake message type names (IANA TLS HandshakeType registry; 6 is the
/// HelloRetryRequest of TLS 1.3 drafts before draft 22).
pub fn handshake_type_name(t: u8) -> &'static str {
    match t {
        0 => "hello_request",
        1 => "client_hello",
        2 => "server_hello",
        3 => "hello_verify_request",
        4 => "new_session_ticket",
        5 => "end_of_early_data",
        6 => "hello_retry_request",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        17 => "client_certificate_request",
        20 => "finished",
        21 => "certificate_url",
        22 => "certificate_status",
        23 => "supplemental_data",
        24 => "key_update",
        25 => "compressed_certificate",
        26 => "ekt_key",
        254 => "message_hash",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_fixed_str_short() {
        let s = FixedStr::<8>::new(b"abc");
        assert_eq!(s.as_bytes(), b"abc");
        assert_eq!(s.as_str(), Some("abc"));
        assert!(!s.truncated());
        assert!(!s.is_empty());
        assert_eq!(format!("{s:?}"), "\"abc\"");
        assert_eq!(FixedStr::<8>::new(b"12345678").as_bytes(), b"12345678");
        assert!(!FixedStr::<8>::new(b"12345678").truncated());
    }

    #[test]
    fn test_fixed_str_empty_default() {
        let s = FixedStr::<4>::default();
        assert!(s.is_empty());
        assert_eq!(s, FixedStr::<4>::EMPTY);
        assert_eq!(FixedStr::<4>::new(b""), s);
        assert_eq!(FixedStr::<0>::new(b"x").as_bytes(), b"");
        assert!(FixedStr::<0>::new(b"x").truncated());
    }

    #[test]
    fn test_fixed_str_truncated_ascii() {
        let s = FixedStr::<4>::new(b"abcdef");
        assert_eq!(s.as_bytes(), b"abcd");
        assert!(s.truncated());
        assert_eq!(format!("{s:?}"), "\"abcd\"…");
    }

    #[test]
    fn test_fixed_str_truncated_on_char_boundary() {
        // "aé€" = 61 | c3 a9 | e2 82 ac: a cut at 2 or 3 would split a character.
        let src = "aé€x".as_bytes();
        assert_eq!(FixedStr::<2>::new(src).as_bytes(), b"a");
        assert_eq!(FixedStr::<3>::new(src).as_str(), Some("aé"));
        assert_eq!(FixedStr::<4>::new(src).as_str(), Some("aé"));
        assert_eq!(FixedStr::<5>::new(src).as_str(), Some("aé"));
        assert_eq!(FixedStr::<6>::new(src).as_str(), Some("aé€"));
        assert!(FixedStr::<6>::new(src).truncated());
    }

    #[test]
    fn test_fixed_str_not_utf8_cut_at_cap() {
        // Invalid bytes before the cut: keep N bytes as they are.
        let src = [0xff, 0xc3, 0xa9, 0x41];
        let s = FixedStr::<2>::new(&src);
        assert_eq!(s.as_bytes(), &[0xff, 0xc3]);
        assert!(s.as_str().is_none());
        assert_eq!(format!("{s:?}"), "\"\u{fffd}\u{fffd}\"…");
    }

    #[test]
    fn test_fixed_str_from_display() {
        let s = FixedStr::<5>::from_display(&"CN=é€");
        assert_eq!(s.as_str(), Some("CN=é"));
        assert!(s.truncated());
        let s = FixedStr::<16>::from_display(&format_args!("{}-{}", 1, "two"));
        assert_eq!(s.as_str(), Some("1-two"));
        assert!(!s.truncated());
    }

    #[test]
    fn test_names() {
        assert_eq!(alert_name(0), Some("close_notify"));
        assert_eq!(alert_name(40), Some("handshake_failure"));
        assert_eq!(alert_name(48), Some("unknown_ca"));
        assert_eq!(alert_name(121), Some("ech_required"));
        assert_eq!(alert_name(1), None);
        assert_eq!(alert_name(255), None);
        assert_eq!(version_name(0x0303), "1.2");
        assert_eq!(version_name(0x0002), "ssl2");
        assert_eq!(version_name(0x7f10), "1.3-draft");
        assert_eq!(version_name(0x7e02), "1.3-draft");
        assert_eq!(version_name(0x7e00), "unknown");
        assert_eq!(version_name(0x0305), "unknown");
        assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(
            cipher_name(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_name(0x0a0a), None);
        assert_eq!(handshake_type_name(1), "client_hello");
        assert_eq!(handshake_type_name(6), "hello_retry_request");
        assert_eq!(handshake_type_name(254), "message_hash");
        assert_eq!(handshake_type_name(7), "unknown");
    }
}
