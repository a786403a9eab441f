//! ClientHello and ServerHello bodies: the facts a passive sensor reports (versions,
//! randoms, SNI, ALPN, cipher, HelloRetryRequest, downgrade sentinel) and the
//! client's JA3 and JA4 fingerprints.
//!
//! Bodies are read by hand, without tls-parser: the extensions must be walked raw
//! anyway to keep their wire order for the fingerprints; tls-parser reads neither
//! SSLv2-format ClientHellos nor the draft TLS 1.3 ServerHellos (design note
//! section 2, pitfalls 3 and 4); and, measured with a counting allocator, it
//! allocated 3 times per ClientHello record plus 7 to 12 times for its extensions,
//! where this parser allocates none (pitfall 6). Handles SSLv2-format ClientHellos (RFC 5246
//! Appendix E.2), SSLv3 to TLS 1.3 (RFC 8446 section 4.1) and the TLS 1.3 draft
//! ServerHellos without session id and compression method.
//!
//! Guarantees: never panics on any input; allocation-free unless a hello carries
//! more than [`STACK_VALUES`] ciphers, extensions, groups or signature algorithms,
//! in which case that list spills into one `Vec` bounded by the body's length.

use super::fingerprint::{self, is_grease, STACK_VALUES};
use super::memo::FpMemo;
use super::names::FixedStr;

/// Why a hello was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The input ends inside a field it announces (a length beyond the body or the
    /// record).
    Truncated,
    /// A value is impossible, or inner lengths disagree with the enclosing ones (an
    /// extension overrunning the extension block, a session id longer than 32, a
    /// wrong message type).
    Malformed,
    /// A protocol version this parser does not read (not SSLv2, SSLv3, TLS 1.0-1.3
    /// or a TLS 1.3 draft).
    UnsupportedVersion,
}

/// What a ClientHello says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// An SSLv2-format ClientHello (RFC 5246 Appendix E.2).
    pub sslv2: bool,
    /// ClientHello.legacy_version (SSLv2 format: its version field).
    pub legacy_version: u16,
    /// The highest non-GREASE supported_versions value if the extension is present
    /// and holds one, else `legacy_version`.
    pub version: u16,
    /// SSLv2: the challenge right-aligned, zero padded on the left to 32 bytes.
    pub random: [u8; 32],
    /// The first host_name entry of the first server_name extension.
    pub sni: Option<FixedStr<255>>,
    /// The first protocol of the first ALPN extension (bytes as sent).
    pub alpn: Option<FixedStr<32>>,
    /// Protocols in the first ALPN extension (capped at 255).
    pub alpn_count: u8,
    /// Cipher suites offered, as on the wire (GREASE and SCSV values included;
    /// SSLv2 format: cipher specs).
    pub cipher_count: u16,
    /// The early_data extension (42) is present.
    pub offers_early_data: bool,
    /// JA3 (MD5); `None` for SSLv2.
    pub ja3: Option<[u8; 16]>,
    /// JA4 as ASCII; `None` for SSLv2.
    pub ja4: Option<[u8; fingerprint::JA4_LEN]>,
}

/// Hashes every field but the random (zeroed in the per-worker hello store,
/// [`super::memo::Store`], the one user), with the small ones packed into one
/// word: the derived hash made one hasher call per field, about 280 instructions
/// a hello (callgrind, 200k synth replay). Every field that can differ counts, so
/// that hellos differing only in, say, their ALPN cannot all land on one hash.
impl std::hash::Hash for ClientHello {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(
            u64::from(self.legacy_version)
                | u64::from(self.version) << 16
                | u64::from(self.cipher_count) << 32
                | u64::from(self.alpn_count) << 48
                | u64::from(self.sslv2) << 56
                | u64::from(self.offers_early_data) << 57
                | u64::from(self.sni.is_some()) << 58
                | u64::from(self.alpn.is_some()) << 59
                | u64::from(self.ja3.is_some()) << 60
                | u64::from(self.ja4.is_some()) << 61,
        );
        if let Some(sni) = &self.sni {
            sni.hash(state);
        }
        if let Some(alpn) = &self.alpn {
            alpn.hash(state);
        }
        if let Some(ja3) = &self.ja3 {
            state.write(ja3);
        }
        if let Some(ja4) = &self.ja4 {
            state.write(ja4);
        }
    }
}

/// What a ServerHello says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    /// The 2-byte supported_versions extension if present, else `legacy_version`
    /// (the drafts before 22 put their version there).
    pub version: u16,
    pub random: [u8; 32],
    pub cipher: u16,
    /// A HelloRetryRequest: `random` is [`HRR_RANDOM`] (RFC 8446 section 4.1.3).
    pub hello_retry: bool,
    /// The downgrade sentinel at the end of `random` (RFC 8446 section 4.1.3):
    /// `Some(0x0303)` for "DOWNGRD\x01" (TLS 1.2 negotiated by a TLS 1.3 server),
    /// `Some(0x0302)` for "DOWNGRD\x00" (TLS 1.1 or below).
    pub downgrade: Option<u16>,
}

/// SHA-256("HelloRetryRequest"), the random of a HelloRetryRequest (RFC 8446
/// section 4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// "DOWNGRD", the first 7 bytes of the downgrade sentinel.
const DOWNGRADE: &[u8; 7] = b"DOWNGRD";

/// Extension types read here (IANA TLS ExtensionType registry).
pub mod ext {
    pub const SERVER_NAME: u16 = 0;
    pub const SUPPORTED_GROUPS: u16 = 10;
    pub const EC_POINT_FORMATS: u16 = 11;
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    pub const ALPN: u16 = 16;
    pub const EARLY_DATA: u16 = 42;
    pub const SUPPORTED_VERSIONS: u16 = 43;
}

/// A cursor over a byte slice: every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A vector with a `len_bytes`-byte length prefix (1 or 2).
    fn vec(&mut self, len_bytes: usize) -> Option<&'a [u8]> {
        let n = if len_bytes == 1 {
            usize::from(self.u8()?)
        } else {
            usize::from(self.u16()?)
        };
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A list of u16 on the stack, spilling into a `Vec` past [`STACK_VALUES`].
struct U16s {
    stack: [u16; STACK_VALUES],
    len: usize,
    heap: Vec<u16>,
}

impl U16s {
    fn new() -> Self {
        U16s {
            stack: [0; STACK_VALUES],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, v: u16) {
        if let Some(slot) = self
            .stack
            .get_mut(self.len)
            .filter(|_| self.heap.is_empty())
        {
            *slot = v;
            self.len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack);
            }
            self.heap.push(v);
        }
    }

    /// Appends the big-endian u16 values of `bytes` (a trailing odd byte is ignored).
    fn extend_be(&mut self, bytes: &[u8]) {
        let pairs = bytes.chunks_exact(2);
        // All on the stack: one pass without a check per value.
        if self.heap.is_empty() {
            let end = self.len + pairs.len();
            if let Some(dst) = self.stack.get_mut(self.len..end) {
                for (slot, pair) in dst.iter_mut().zip(pairs) {
                    *slot = u16::from_be_bytes([pair[0], pair[1]]);
                }
                self.len = end;
                return;
            }
        }
        for pair in pairs {
            if let [hi, lo] = *pair {
                self.push(u16::from_be_bytes([hi, lo]));
            }
        }
    }

    fn as_slice(&self) -> &[u16] {
        if self.heap.is_empty() {
            self.stack.get(..self.len).unwrap_or_default()
        } else {
            &self.heap
        }
    }
}

/// The content of a length-prefixed list inside an extension, read leniently: the
/// declared length, or what is there if the extension is shorter. A malformed
/// extension body costs its own fact, not the whole hello.
fn inner_list(data: &[u8], len_bytes: usize) -> &[u8] {
    let mut r = Reader(data);
    let declared = if len_bytes == 1 {
        r.u8().map(usize::from)
    } else {
        r.u16().map(usize::from)
    };
    match declared {
        Some(n) => r.0.get(..n).unwrap_or(r.0),
        None => &[],
    }
}

/// server_name (RFC 6066 section 3): the first host_name (type 0) entry.
fn first_host_name(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader(inner_list(data, 2));
    while !r.is_empty() {
        let name_type = r.u8()?;
        let name = r.vec(2)?;
        if name_type == 0 {
            return Some(name);
        }
    }
    None
}

/// ALPN (RFC 7301 section 3.1): the first protocol and the number of protocols
/// (those that fit in the extension).
fn alpn_protocols(data: &[u8]) -> (Option<&[u8]>, u8) {
    let mut r = Reader(inner_list(data, 2));
    let mut first = None;
    let mut count = 0u8;
    while let Some(p) = r.vec(1) {
        first = first.or(Some(p));
        count = count.saturating_add(1);
    }
    (first, count)
}

/// Parses a ClientHello handshake body (without the 4-byte handshake header),
/// RFC 8446 section 4.1.2 / RFC 5246 section 7.4.1.2. Bytes after the extension
/// block are ignored; a body that ends after the compression methods has no
/// extensions (SSLv3, old TLS 1.0 clients).
pub fn parse_client_hello(body: &[u8]) -> Result<ClientHello, HelloError> {
    parse_client_hello_memo(body, None)
}

/// [`parse_client_hello`], the fingerprint hashes looked up in (and kept in)
/// `memo`: the same result, cheaper when the client's lists were seen before.
pub fn parse_client_hello_memo(
    body: &[u8],
    mut memo: Option<&mut FpMemo>,
) -> Result<ClientHello, HelloError> {
    use HelloError::{Malformed, Truncated, UnsupportedVersion};
    let mut r = Reader(body);
    let legacy_version = r.u16().ok_or(Truncated)?;
    if legacy_version >> 8 != 3 {
        return Err(UnsupportedVersion);
    }
    let random = r.array::<32>().ok_or(Truncated)?;
    let session_id = r.vec(1).ok_or(Truncated)?;
    if session_id.len() > 32 {
        return Err(Malformed);
    }
    let cipher_bytes = r.vec(2).ok_or(Truncated)?;
    if cipher_bytes.len() % 2 != 0 {
        return Err(Malformed);
    }
    r.vec(1).ok_or(Truncated)?; // compression methods
    let extensions = if r.is_empty() {
        &[][..]
    } else {
        r.vec(2).ok_or(Truncated)?
    };

    let mut ciphers = U16s::new();
    ciphers.extend_be(cipher_bytes);
    let mut ext_types = U16s::new();
    let mut groups = U16s::new();
    let mut sig_algs = U16s::new();
    let mut point_formats: &[u8] = &[];
    let mut seen_groups = false;
    let mut seen_formats = false;
    let mut seen_sigs = false;
    let mut has_sni = false;
    let mut sni = None;
    let mut alpn: Option<Option<&[u8]>> = None;
    let mut alpn_count = 0;
    let mut supported: Option<u16> = None;
    let mut offers_early_data = false;

    let mut e = Reader(extensions);
    while !e.is_empty() {
        let ty = e.u16().ok_or(Malformed)?;
        let data = e.vec(2).ok_or(Malformed)?;
        ext_types.push(ty);
        // The first extension of each type is the one read (a repeated extension
        // is a protocol error a server will reject; it still counts for JA3/JA4).
        match ty {
            ext::SERVER_NAME if !has_sni => {
                has_sni = true;
                sni = first_host_name(data).map(FixedStr::new);
            }
            ext::ALPN if alpn.is_none() => {
                let (first, count) = alpn_protocols(data);
                alpn = Some(first);
                alpn_count = count;
            }
            ext::SUPPORTED_VERSIONS if supported.is_none() => {
                // The client form: a 1-byte length, then versions.
                let highest = inner_list(data, 1)
                    .chunks_exact(2)
                    .filter_map(|p| Some(u16::from_be_bytes(p.try_into().ok()?)))
                    .filter(|&v| !is_grease(v))
                    .max();
                supported = Some(highest.unwrap_or(legacy_version));
            }
            ext::SIGNATURE_ALGORITHMS if !seen_sigs => {
                seen_sigs = true;
                sig_algs.extend_be(inner_list(data, 2));
            }
            ext::SUPPORTED_GROUPS if !seen_groups => {
                seen_groups = true;
                groups.extend_be(inner_list(data, 2));
            }
            ext::EC_POINT_FORMATS if !seen_formats => {
                seen_formats = true;
                point_formats = inner_list(data, 1);
            }
            ext::EARLY_DATA => offers_early_data = true,
            _ => {}
        }
    }

    let version = supported.unwrap_or(legacy_version);
    let alpn_first = alpn.flatten();
    let ja3 = fingerprint::ja3_memo(
        memo.as_deref_mut(),
        legacy_version,
        ciphers.as_slice(),
        ext_types.as_slice(),
        groups.as_slice(),
        point_formats,
    );
    let ja4 = fingerprint::ja4_memo(
        memo,
        version,
        has_sni,
        ciphers.as_slice(),
        ext_types.as_slice(),
        alpn_first,
        sig_algs.as_slice(),
    );
    Ok(ClientHello {
        sslv2: false,
        legacy_version,
        version,
        random,
        sni,
        alpn: alpn_first.map(FixedStr::new),
        alpn_count,
        cipher_count: u16::try_from(ciphers.as_slice().len()).unwrap_or(u16::MAX),
        offers_early_data,
        ja3: Some(ja3),
        ja4: Some(ja4),
    })
}

/// An SSLv2 record with a 2-byte header (RFC 5246 Appendix E.2; the high bit of
/// the first byte set): the message length it announces, and the message bytes
/// present in `record` (fewer than announced if `record` is cut short).
fn sslv2_record(record: &[u8]) -> Option<(usize, &[u8])> {
    let [b0, b1, ..] = *record else {
        return None;
    };
    if b0 & 0x80 == 0 {
        return None;
    }
    let len = usize::from(b0 & 0x7f) << 8 | usize::from(b1);
    let have = record.get(2..).unwrap_or_default();
    Some((len, have.get(..len).unwrap_or(have)))
}

/// SSLv2 versions accepted in an SSLv2-format hello: 2 (SSL 2.0) or 3.x (a TLS
/// client speaking the compatible format).
fn sslv2_version_ok(v: u16) -> bool {
    v == 0x0002 || v >> 8 == 3
}

/// Fixed part of an SSLv2 CLIENT-HELLO: type, version, three lengths.
const SSLV2_CH_FIXED: usize = 9;

/// Parses an SSLv2-format ClientHello record starting at its 2-byte header
/// (RFC 5246 Appendix E.2): `msg_type(1)=1 version(2) cipher_spec_length(2)
/// session_id_length(2) challenge_length(2)`, then 3-byte cipher specs, the session
/// id and the challenge (at most 32 bytes). No extensions, so no SNI, ALPN or
/// fingerprints (Suricata and FoxIO compute no JA3/JA4 for SSLv2 either).
pub fn parse_sslv2_client_hello(record: &[u8]) -> Result<ClientHello, HelloError> {
    use HelloError::{Malformed, Truncated, UnsupportedVersion};
    if record.len() < 2 {
        return Err(Truncated);
    }
    let (len, msg) = sslv2_record(record).ok_or(Malformed)?;
    if msg.len() < len {
        return Err(Truncated);
    }
    let mut r = Reader(msg);
    if r.u8().ok_or(Truncated)? != 1 {
        return Err(Malformed);
    }
    let version = r.u16().ok_or(Truncated)?;
    if !sslv2_version_ok(version) {
        return Err(UnsupportedVersion);
    }
    let cs_len = usize::from(r.u16().ok_or(Truncated)?);
    let sid_len = usize::from(r.u16().ok_or(Truncated)?);
    let ch_len = usize::from(r.u16().ok_or(Truncated)?);
    if cs_len % 3 != 0 || ch_len > 32 {
        return Err(Malformed);
    }
    r.take(cs_len).ok_or(Truncated)?;
    r.take(sid_len).ok_or(Truncated)?;
    let challenge = r.take(ch_len).ok_or(Truncated)?;
    let mut random = [0u8; 32];
    if let Some(dst) = random.get_mut(32 - challenge.len()..) {
        dst.copy_from_slice(challenge);
    }
    Ok(ClientHello {
        sslv2: true,
        legacy_version: version,
        version,
        random,
        sni: None,
        alpn: None,
        alpn_count: 0,
        cipher_count: u16::try_from(cs_len / 3).unwrap_or(u16::MAX),
        offers_early_data: false,
        ja3: None,
        ja4: None,
    })
}

/// If `first` starts an SSLv2-format ClientHello (header with the high bit set,
/// message type 1, version 2 or 3.x), the length of its record, header included:
/// how many stream bytes to collect before calling
/// [`parse_sslv2_client_hello`]. Needs the first 5 bytes; `None` with fewer.
pub fn sslv2_client_hello_len(first: &[u8]) -> Option<usize> {
    let [b0, b1, msg_type, v0, v1, ..] = *first else {
        return None;
    };
    let (len, _) = sslv2_record(&[b0, b1])?;
    let ok = msg_type == 1 && sslv2_version_ok(u16::from_be_bytes([v0, v1]));
    (ok && len >= SSLV2_CH_FIXED).then_some(2 + len)
}

/// If `record` (from its 2-byte header) is an SSLv2 SERVER-HELLO (message type 4),
/// its version. Only the 11-byte fixed part must be present:
/// `msg_type(1)=4 session_id_hit(1) certificate_type(1) version(2)
/// certificate_length(2) cipher_specs_length(2) connection_id_length(2)`, whose
/// lengths must add up to the record's.
pub fn parse_sslv2_server_hello(record: &[u8]) -> Option<u16> {
    let (len, msg) = sslv2_record(record)?;
    let mut r = Reader(msg);
    let msg_type = r.u8()?;
    let session_id_hit = r.u8()?;
    let _certificate_type = r.u8()?;
    let version = r.u16()?;
    let cert_len = usize::from(r.u16()?);
    let cs_len = usize::from(r.u16()?);
    let cid_len = usize::from(r.u16()?);
    let ok = msg_type == 4
        && session_id_hit <= 1
        && sslv2_version_ok(version)
        && cs_len % 3 == 0
        && 11 + cert_len + cs_len + cid_len == len;
    ok.then_some(version)
}

/// A TLS 1.3 draft version: IETF drafts 0x7fNN, Facebook's fizz drafts 0x7eNN.
fn is_draft(v: u16) -> bool {
    // 0x7e01..=0x7eff (fizz) and 0x7f00..=0x7fff (IETF) are contiguous.
    matches!(v, 0x7e01..=0x7fff)
}

/// Parses a ServerHello handshake body (RFC 8446 section 4.1.3, RFC 5246 section
/// 7.4.1.3): SSLv3 to TLS 1.3, including HelloRetryRequest. For a draft version
/// (or 0x0304 in the legacy_version field, as draft 14 did), the standard layout
/// is tried first and then the drafts' layout before draft 22, `version(2)
/// random(32) cipher(2) extensions`, with no session id and no compression method
/// (design note, pitfall 4). The extension block must end the body.
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello, HelloError> {
    let legacy_version = Reader(body).u16().ok_or(HelloError::Truncated)?;
    if !(0x0300..=0x0304).contains(&legacy_version) && !is_draft(legacy_version) {
        return Err(HelloError::UnsupportedVersion);
    }
    match server_hello_layout(body, true) {
        Err(e) if is_draft(legacy_version) || legacy_version == 0x0304 => {
            server_hello_layout(body, false).map_err(|_| e)
        }
        res => res,
    }
}

fn server_hello_layout(body: &[u8], standard: bool) -> Result<ServerHello, HelloError> {
    use HelloError::{Malformed, Truncated};
    let mut r = Reader(body);
    let legacy_version = r.u16().ok_or(Truncated)?;
    let random = r.array::<32>().ok_or(Truncated)?;
    if standard {
        let session_id = r.vec(1).ok_or(Truncated)?;
        if session_id.len() > 32 {
            return Err(Malformed);
        }
    }
    let cipher = r.u16().ok_or(Truncated)?;
    if standard {
        r.u8().ok_or(Truncated)?; // compression method
    }
    let extensions = if r.is_empty() {
        &[][..]
    } else {
        r.vec(2).ok_or(Truncated)?
    };
    if !r.is_empty() {
        return Err(Malformed);
    }
    let mut version = legacy_version;
    let mut e = Reader(extensions);
    while !e.is_empty() {
        let ty = e.u16().ok_or(Malformed)?;
        let data = e.vec(2).ok_or(Malformed)?;
        if ty == ext::SUPPORTED_VERSIONS {
            if let [hi, lo] = *data {
                version = u16::from_be_bytes([hi, lo]);
            }
        }
    }
    let downgrade = match random.get(24..) {
        Some([d @ .., 1]) if d == DOWNGRADE => Some(0x0303),
        Some([d @ .., 0]) if d == DOWNGRADE => Some(0x0302),
        _ => None,
    };
    Ok(ServerHello {
        legacy_version,
        version,
        random,
        cipher,
        hello_retry: random == HRR_RANDOM,
        downgrade,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex to bytes, for literals copied from captures.
    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn vec16(data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }

    fn u16s(vals: &[u16]) -> Vec<u8> {
        vals.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    /// A ClientHello body with the JA4 specification's ciphers, extensions and
    /// signature algorithms (JA4.md), plus GREASE.
    fn spec_client_hello() -> Vec<u8> {
        let ciphers = [
            0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let mut exts = Vec::new();
        exts.extend(ext(0xdada, &[]));
        for ty in [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ] {
            let data = match ty {
                0x0000 => vec16(&[&[0u8][..], &vec16(b"example.com")].concat()),
                0x0010 => vec16(b"\x02h2\x08http/1.1"),
                0x000d => vec16(&u16s(&[
                    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                ])),
                0x002b => [&[6u8][..], &u16s(&[0x7a7a, 0x0304, 0x0303])].concat(),
                0x000a => vec16(&u16s(&[0x8a8a, 0x001d, 0x0017, 0x0018])),
                0x000b => vec![1, 0],
                _ => Vec::new(),
            };
            exts.extend(ext(ty, &data));
        }
        exts.extend(ext(0x1a1a, &[0]));
        let mut b = u16s(&[0x0303]);
        b.extend([0x11; 32]);
        b.push(32);
        b.extend([0x22; 32]);
        b.extend(vec16(&u16s(&ciphers)));
        b.extend([1, 0]);
        b.extend(vec16(&exts));
        b
    }

    #[test]
    fn test_client_hello_spec_fingerprint() {
        let ch = parse_client_hello(&spec_client_hello()).unwrap();
        assert_eq!(&ch.ja4.unwrap(), b"t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert!(!ch.sslv2);
        assert_eq!(ch.legacy_version, 0x0303);
        assert_eq!(ch.version, 0x0304);
        assert_eq!(ch.random, [0x11; 32]);
        assert_eq!(ch.sni.unwrap().as_bytes(), b"example.com");
        assert_eq!(ch.alpn.unwrap().as_bytes(), b"h2");
        assert_eq!(ch.alpn_count, 2);
        assert_eq!(ch.cipher_count, 16);
        assert!(!ch.offers_early_data);
        // JA3 string: GREASE dropped from ciphers, extensions and groups.
        let want = md5::Md5::digest(
            b"771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,\
27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0",
        );
        use md5::Digest;
        assert_eq!(ch.ja3.unwrap(), <[u8; 16]>::from(want));
    }

    #[test]
    fn test_client_hello_minimal_no_extensions() {
        // SSLv3-style: nothing after the compression methods.
        let mut b = u16s(&[0x0300]);
        b.extend([7; 32]);
        b.push(0);
        b.extend(vec16(&u16s(&[0x0035, 0x00ff])));
        b.extend([1, 0]);
        let ch = parse_client_hello(&b).unwrap();
        assert_eq!(ch.version, 0x0300);
        assert_eq!(ch.sni, None);
        assert_eq!(ch.alpn, None);
        assert_eq!(ch.cipher_count, 2);
        assert_eq!(&ch.ja4.unwrap()[..11], b"ts3i020000_");
        assert_eq!(&ch.ja4.unwrap()[24..], b"000000000000");
    }

    #[test]
    fn test_client_hello_errors() {
        let good = spec_client_hello();
        assert_eq!(parse_client_hello(&[]), Err(HelloError::Truncated));
        assert_eq!(parse_client_hello(&good[..40]), Err(HelloError::Truncated));
        assert_eq!(
            parse_client_hello(&good[..good.len() - 1]),
            Err(HelloError::Truncated)
        );
        let mut v2 = good.clone();
        v2[0] = 0x00;
        assert_eq!(parse_client_hello(&v2), Err(HelloError::UnsupportedVersion));
        let mut sid = good.clone();
        sid[34] = 33;
        assert_eq!(parse_client_hello(&sid), Err(HelloError::Malformed));
        // An extension overrunning the block: shorten the block length by one.
        let mut ext = good.clone();
        let at = 34 + 1 + 32 + 2 + 32 + 2;
        let n = u16::from_be_bytes([ext[at], ext[at + 1]]);
        ext[at..at + 2].copy_from_slice(&(n - 1).to_be_bytes());
        ext.pop();
        assert_eq!(parse_client_hello(&ext), Err(HelloError::Malformed));
    }

    #[test]
    fn test_client_hello_early_data_and_bad_inner_lists() {
        let mut exts = ext(42, &[]);
        // A server_name whose list length lies: no SNI value, but `d` for JA4.
        exts.extend(ext(0, &[0xff, 0xff, 0]));
        exts.extend(ext(16, &[0, 3, 0]));
        let mut b = u16s(&[0x0303]);
        b.extend([0; 32]);
        b.push(0);
        b.extend(vec16(&u16s(&[0x1301])));
        b.extend([1, 0]);
        b.extend(vec16(&exts));
        let ch = parse_client_hello(&b).unwrap();
        assert!(ch.offers_early_data);
        assert_eq!(ch.sni, None);
        assert_eq!(ch.alpn.map(|a| a.is_empty()), Some(true));
        assert_eq!(&ch.ja4.unwrap()[..10], b"t12d010300");
    }

    // zeek/ssl.v3 and suricata-verify/ssl-v2-s1 style: an SSLv2-format hello from a
    // TLS 1.0 client. Built from the layout in RFC 5246 Appendix E.2.
    fn sslv2_hello(challenge: &[u8]) -> Vec<u8> {
        let mut m = vec![1, 0x03, 0x01];
        m.extend(u16s(&[6, 0, challenge.len() as u16]));
        m.extend([0x00, 0x00, 0x39, 0x01, 0x00, 0x80]);
        m.extend_from_slice(challenge);
        let mut r = vec![0x80 | (m.len() >> 8) as u8, m.len() as u8];
        r.extend(m);
        r
    }

    #[test]
    fn test_sslv2_client_hello() {
        let rec = sslv2_hello(&[0xaa; 16]);
        assert_eq!(sslv2_client_hello_len(&rec), Some(rec.len()));
        assert_eq!(sslv2_client_hello_len(&rec[..4]), None);
        let ch = parse_sslv2_client_hello(&rec).unwrap();
        assert!(ch.sslv2);
        assert_eq!(ch.legacy_version, 0x0301);
        assert_eq!(ch.version, 0x0301);
        assert_eq!(ch.cipher_count, 2);
        assert_eq!(&ch.random[..16], &[0; 16]);
        assert_eq!(&ch.random[16..], &[0xaa; 16]);
        assert_eq!((ch.ja3, ch.ja4), (None, None));
        assert_eq!(
            parse_sslv2_client_hello(&rec[..rec.len() - 1]),
            Err(HelloError::Truncated)
        );
        let mut bad = rec.clone();
        bad[2] = 4;
        assert_eq!(parse_sslv2_client_hello(&bad), Err(HelloError::Malformed));
        assert_eq!(sslv2_client_hello_len(&bad), None);
        // A TLS record header is not SSLv2.
        assert_eq!(
            sslv2_client_hello_len(&[0x16, 0x03, 0x01, 0x00, 0x05]),
            None
        );
        assert_eq!(
            parse_sslv2_client_hello(&sslv2_hello(&[1; 33])),
            Err(HelloError::Malformed)
        );
    }

    #[test]
    fn test_sslv2_server_hello() {
        // msg 4, hit 0, cert type 1, version 0x0002, cert 3, specs 3, conn id 16.
        let mut m = vec![4, 0, 1, 0x00, 0x02];
        m.extend(u16s(&[3, 3, 16]));
        m.extend([0; 22]);
        let mut r = vec![0x80, m.len() as u8];
        r.extend(&m);
        assert_eq!(parse_sslv2_server_hello(&r), Some(0x0002));
        // Only the fixed part needs to be there.
        assert_eq!(parse_sslv2_server_hello(&r[..13]), Some(0x0002));
        assert_eq!(parse_sslv2_server_hello(&r[..12]), None);
        r[2] = 1;
        assert_eq!(parse_sslv2_server_hello(&r), None);
    }

    fn server_hello(version: u16, random: [u8; 32], exts: &[u8]) -> Vec<u8> {
        let mut b = u16s(&[version]);
        b.extend(random);
        b.push(0);
        b.extend(u16s(&[0x1301]));
        b.push(0);
        b.extend(vec16(exts));
        b
    }

    #[test]
    fn test_server_hello_tls13_and_hrr() {
        let sv = ext(43, &[0x03, 0x04]);
        let sh = parse_server_hello(&server_hello(0x0303, [5; 32], &sv)).unwrap();
        assert_eq!(
            (sh.legacy_version, sh.version, sh.cipher),
            (0x0303, 0x0304, 0x1301)
        );
        assert!(!sh.hello_retry);
        assert_eq!(sh.downgrade, None);
        let hrr = parse_server_hello(&server_hello(0x0303, HRR_RANDOM, &sv)).unwrap();
        assert!(hrr.hello_retry);
        // The constant is SHA-256("HelloRetryRequest").
        use sha2::Digest;
        assert_eq!(
            <[u8; 32]>::from(sha2::Sha256::digest(b"HelloRetryRequest")),
            HRR_RANDOM
        );
    }

    #[test]
    fn test_server_hello_downgrade() {
        let mut random = [9; 32];
        random[24..].copy_from_slice(b"DOWNGRD\x01");
        let sh = parse_server_hello(&server_hello(0x0303, random, &[])).unwrap();
        assert_eq!(sh.downgrade, Some(0x0303));
        random[31] = 0;
        let sh = parse_server_hello(&server_hello(0x0302, random, &[])).unwrap();
        assert_eq!(sh.downgrade, Some(0x0302));
        random[31] = 2;
        let sh = parse_server_hello(&server_hello(0x0302, random, &[])).unwrap();
        assert_eq!(sh.downgrade, None);
    }

    #[test]
    fn test_server_hello_no_extensions_and_errors() {
        let mut b = u16s(&[0x0300]);
        b.extend([1; 32]);
        b.push(0);
        b.extend(u16s(&[0x0035]));
        b.push(0);
        let sh = parse_server_hello(&b).unwrap();
        assert_eq!((sh.version, sh.cipher), (0x0300, 0x0035));
        assert_eq!(
            parse_server_hello(&b[..b.len() - 1]),
            Err(HelloError::Truncated)
        );
        let mut trailing = b.clone();
        trailing.extend([0, 0, 0]);
        assert_eq!(parse_server_hello(&trailing), Err(HelloError::Malformed));
        let mut v = b.clone();
        v[0] = 0xfe;
        assert_eq!(parse_server_hello(&v), Err(HelloError::UnsupportedVersion));
    }

    #[test]
    fn test_server_hello_draft_layout() {
        // Draft 16 (Firefox 52): version 7f10, random, cipher, extensions; no
        // session id, no compression (zeek/tls13draft16-ff52.a01 frame 6 layout).
        let key_share = ext(40, &[0x00, 0x1d, 0x00, 0x02, 0xab, 0xcd]);
        let mut b = u16s(&[0x7f10]);
        b.extend([3; 32]);
        b.extend(u16s(&[0x1301]));
        b.extend(vec16(&key_share));
        let sh = parse_server_hello(&b).unwrap();
        assert_eq!(
            (sh.legacy_version, sh.version, sh.cipher),
            (0x7f10, 0x7f10, 0x1301)
        );
        // The same layout with a TLS 1.2 version is not accepted.
        b[..2].copy_from_slice(&[0x03, 0x03]);
        assert!(parse_server_hello(&b).is_err());
    }

    // zeek/hrr.pcap frame 6: a HelloRetryRequest (TLS 1.3 final: legacy_version
    // 0x0303, supported_versions 0x0304, key_share holding only the group 0x0017).
    const HRR_BODY: &str = "0303cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c\
        201a6bb8368add0e28015bd6cced648236f49e2407f19653ac1fdd1ffa48bfaecd130200000c002b00\
        020304003300020017";

    #[test]
    fn test_server_hello_hrr_from_capture() {
        let sh = parse_server_hello(&unhex(HRR_BODY)).unwrap();
        assert_eq!(
            (sh.legacy_version, sh.version, sh.cipher),
            (0x0303, 0x0304, 0x1302)
        );
        assert!(sh.hello_retry);
        assert_eq!(sh.random, HRR_RANDOM);
        assert_eq!(sh.downgrade, None);
    }

    // zeek/tls13draft16-ff52.a01.pcap frame 6: draft 16, no session id, no
    // compression method; extensions key_share (40) and signature_algorithms.
    const FF52_BODY: &str = "7f108e013ef70bc663d9dc306362b2f7914bf28dfe4bdc7be5bf9820f6965e34cfd1\
        1303006d000d00000028006500180061047b6fc2dee05cacee615b2803abc86f0204128502c388627f\
        c1e9f940373356c55fabeb31513a6c96ceb6dead60e55375503f64e429f07b48ee0ed5680417c95155\
        37c23246e925cdb1d62db3671a9bef64d8335a2d06c9e57d1cb448ef9c4e02";

    #[test]
    fn test_server_hello_draft16_from_capture() {
        let body = unhex(FF52_BODY);
        let sh = parse_server_hello(&body).unwrap();
        assert_eq!(
            (sh.legacy_version, sh.version, sh.cipher),
            (0x7f10, 0x7f10, 0x1303)
        );
        assert!(!sh.hello_retry);
        // The standard layout alone rejects it (tls-parser's Error(Tag)).
        assert!(server_hello_layout(&body, true).is_err());
    }

    // suricata-verify/tls-cert-noissuer: a TLS 1.2 ServerHello from a TLS 1.3
    // server, random ending in "DOWNGRD\x01".
    const NOISSUER_BODY: &str =
        "0303adcd2f2317345b59a5a96082d5af2593fc129767c2e09c0a444f574e47524401\
        00c02f00001aff010001000010000b000908687474702f312e31000b00020100";

    #[test]
    fn test_server_hello_downgrade_from_capture() {
        let sh = parse_server_hello(&unhex(NOISSUER_BODY)).unwrap();
        assert_eq!((sh.version, sh.cipher), (0x0303, 0xc02f));
        assert_eq!(sh.downgrade, Some(0x0303));
        assert!(!sh.hello_retry);
    }

    // suricata-verify/ssl-v2-s1.pcap frame 4: an SSLv2-format ClientHello from a
    // TLS 1.0 client, 26 cipher specs, no session id, a 16-byte challenge.
    const SSLV2_CH: &str = "8067010301004e000000100100800300800700c006004002008004008000003900\
        003800003500003300003200000400000500002f00001600001300feff00000a00001500001200fefe\
        0000090000640000620000030000063143c465d52771e466a42be1701787fd";

    #[test]
    fn test_sslv2_client_hello_from_capture() {
        let rec = unhex(SSLV2_CH);
        assert_eq!(sslv2_client_hello_len(&rec), Some(105));
        let ch = parse_sslv2_client_hello(&rec).unwrap();
        assert!(ch.sslv2);
        assert_eq!(
            (ch.legacy_version, ch.version, ch.cipher_count),
            (0x0301, 0x0301, 26)
        );
        assert_eq!(&ch.random[..16], &[0; 16]);
        assert_eq!(&ch.random[16..], &rec[rec.len() - 16..]);
        assert_eq!((ch.ja3, ch.ja4, ch.sni), (None, None, None));
    }

    #[test]
    fn test_sslv2_server_hello_from_capture() {
        // zeek/ssl-v2.pcap: the first 40 bytes of a 950-byte SERVER-HELLO (SSL 2.0,
        // certificate 903 bytes, 6 cipher specs, 16-byte connection id).
        let rec = unhex(
            "83b40400010002038700120010308203833082026b02044eb6f269300d06092a864886f70d010105",
        );
        assert_eq!(parse_sslv2_server_hello(&rec), Some(0x0002));
        assert_eq!(sslv2_client_hello_len(&rec), None);
    }

    #[test]
    fn test_u16s_spill() {
        let mut l = U16s::new();
        for v in 0..1000u16 {
            l.push(v);
        }
        assert_eq!(l.as_slice().len(), 1000);
        assert!(l.as_slice().iter().copied().eq(0..1000u16));
    }
}
