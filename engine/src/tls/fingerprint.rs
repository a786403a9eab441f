//! TLS client fingerprints from a ClientHello's parts: JA4 (FoxIO, BSD-3-Clause;
//! `technical_details/JA4.md`, TLS over TCP only) and JA3 (salesforce/ja3).
//!
//! Guarantees: pure functions of their arguments; never panic; allocation-free for
//! lists of up to [`STACK_VALUES`] values. A longer list (possible only with a
//! pathological ClientHello, since the cipher list may hold 32767 values) is sorted
//! in one `Vec` allocated for the call, so the fingerprint is always exact.
//! GREASE values (RFC 8701) are dropped everywhere, as both specifications say.

use md5::Md5;
use sha2::{Digest, Sha256};

use super::memo::{FpMemo, FP_KEY};

/// Values sorted on the stack; longer lists allocate once per call.
pub const STACK_VALUES: usize = 256;

/// Length of a JA4 fingerprint: `t13d1516h2_8daaf6152771_e5627efa2ab1`.
pub const JA4_LEN: usize = 36;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A GREASE value of RFC 8701 section 5 (0x0a0a, 0x1a1a, ..., 0xfafa): both bytes
/// equal and of the form 0x?a. (tls-parser's `& 0x0f0f == 0x0a0a` also matches
/// values such as 0x1a2a, which are not GREASE.)
pub fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// Writes `bytes` as lower-case hex into `out` (as many whole bytes as fit, two
/// characters each) and returns the text written.
pub fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    let mut n = 0;
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0x0f)];
        n += 2;
    }
    std::str::from_utf8(out.get(..n).unwrap_or_default()).unwrap_or_default()
}

/// The 4 lower-case hex digits of `v`.
fn hex4(v: u16) -> [u8; 4] {
    let [hi, lo] = v.to_be_bytes();
    [
        HEX[usize::from(hi >> 4)],
        HEX[usize::from(hi & 0x0f)],
        HEX[usize::from(lo >> 4)],
        HEX[usize::from(lo & 0x0f)],
    ]
}

/// The JA4 version characters (JA4.md "TLS and DTLS Version").
fn ja4_version(v: u16) -> [u8; 2] {
    match v {
        0x0304 => *b"13",
        0x0303 => *b"12",
        0x0302 => *b"11",
        0x0301 => *b"10",
        0x0300 => *b"s3",
        0x0002 => *b"s2",
        0xfeff => *b"d1",
        0xfefd => *b"d2",
        0xfefc => *b"d3",
        _ => *b"00",
    }
}

/// A count as two decimal digits, capped at 99.
fn two_digits(n: usize) -> [u8; 2] {
    let n = n.min(99) as u8;
    [b'0' + n / 10, b'0' + n % 10]
}

/// The JA4 ALPN characters: first and last byte of the first protocol if both are
/// ASCII alphanumerics, else the first and last hex digit of the whole value;
/// `00` if there is none or it is empty.
fn ja4_alpn(alpn: Option<&[u8]>) -> [u8; 2] {
    let Some((&first, rest)) = alpn.and_then(|a| a.split_first()) else {
        return *b"00";
    };
    let last = rest.last().copied().unwrap_or(first);
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [first, last]
    } else {
        [HEX[usize::from(first >> 4)], HEX[usize::from(last & 0x0f)]]
    }
}

/// The non-GREASE values of `values` other than those in `skip`, sorted, handed to
/// `f`: on the stack up to [`STACK_VALUES`], else in one allocation.
fn with_sorted<R>(values: &[u16], skip: &[u16], f: impl FnOnce(&[u16]) -> R) -> R {
    let keep = |v: &&u16| !is_grease(**v) && !skip.contains(v);
    let n = values.iter().filter(keep).count();
    let mut stack = [0u16; STACK_VALUES];
    let mut heap = Vec::new();
    let buf: &mut [u16] = if n <= STACK_VALUES {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    for (slot, v) in buf.iter_mut().zip(values.iter().filter(keep)) {
        *slot = *v;
    }
    buf.sort_unstable();
    f(buf)
}

/// Feeds `values` to `h` as comma-separated 4-digit hex.
fn hash_hex_list(h: &mut Sha256, values: impl Iterator<Item = u16>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            h.update(b",");
        }
        h.update(hex4(v));
    }
}

/// The first 12 hex digits of a SHA-256 (in the first 12 of 16 bytes, the size the
/// memo keeps).
fn truncated_hex(h: Sha256) -> [u8; 16] {
    let digest = h.finalize();
    let mut out = [0u8; 16];
    hex(digest.get(..6).unwrap_or_default(), &mut out[..12]);
    out
}

/// What a memoized digest is of ([`FpMemo`] keys are per tag).
mod tag {
    pub const JA4_CIPHERS: u16 = 1;
    pub const JA4_EXTENSIONS: u16 = 2;
    pub const JA3: u16 = 3;
    /// The JA4 cipher digest keyed by the non-GREASE ciphers in wire order.
    pub const JA4_CIPHERS_WIRE: u16 = 4;
}

/// Largest extension type kept in [`sorted_extensions`]'s bit set.
const EXT_BITS: u16 = 64;

/// Extension types of [`EXT_BITS`] or more kept by [`sorted_extensions`] (a
/// ClientHello has a handful: 0x4469, 0xfe0d, 0xff01, ...).
const EXT_HIGH: usize = 32;

/// JA4's extension list: the non-GREASE values of `values` other than SNI (0x0000)
/// and ALPN (0x0010), sorted, written to `out`; their number, or `None` when
/// [`with_sorted`] must do it (a type below [`EXT_BITS`] repeated, more than
/// [`EXT_HIGH`] above it, or more than `out` holds). Without a general sort: most
/// types are below 64 and go into a bit set read back in order, the few others are
/// sorted by insertion; the result is the one `sort_unstable` gives (a total order
/// on `u16`, and no repeated value is lost).
fn sorted_extensions(values: &[u16], out: &mut [u16]) -> Option<usize> {
    let mut low = 0u64;
    let mut high = [0u16; EXT_HIGH];
    let mut nhigh = 0;
    for &v in values {
        if is_grease(v) || v == 0x0000 || v == 0x0010 {
            continue;
        }
        if v < EXT_BITS {
            let bit = 1u64 << v;
            if low & bit != 0 {
                return None;
            }
            low |= bit;
        } else {
            *high.get_mut(nhigh)? = v;
            let mut j = nhigh;
            while j > 0 && high[j - 1] > v {
                high[j] = high[j - 1];
                j -= 1;
            }
            high[j] = v;
            nhigh += 1;
        }
    }
    let nlow = low.count_ones() as usize;
    let (lows, highs) = out.get_mut(..nlow + nhigh)?.split_at_mut(nlow);
    for slot in lows {
        *slot = low.trailing_zeros() as u16;
        low &= low - 1;
    }
    highs.copy_from_slice(&high[..nhigh]);
    Some(nlow + nhigh)
}

/// A memo key built from several lists: each list's length, then its values; too
/// long for a memo slot makes no key (the digest is computed).
struct Key {
    buf: [u16; FP_KEY],
    len: usize,
    fits: bool,
}

impl Key {
    fn new() -> Key {
        Key {
            buf: [0; FP_KEY],
            len: 0,
            fits: true,
        }
    }
    fn push(&mut self, v: u16) {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = v;
                self.len += 1;
            }
            None => self.fits = false,
        }
    }
    fn list(&mut self, values: &[u16]) {
        // A list of more than u16::MAX values cannot fit the key anyway.
        self.push(values.len().min(usize::from(u16::MAX)) as u16);
        // One copy, not a checked push per value (the same key: a list that does
        // not fit makes none either way).
        match self
            .buf
            .get_mut(self.len..self.len.saturating_add(values.len()))
        {
            Some(dst) => {
                dst.copy_from_slice(values);
                self.len += values.len();
            }
            None => self.fits = false,
        }
    }
    fn get(&self) -> Option<&[u16]> {
        self.fits.then(|| &self.buf[..self.len])
    }
}

/// `compute()`, through `memo` when there is one and the key fits.
fn memoized(
    memo: &mut Option<&mut FpMemo>,
    tag: u16,
    key: Option<&[u16]>,
    compute: impl FnOnce() -> [u8; 16],
) -> [u8; 16] {
    match (memo, key) {
        (Some(m), Some(k)) => m.get_or(tag, k, compute),
        _ => compute(),
    }
}

/// JA4 for TLS over TCP (JA4.md, commit d8f731ce), as ASCII:
/// `t` + version + `d`/`i` + cipher count + extension count + ALPN, `_`, the
/// truncated SHA-256 of the sorted ciphers, `_`, that of the sorted extensions
/// (without SNI 0x0000 and ALPN 0x0010) followed by `_` and the signature algorithms
/// in wire order (left out with the `_` when there are none).
///
/// - `version`: the highest non-GREASE value of supported_versions if the extension
///   is present, else ClientHello.legacy_version (never the record version).
/// - `has_sni`: the server_name extension (0) is present, whatever its value.
/// - `ciphers`, `extensions`: as on the wire, GREASE included (dropped here).
/// - `alpn_first`: the first protocol of the first ALPN extension, raw.
/// - `sig_algs`: the signature_algorithms extension (13) only, in wire order.
///
/// An empty cipher list gives `000000000000` for the second part, and an empty
/// extension list (after removing SNI and ALPN) the same for the third, as the
/// specification says (Suricata hashes the empty string instead).
pub fn ja4(
    version: u16,
    has_sni: bool,
    ciphers: &[u16],
    extensions: &[u16],
    alpn_first: Option<&[u8]>,
    sig_algs: &[u16],
) -> [u8; JA4_LEN] {
    ja4_memo(
        None, version, has_sni, ciphers, extensions, alpn_first, sig_algs,
    )
}

/// [`ja4`], with the two hashes looked up in (and kept in) `memo`.
pub fn ja4_memo(
    mut memo: Option<&mut FpMemo>,
    version: u16,
    has_sni: bool,
    ciphers: &[u16],
    extensions: &[u16],
    alpn_first: Option<&[u8]>,
    sig_algs: &[u16],
) -> [u8; JA4_LEN] {
    let mut out = [b'0'; JA4_LEN];
    let real = |v: &&u16| !is_grease(**v);
    let [v0, v1] = ja4_version(version);
    let [e0, e1] = two_digits(extensions.iter().filter(real).count());
    let [a0, a1] = ja4_alpn(alpn_first);
    let sni = if has_sni { b'd' } else { b'i' };
    // The cipher count (out[4..6]) is written with the ciphers below.
    out[..10].copy_from_slice(&[b't', v0, v1, sni, b'0', b'0', e0, e1, a0, a1]);
    out[10] = b'_';
    out[23] = b'_';

    // The ciphers, GREASE dropped, in wire order: a memo key that needs no sort (a
    // client sends its suites in its own fixed order; Chrome shuffles only its
    // extensions). Missed, the digest comes from the sorted list (itself memoized,
    // for a client that does shuffle its suites) and is kept under this key too.
    let mut wire = [0u16; FP_KEY];
    let mut nc = 0usize;
    for &v in ciphers {
        if !is_grease(v) {
            if let Some(slot) = wire.get_mut(nc) {
                *slot = v;
            }
            nc += 1;
        }
    }
    let [c0, c1] = two_digits(nc);
    out[4] = c0;
    out[5] = c1;
    if nc > 0 {
        let wire = wire.get(..nc);
        let known = match (memo.as_deref_mut(), wire) {
            (Some(m), Some(k)) => m.get(tag::JA4_CIPHERS_WIRE, k),
            _ => None,
        };
        let b = known.unwrap_or_else(|| {
            let b = with_sorted(ciphers, &[], |sorted| {
                memoized(&mut memo, tag::JA4_CIPHERS, Some(sorted), || {
                    let mut h = Sha256::new();
                    hash_hex_list(&mut h, sorted.iter().copied());
                    truncated_hex(h)
                })
            });
            if let (Some(m), Some(k)) = (memo.as_deref_mut(), wire) {
                m.put(tag::JA4_CIPHERS_WIRE, k, b);
            }
            b
        });
        out[11..23].copy_from_slice(&b[..12]);
    }

    let extension_digest = |sorted: &[u16], memo: &mut Option<&mut FpMemo>| {
        let mut key = Key::new();
        key.list(sorted);
        key.list(sig_algs);
        memoized(memo, tag::JA4_EXTENSIONS, key.get(), || {
            let mut h = Sha256::new();
            hash_hex_list(&mut h, sorted.iter().copied());
            let mut sigs = sig_algs
                .iter()
                .copied()
                .filter(|&v| !is_grease(v))
                .peekable();
            if sigs.peek().is_some() {
                h.update(b"_");
                hash_hex_list(&mut h, sigs);
            }
            truncated_hex(h)
        })
    };
    let mut sorted = [0u16; FP_KEY];
    let c = match sorted_extensions(extensions, &mut sorted) {
        Some(0) => None,
        Some(n) => Some(extension_digest(&sorted[..n], &mut memo)),
        None => with_sorted(extensions, &[0x0000, 0x0010], |sorted| {
            (!sorted.is_empty()).then(|| extension_digest(sorted, &mut memo))
        }),
    };
    if let Some(c) = c {
        out[24..].copy_from_slice(&c[..12]);
    }
    out
}

/// Feeds `v` in decimal to `h`.
fn md5_decimal(h: &mut Md5, v: u16) {
    h.update(crate::json::decimal(u64::from(v), &mut [0; 20]));
}

/// Feeds `values` to `h` in decimal, joined by `-`, GREASE dropped.
fn md5_list(h: &mut Md5, values: impl Iterator<Item = u16>) {
    for (i, v) in values.filter(|&v| !is_grease(v)).enumerate() {
        if i > 0 {
            h.update(b"-");
        }
        md5_decimal(h, v);
    }
}

/// JA3 (salesforce/ja3): the MD5 of `V,C,E,G,P`, where `V` is
/// ClientHello.legacy_version in decimal; `C`, `E` and `G` the ciphers, extensions
/// (wire order) and supported_groups (extension 10) in decimal, joined by `-`,
/// GREASE dropped; `P` the ec_point_formats (extension 11). An empty list leaves
/// its field empty.
pub fn ja3(
    legacy_version: u16,
    ciphers: &[u16],
    extensions: &[u16],
    groups: &[u16],
    point_formats: &[u8],
) -> [u8; 16] {
    ja3_memo(
        None,
        legacy_version,
        ciphers,
        extensions,
        groups,
        point_formats,
    )
}

/// [`ja3`], looked up in (and kept in) `memo`: keyed by the lists as sent (JA3
/// keeps the wire order, so a client that shuffles its extensions misses).
pub fn ja3_memo(
    mut memo: Option<&mut FpMemo>,
    legacy_version: u16,
    ciphers: &[u16],
    extensions: &[u16],
    groups: &[u16],
    point_formats: &[u8],
) -> [u8; 16] {
    let mut key = Key::new();
    if memo.is_some() {
        key.push(legacy_version);
        key.list(ciphers);
        key.list(extensions);
        key.list(groups);
        for &p in point_formats {
            key.push(u16::from(p));
        }
    }
    memoized(&mut memo, tag::JA3, key.get(), || {
        let mut h = Md5::new();
        md5_decimal(&mut h, legacy_version);
        h.update(b",");
        md5_list(&mut h, ciphers.iter().copied());
        h.update(b",");
        md5_list(&mut h, extensions.iter().copied());
        h.update(b",");
        md5_list(&mut h, groups.iter().copied());
        h.update(b",");
        md5_list(&mut h, point_formats.iter().map(|&p| u16::from(p)));
        h.finalize().into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ja4_str(out: [u8; JA4_LEN]) -> String {
        String::from_utf8(out.to_vec()).unwrap()
    }

    // JA4.md "Cipher hash" and "Extension hash" (commit d8f731ce).
    const SPEC_CIPHERS: [u16; 15] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    const SPEC_EXTS: [u16; 16] = [
        0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
        0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
    ];
    const SPEC_SIGS: [u16; 8] = [
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];

    #[test]
    fn test_ja4_spec_example() {
        let fp = ja4(
            0x0304,
            true,
            &SPEC_CIPHERS,
            &SPEC_EXTS,
            Some(b"h2"),
            &SPEC_SIGS,
        );
        assert_eq!(ja4_str(fp), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn test_ja4_spec_example_without_sig_algs() {
        // JA4.md: "...,4469,ff01 = 6d807ffa2a79" (no `_` when there are none).
        let fp = ja4(0x0304, true, &SPEC_CIPHERS, &SPEC_EXTS, Some(b"h2"), &[]);
        assert_eq!(ja4_str(fp), "t13d1516h2_8daaf6152771_6d807ffa2a79");
    }

    #[test]
    fn test_ja4_grease_dropped_everywhere() {
        let mut ciphers = vec![0x0a0a];
        ciphers.extend_from_slice(&SPEC_CIPHERS);
        let mut exts = vec![0xfafa];
        exts.extend_from_slice(&SPEC_EXTS);
        exts.push(0x1a1a);
        let mut sigs = vec![0x2a2a];
        sigs.extend_from_slice(&SPEC_SIGS);
        let fp = ja4(0x0304, true, &ciphers, &exts, Some(b"h2"), &sigs);
        assert_eq!(ja4_str(fp), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn test_ja4_empty_lists() {
        let fp = ja4(0x0303, false, &[], &[0x0000, 0x0010], None, &[0x0403]);
        assert_eq!(ja4_str(fp), "t12i000200_000000000000_000000000000");
        let fp = ja4(0x7f1c, false, &[0x0a0a], &[], Some(b""), &[]);
        assert_eq!(ja4_str(fp), "t00i000000_000000000000_000000000000");
    }

    #[test]
    fn test_ja4_alpn_rules() {
        // JA4.md "ALPN Extension Value".
        assert_eq!(&ja4_alpn(Some(b"http/1.1")), b"h1");
        assert_eq!(&ja4_alpn(Some(b"h")), b"hh");
        assert_eq!(&ja4_alpn(Some(b"H2")), b"H2");
        assert_eq!(&ja4_alpn(Some(&[0xab])), b"ab");
        assert_eq!(&ja4_alpn(Some(&[0xab, 0xcd])), b"ad");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab])), b"3b");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0x31, 0xab, 0xcd])), b"3d");
        assert_eq!(&ja4_alpn(Some(&[0x30, 0xab, 0xcd, 0x31])), b"01");
        assert_eq!(&ja4_alpn(Some(b"")), b"00");
        assert_eq!(&ja4_alpn(None), b"00");
    }

    #[test]
    fn test_ja4_versions_and_counts() {
        assert_eq!(&ja4_version(0x0300), b"s3");
        assert_eq!(&ja4_version(0x0002), b"s2");
        assert_eq!(&ja4_version(0xfefd), b"d2");
        assert_eq!(&ja4_version(0x7f10), b"00");
        assert_eq!(&two_digits(0), b"00");
        assert_eq!(&two_digits(7), b"07");
        assert_eq!(&two_digits(99), b"99");
        assert_eq!(&two_digits(4000), b"99");
    }

    #[test]
    fn test_ja4_long_lists_allocate_and_stay_exact() {
        // 300 ciphers (past the stack buffer) hash the same as the sorted list
        // computed independently.
        let ciphers: Vec<u16> = (0..300u16).rev().map(|i| i * 3 + 1).collect();
        let fp = ja4(0x0303, false, &ciphers, &[0x000d], None, &[]);
        let mut sorted = ciphers.clone();
        sorted.sort();
        let joined: Vec<String> = sorted.iter().map(|v| format!("{v:04x}")).collect();
        let digest = Sha256::digest(joined.join(",").as_bytes());
        let mut want = [0u8; 64];
        let want = hex(&digest, &mut want);
        assert_eq!(&ja4_str(fp)[..11], "t12i990100_");
        assert_eq!(&ja4_str(fp)[11..23], &want[..12]);
    }

    #[test]
    fn test_ja3_string_form() {
        // The JA3 string built by hand, hashed, equals the streaming hash.
        let want = Md5::digest(b"771,4865-4866-49195,0-23-65281-10-11,29-23-24,0");
        let got = ja3(
            0x0303,
            &[0x1a1a, 0x1301, 0x1302, 0xc02b],
            &[0x2a2a, 0, 23, 65281, 10, 11, 0xfafa],
            &[0x3a3a, 29, 23, 24],
            &[0],
        );
        assert_eq!(got, <[u8; 16]>::from(want));
        let want = Md5::digest(b"769,,,,");
        assert_eq!(ja3(0x0301, &[], &[], &[], &[]), <[u8; 16]>::from(want));
    }

    #[test]
    fn test_is_grease_exact_list() {
        let grease: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        let want: Vec<u16> = (0..16u16).map(|i| 0x0a0a | (i << 12) | (i << 4)).collect();
        assert_eq!(grease, want);
        assert!(!is_grease(0x1a2a));
        assert!(is_grease(0xfafa));
    }

    #[test]
    fn test_hex() {
        let mut out = [0u8; 8];
        assert_eq!(hex(&[0x00, 0xab, 0x7f], &mut out), "00ab7f");
        let mut small = [0u8; 3];
        assert_eq!(hex(&[0x12, 0x34], &mut small), "12");
        assert_eq!(hex(&[], &mut small), "");
    }

    /// Lists drawn from a small alphabet (so that keys repeat, as on a network) with
    /// GREASE values in it.
    fn list(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<u16>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![Just(0x0a0a_u16), Just(0), Just(0x10), 1u16..6, Just(0xfafa)],
            0..max,
        )
    }

    proptest::proptest! {
        /// The bit-set sort of the extension list gives what sorting gives (repeats,
        /// GREASE, SNI and ALPN, values above the bit set included), and declines
        /// only for a repeated type below the bit set or too many above it.
        #[test]
        fn prop_sorted_extensions_is_the_sort(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    0u16..80, proptest::strategy::Just(0x0a0a_u16),
                    proptest::strategy::Just(0xff01_u16), proptest::strategy::Just(0x4469_u16),
                    proptest::prelude::any::<u16>(),
                ],
                0..60,
            ),
        ) {
            let want = with_sorted(&values, &[0x0000, 0x0010], <[u16]>::to_vec);
            let mut out = [0u16; FP_KEY];
            match sorted_extensions(&values, &mut out) {
                Some(n) => proptest::prop_assert_eq!(&out[..n], &want[..]),
                None => {
                    let low_repeat = want.windows(2).any(|w| w[0] == w[1] && w[0] < EXT_BITS);
                    let high = want.iter().filter(|&&v| v >= EXT_BITS).count();
                    proptest::prop_assert!(low_repeat || high > EXT_HIGH);
                }
            }
        }

        /// Through one memo shared by every case (full of earlier cases' keys, some
        /// in the same slot), JA3 and JA4 equal the direct computation, keys longer
        /// than a slot included.
        #[test]
        fn prop_memo_changes_nothing(
            cases in proptest::collection::vec(
                (list(6), list(6), list(3), list(3), proptest::collection::vec(0u8..3, 0..3),
                 proptest::prelude::any::<bool>(), 0u16..2),
                1..40,
            ),
            long in list(300),
        ) {
            thread_local! {
                static MEMO: std::cell::RefCell<FpMemo> = std::cell::RefCell::new(FpMemo::default());
            }
            MEMO.with(|m| {
                let m = &mut *m.borrow_mut();
                let mut cases = cases;
                cases.push((long.clone(), long.clone(), long.clone(), long, vec![0], true, 1));
                for (c, e, g, sig, pf, sni, v) in &cases {
                    let version = 0x0303 + v;
                    for _ in 0..2 {
                        proptest::prop_assert_eq!(
                            ja4_memo(Some(m), version, *sni, c, e, Some(b"h2"), sig),
                            ja4(version, *sni, c, e, Some(b"h2"), sig)
                        );
                        proptest::prop_assert_eq!(
                            ja3_memo(Some(m), version, c, e, g, pf),
                            ja3(version, c, e, g, pf)
                        );
                    }
                }
                Ok(())
            })?;
        }
    }
}
