//! Capture-file framing: pcap (both byte orders, micro- and nanosecond timestamps,
//! the "modified" variant) and pcapng (several sections, each with its byte order,
//! several interfaces, each with its link type and timestamp resolution), read from
//! a byte slice (the CLI maps the file). Sans-IO: the reader only walks the slice.
//!
//! Headers, section and interface blocks are parsed by pcap-parser. Enhanced and
//! Simple Packet Blocks, one per packet, are read here: pcap-parser's
//! `EnhancedPacketBlock` collects the block's options into a `Vec` for every packet,
//! which would put an allocation on the per-packet path (the allocation test in
//! `tests/` would fail on a capture whose packets carry `epb_flags`).
//!
//! Errors say what is wrong and at which byte offset; after an error the reader
//! returns `None`, and everything read before it stays valid.

use std::fmt;

use pcap_parser::nom;
use pcap_parser::pcapng::parse_sectionheaderblock;
use pcap_parser::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header, PcapError,
};

use crate::time::Timestamp;
use crate::wire::LinkType;

/// Largest record we accept. libpcap's MAXIMUM_SNAPLEN; a bigger one is corrupt.
pub const MAX_RECORD: u32 = 262_144;

/// One captured frame, borrowing the capture's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    /// The captured bytes (possibly cut by the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
    /// Offset of `data` within the capture file.
    pub offset: usize,
}

/// The container format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// What went wrong reading a capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureError {
    /// The file is empty.
    Empty,
    /// Neither a pcap nor a pcapng file.
    NotACapture,
    /// The file ends in the middle of a record: a capture cut short (usually a
    /// capture still being written or copied while it was written).
    CutShort { offset: usize, needed: usize },
    /// A header or record that cannot be valid.
    Corrupt {
        offset: usize,
        what: &'static str,
        value: u64,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Empty => f.write_str("the file is empty"),
            CaptureError::NotACapture => f.write_str("not a pcap or pcapng file (unknown magic number)"),
            CaptureError::CutShort { offset, needed } => write!(
                f,
                "the file is cut short in the middle of a record at byte {offset} ({needed} more bytes expected)"
            ),
            CaptureError::Corrupt { offset, what, value } => {
                write!(f, "corrupt capture at byte {offset}: {what} ({value})")
            }
        }
    }
}

impl std::error::Error for CaptureError {}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds to add to every timestamp (if_tsoffset).
    offset_secs: i64,
}

#[derive(Debug)]
enum State {
    Pcap {
        big_endian: bool,
        modified: bool,
        nanos: bool,
        link: LinkType,
    },
    PcapNg {
        big_endian: bool,
    },
    Done,
}

/// Iterates the frames of a capture held in memory.
#[derive(Debug)]
pub struct CaptureReader<'a> {
    data: &'a [u8],
    pos: usize,
    state: State,
    /// pcapng interfaces of the current section (allocated per IDB, not per packet).
    interfaces: Vec<Interface>,
    format: Format,
    /// Timestamp of the last packet block (for Simple Packet Blocks, which have none).
    last_ts: Timestamp,
}

impl<'a> CaptureReader<'a> {
    /// Reads the file header and prepares to iterate.
    pub fn new(data: &'a [u8]) -> Result<Self, CaptureError> {
        if data.is_empty() {
            return Err(CaptureError::Empty);
        }
        let magic = data.get(..4).ok_or(CaptureError::NotACapture)?;
        if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
            let mut r = CaptureReader {
                data,
                pos: 0,
                state: State::PcapNg { big_endian: false },
                interfaces: Vec::new(),
                format: Format::PcapNg,
                last_ts: Timestamp::ZERO,
            };
            r.read_section_header()?;
            return Ok(r);
        }
        let (rest, hdr) = parse_pcap_header(data).map_err(|e| match e {
            nom_err if is_incomplete(&nom_err) => CaptureError::CutShort {
                offset: 0,
                needed: 24,
            },
            _ => CaptureError::NotACapture,
        })?;
        let pos = data.len() - rest.len();
        let link = LinkType::from_linktype(hdr.network.0 as u32);
        Ok(CaptureReader {
            data,
            pos,
            state: State::Pcap {
                big_endian: hdr.is_bigendian(),
                modified: hdr.is_modified_format(),
                nanos: hdr.is_nanosecond_precision(),
                link,
            },
            interfaces: Vec::new(),
            format: Format::Pcap,
            last_ts: Timestamp::ZERO,
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes consumed so far (for progress reporting).
    pub fn bytes_read(&self) -> usize {
        self.pos
    }

    /// The link type of the first interface (pcap: the file's link type).
    pub fn first_link_type(&self) -> Option<LinkType> {
        match &self.state {
            State::Pcap { link, .. } => Some(*link),
            _ => self.interfaces.first().map(|i| i.link),
        }
    }

    fn fail(&mut self, e: CaptureError) -> Option<Result<Frame<'a>, CaptureError>> {
        self.state = State::Done;
        Some(Err(e))
    }

    fn read_section_header(&mut self) -> Result<(), CaptureError> {
        let input = &self.data[self.pos..];
        match parse_sectionheaderblock(input) {
            Ok((rest, shb)) => {
                self.state = State::PcapNg {
                    big_endian: shb.big_endian(),
                };
                self.interfaces.clear();
                self.pos = self.data.len() - rest.len();
                Ok(())
            }
            Err(e) if is_incomplete(&e) => Err(CaptureError::CutShort {
                offset: self.pos,
                needed: 28,
            }),
            Err(_) => Err(CaptureError::Corrupt {
                offset: self.pos,
                what: "bad section header block",
                value: 0,
            }),
        }
    }

    fn next_pcap(
        &mut self,
        big_endian: bool,
        modified: bool,
        nanos: bool,
        link: LinkType,
    ) -> Option<Result<Frame<'a>, CaptureError>> {
        let input = &self.data[self.pos..];
        if input.is_empty() {
            self.state = State::Done;
            return None;
        }
        // The common record (not the "modified" format, whole): read in place. Through
        // pcap-parser's nom result it cost 80 instructions a frame (callgrind, 200k
        // synth replay); anything else goes that way below, errors included.
        if let (false, Some(hdr)) = (modified, input.first_chunk::<16>()) {
            let mut w = [0u32; 4];
            for (w, raw) in w.iter_mut().zip(hdr.chunks_exact(4)) {
                let raw = [raw[0], raw[1], raw[2], raw[3]];
                *w = u32::from_le_bytes(raw);
            }
            if big_endian {
                w = w.map(u32::swap_bytes);
            }
            let [ts_sec, ts_sub, caplen, origlen] = w;
            if caplen <= MAX_RECORD {
                if let Some(data) = input.get(16..16 + caplen as usize) {
                    let offset = self.pos + 16;
                    self.pos = offset + data.len();
                    let sub = if nanos {
                        u64::from(ts_sub)
                    } else {
                        u64::from(ts_sub) * 1000
                    };
                    return Some(Ok(Frame {
                        ts: Timestamp::from_secs_nanos(ts_sec.into(), sub),
                        link,
                        data,
                        wire_len: origlen,
                        offset,
                    }));
                }
            }
        }
        let hdr_len = if modified { 24 } else { 16 };
        if input.len() >= 16 {
            let raw = [input[8], input[9], input[10], input[11]];
            let caplen = if big_endian {
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw)
            };
            if caplen > MAX_RECORD {
                return self.fail(CaptureError::Corrupt {
                    offset: self.pos,
                    what: "record length above 262144",
                    value: caplen.into(),
                });
            }
        }
        let parsed = if modified {
            parse_pcap_frame_modified(input)
        } else if big_endian {
            parse_pcap_frame_be(input)
        } else {
            parse_pcap_frame(input)
        };
        match parsed {
            Ok((rest, block)) => {
                let offset = self.pos + hdr_len;
                self.pos = self.data.len() - rest.len();
                let sub = if nanos {
                    u64::from(block.ts_usec)
                } else {
                    u64::from(block.ts_usec) * 1000
                };
                Some(Ok(Frame {
                    ts: Timestamp::from_secs_nanos(block.ts_sec.into(), sub),
                    link,
                    data: block.data,
                    wire_len: block.origlen,
                    offset,
                }))
            }
            Err(e) => {
                let needed = match &e {
                    nom::Err::Incomplete(nom::Needed::Size(n)) => n.get(),
                    _ => 0,
                };
                self.fail(CaptureError::CutShort {
                    offset: self.pos,
                    needed,
                })
            }
        }
    }

    fn next_pcapng(&mut self, mut big_endian: bool) -> Option<Result<Frame<'a>, CaptureError>> {
        loop {
            let input = &self.data[self.pos..];
            if input.is_empty() {
                self.state = State::Done;
                return None;
            }
            if input.len() < 12 {
                return self.fail(CaptureError::CutShort {
                    offset: self.pos,
                    needed: 12 - input.len(),
                });
            }
            let u32_at = |o: usize| {
                let b = [input[o], input[o + 1], input[o + 2], input[o + 3]];
                if big_endian {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            let block_type = u32_at(0);
            if block_type == 0x0a0d_0d0a {
                if let Err(e) = self.read_section_header() {
                    return self.fail(e);
                }
                // The new section may have another byte order.
                match self.state {
                    State::PcapNg { big_endian: be } => big_endian = be,
                    _ => return None,
                }
                continue;
            }
            let block_len = u32_at(4) as usize;
            if block_len < 12 || block_len % 4 != 0 {
                return self.fail(CaptureError::Corrupt {
                    offset: self.pos,
                    what: "bad block length",
                    value: block_len as u64,
                });
            }
            if block_len > input.len() {
                return self.fail(CaptureError::CutShort {
                    offset: self.pos,
                    needed: block_len - input.len(),
                });
            }
            let block = &input[..block_len];
            let block_pos = self.pos;
            self.pos += block_len;
            match block_type {
                // Enhanced Packet Block: type, len, if_id, ts_hi, ts_lo, caplen, origlen, data.
                0x0000_0006 => {
                    if block_len < 32 {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what: "enhanced packet block too short",
                            value: block_len as u64,
                        });
                    }
                    let if_id = u32_at(8) as usize;
                    let ts = (u64::from(u32_at(12)) << 32) | u64::from(u32_at(16));
                    let caplen = u32_at(20);
                    let origlen = u32_at(24);
                    if caplen as usize > block_len - 32 {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what: "packet longer than its block",
                            value: caplen.into(),
                        });
                    }
                    let Some(iface) = self.interfaces.get(if_id).copied() else {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what: "packet for an undeclared interface",
                            value: if_id as u64,
                        });
                    };
                    self.last_ts = iface.timestamp(ts);
                    return Some(Ok(Frame {
                        ts: self.last_ts,
                        link: iface.link,
                        data: &block[28..28 + caplen as usize],
                        wire_len: origlen,
                        offset: block_pos + 28,
                    }));
                }
                // Simple Packet Block: type, len, origlen, data; interface 0, no timestamp.
                0x0000_0003 => {
                    if block_len < 16 {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what: "simple packet block too short",
                            value: block_len as u64,
                        });
                    }
                    let Some(iface) = self.interfaces.first().copied() else {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what: "simple packet block before any interface",
                            value: 0,
                        });
                    };
                    let origlen = u32_at(8);
                    let caplen = (origlen as usize).min(block_len - 16);
                    // A Simple Packet Block has no timestamp: it takes the previous
                    // packet's, so that it keeps its place when points are merged.
                    return Some(Ok(Frame {
                        ts: self.last_ts,
                        link: iface.link,
                        data: &block[12..12 + caplen],
                        wire_len: origlen,
                        offset: block_pos + 12,
                    }));
                }
                // Interface Description Block: link type, reserved, snap length, then
                // options. Read here rather than with pcap-parser 0.17, which rejects
                // every power-of-two if_tsresol (it tests the value with the 0x80
                // flag still set) and reads if_tsoffset little-endian in big-endian
                // sections.
                0x0000_0001 => match parse_idb(block, big_endian) {
                    Ok(iface) => self.interfaces.push(iface),
                    Err((what, value)) => {
                        return self.fail(CaptureError::Corrupt {
                            offset: block_pos,
                            what,
                            value,
                        })
                    }
                },
                // Statistics, name resolution, decryption secrets, custom, unknown: not
                // packets; skipped by length.
                _ => {}
            }
        }
    }
}

/// Reads an Interface Description Block (`block` is the whole block).
fn parse_idb(block: &[u8], big_endian: bool) -> Result<Interface, (&'static str, u64)> {
    let u16_at = |o: usize| {
        let b = [block[o], block[o + 1]];
        if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    };
    if block.len() < 20 {
        return Err(("interface description block too short", block.len() as u64));
    }
    let link = LinkType::from_linktype(u32::from(u16_at(8)));
    let (mut tsresol, mut tsoffset) = (6u8, 0i64);
    // Options from byte 16 to the trailing length: code, length, value padded to 4.
    let end = block.len() - 4;
    let mut at = 16;
    while at + 4 <= end {
        let (code, len) = (u16_at(at), usize::from(u16_at(at + 2)));
        let Some(value) = block
            .get(at + 4..at + 4 + len)
            .filter(|_| at + 4 + len <= end)
        else {
            return Err(("interface option runs past its block", at as u64));
        };
        match (code, len) {
            (0, _) => break,
            (9, 1) => tsresol = value[0],
            (14, 8) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(value);
                tsoffset = if big_endian {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                };
            }
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    // if_tsresol: 10^-n seconds, or 2^-n with the high bit set (pcapng spec, 4.2).
    let exp = u32::from(tsresol & 0x7f);
    let units_per_sec = if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        1u64.checked_shl(exp)
    };
    let Some(units_per_sec) = units_per_sec.filter(|u| *u > 0) else {
        return Err(("bad if_tsresol", u64::from(tsresol)));
    };
    Ok(Interface {
        link,
        units_per_sec,
        offset_secs: tsoffset,
    })
}

impl Interface {
    fn timestamp(&self, units: u64) -> Timestamp {
        let secs = units / self.units_per_sec;
        let frac = units % self.units_per_sec;
        // frac < units_per_sec <= 10^19: scale to nanoseconds without overflow.
        let nanos = (u128::from(frac) * 1_000_000_000 / u128::from(self.units_per_sec)) as u64;
        let secs = if self.offset_secs >= 0 {
            secs.saturating_add(self.offset_secs as u64)
        } else {
            secs.saturating_sub(self.offset_secs.unsigned_abs())
        };
        Timestamp::from_secs_nanos(secs, nanos)
    }
}

impl<'a> Iterator for CaptureReader<'a> {
    type Item = Result<Frame<'a>, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            State::Pcap {
                big_endian,
                modified,
                nanos,
                link,
            } => self.next_pcap(big_endian, modified, nanos, link),
            State::PcapNg { big_endian } => self.next_pcapng(big_endian),
            State::Done => None,
        }
    }
}

fn is_incomplete<I>(e: &nom::Err<PcapError<I>>) -> bool {
    matches!(e, nom::Err::Incomplete(_))
}

/// Writes pcap files: the generator and the tests build captures with it.
pub mod write {
    use std::io::{self, Write};

    use crate::time::Timestamp;

    /// A little-endian, nanosecond pcap writer.
    #[derive(Debug)]
    pub struct PcapWriter<W: Write> {
        out: W,
    }

    impl<W: Write> PcapWriter<W> {
        /// Writes the file header for `linktype` (1 = Ethernet).
        pub fn new(mut out: W, linktype: u32) -> io::Result<Self> {
            out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
            out.write_all(&2u16.to_le_bytes())?;
            out.write_all(&4u16.to_le_bytes())?;
            out.write_all(&0i32.to_le_bytes())?;
            out.write_all(&0u32.to_le_bytes())?;
            out.write_all(&super::MAX_RECORD.to_le_bytes())?;
            out.write_all(&linktype.to_le_bytes())?;
            Ok(PcapWriter { out })
        }

        /// Writes one record; `wire_len` may exceed `data.len()` (a cut frame).
        pub fn write_frame(&mut self, ts: Timestamp, data: &[u8], wire_len: u32) -> io::Result<()> {
            let secs = (ts.0 / 1_000_000_000) as u32;
            let nanos = (ts.0 % 1_000_000_000) as u32;
            let mut hdr = [0u8; 16];
            hdr[0..4].copy_from_slice(&secs.to_le_bytes());
            hdr[4..8].copy_from_slice(&nanos.to_le_bytes());
            hdr[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
            hdr[12..16].copy_from_slice(&wire_len.to_le_bytes());
            self.out.write_all(&hdr)?;
            self.out.write_all(data)
        }

        pub fn into_inner(self) -> W {
            self.out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write::PcapWriter;
    use super::*;

    fn pcap_with(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        for (ts, f) in frames {
            w.write_frame(Timestamp(*ts), f, f.len() as u32).unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn test_pcap_roundtrip_nanos() {
        let file = pcap_with(&[
            (1_500_000_000_123_456_789, b"abcd"),
            (1_500_000_001_000_000_001, b"ef"),
        ]);
        let r = CaptureReader::new(&file).unwrap();
        assert_eq!(r.format(), Format::Pcap);
        let frames: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].ts, Timestamp(1_500_000_000_123_456_789));
        assert_eq!(frames[0].data, b"abcd");
        assert_eq!(frames[1].link, LinkType::Ethernet);
        assert_eq!(&file[frames[1].offset..frames[1].offset + 2], b"ef");
    }

    #[test]
    fn test_pcap_big_endian_micros() {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        f.extend_from_slice(&2u16.to_be_bytes());
        f.extend_from_slice(&4u16.to_be_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&113u32.to_be_bytes());
        f.extend_from_slice(&10u32.to_be_bytes());
        f.extend_from_slice(&5u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(&60u32.to_be_bytes());
        f.extend_from_slice(b"xyz");
        let frames: Vec<_> = CaptureReader::new(&f)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames[0].ts, Timestamp(10_000_005_000));
        assert_eq!(frames[0].link, LinkType::LinuxSll);
        assert_eq!(frames[0].wire_len, 60);
    }

    #[test]
    fn test_pcap_cut_short_and_corrupt() {
        let file = pcap_with(&[(1, b"abcd"), (2, b"efgh")]);
        let cut = &file[..file.len() - 2];
        let res: Vec<_> = CaptureReader::new(cut).unwrap().collect();
        assert_eq!(res.len(), 2);
        assert!(res[0].is_ok());
        assert!(matches!(
            res[1],
            Err(CaptureError::CutShort { offset: 44, .. })
        ));

        let mut bad = file.clone();
        bad[24 + 8..24 + 12].copy_from_slice(&4_325_376u32.to_le_bytes());
        let res: Vec<_> = CaptureReader::new(&bad).unwrap().collect();
        assert_eq!(res.len(), 1);
        assert!(matches!(
            res[0],
            Err(CaptureError::Corrupt {
                offset: 24,
                value: 4_325_376,
                ..
            })
        ));
        assert!(matches!(
            CaptureReader::new(b"hello world, not a capture"),
            Err(CaptureError::NotACapture)
        ));
        assert!(matches!(
            CaptureReader::new(b"no"),
            Err(CaptureError::NotACapture)
        ));
    }

    fn ng_block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let enc = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut b = Vec::new();
        b.extend_from_slice(&enc(ty));
        b.extend_from_slice(&enc(len));
        b.extend_from_slice(body);
        b.extend_from_slice(&enc(len));
        b
    }

    fn ng_section(big: bool, tsresol: Option<u8>, packets: &[(u32, u64, &[u8])]) -> Vec<u8> {
        let e32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let e16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&e32(0x1a2b_3c4d));
        shb.extend_from_slice(&e16(1));
        shb.extend_from_slice(&e16(0));
        shb.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut out = ng_block(big, 0x0a0d_0d0a, &shb);
        for link in [1u16, 101u16] {
            let mut idb = Vec::new();
            idb.extend_from_slice(&e16(link));
            idb.extend_from_slice(&e16(0));
            idb.extend_from_slice(&e32(0));
            if let Some(r) = tsresol {
                idb.extend_from_slice(&e16(9));
                idb.extend_from_slice(&e16(1));
                idb.extend_from_slice(&[r, 0, 0, 0]);
                idb.extend_from_slice(&[0, 0, 0, 0]);
            }
            out.extend(ng_block(big, 1, &idb));
        }
        for (if_id, ts, data) in packets {
            let mut epb = Vec::new();
            epb.extend_from_slice(&e32(*if_id));
            epb.extend_from_slice(&e32((ts >> 32) as u32));
            epb.extend_from_slice(&e32(*ts as u32));
            epb.extend_from_slice(&e32(data.len() as u32));
            epb.extend_from_slice(&e32(data.len() as u32 + 10));
            epb.extend_from_slice(data);
            while epb.len() % 4 != 0 {
                epb.push(0);
            }
            out.extend(ng_block(big, 6, &epb));
        }
        // An interface statistics block to skip.
        out.extend(ng_block(big, 5, &[0; 12]));
        out
    }

    #[test]
    fn test_pcapng_sections_interfaces_byte_orders() {
        let mut file = ng_section(
            false,
            None,
            &[(0, 1_000_001, b"abc"), (1, 2_000_000, b"de")],
        );
        file.extend(ng_section(true, Some(9), &[(1, 3_000_000_007, b"fghij")]));
        let r = CaptureReader::new(&file).unwrap();
        assert_eq!(r.format(), Format::PcapNg);
        let frames: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].ts, Timestamp(1_000_001_000));
        assert_eq!(frames[0].link, LinkType::Ethernet);
        assert_eq!(frames[1].link, LinkType::Raw);
        assert_eq!(frames[1].data, b"de");
        assert_eq!(frames[1].wire_len, 12);
        assert_eq!(frames[2].ts, Timestamp(3_000_000_007));
        assert_eq!(frames[2].data, b"fghij");
    }

    /// An IDB with if_tsresol and if_tsoffset options, in either byte order.
    fn idb(big: bool, tsresol: u8, tsoffset: i64) -> Vec<u8> {
        let e16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut body = Vec::new();
        body.extend_from_slice(&e16(1));
        body.extend_from_slice(&e16(0));
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(&e16(9));
        body.extend_from_slice(&e16(1));
        body.extend_from_slice(&[tsresol, 0, 0, 0]);
        body.extend_from_slice(&e16(14));
        body.extend_from_slice(&e16(8));
        body.extend_from_slice(&if big {
            tsoffset.to_be_bytes()
        } else {
            tsoffset.to_le_bytes()
        });
        body.extend_from_slice(&[0; 4]);
        ng_block(big, 1, &body)
    }

    #[test]
    fn test_pcapng_binary_tsresol_and_tsoffset_both_orders() {
        for big in [false, true] {
            let mut f = ng_section(big, None, &[]);
            // Drop the section's own IDBs and stats block: keep only the SHB (28 bytes).
            f.truncate(28);
            f.extend(idb(big, 0x80 | 20, 1_700_000_000));
            let e32 = |v: u32| {
                if big {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }
            };
            let mut epb = Vec::new();
            epb.extend_from_slice(&e32(0));
            epb.extend_from_slice(&e32(0));
            epb.extend_from_slice(&e32(1 << 19)); // half a second in 2^-20 units
            epb.extend_from_slice(&e32(4));
            epb.extend_from_slice(&e32(4));
            epb.extend_from_slice(b"abcd");
            f.extend(ng_block(big, 6, &epb));
            let frames: Vec<_> = CaptureReader::new(&f)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                frames[0].ts,
                Timestamp(1_700_000_000_500_000_000),
                "big endian: {big}"
            );
        }
    }

    #[test]
    fn test_pcapng_simple_packet_blocks() {
        let mut f = ng_section(false, None, &[(0, 5_000_000, b"abc")]);
        let mut spb = Vec::new();
        spb.extend_from_slice(&3u32.to_le_bytes());
        spb.extend_from_slice(b"xyz\0");
        f.extend(ng_block(false, 3, &spb));
        let frames: Vec<_> = CaptureReader::new(&f)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames[1].data, b"xyz");
        assert_eq!(
            frames[1].ts, frames[0].ts,
            "an SPB takes the previous timestamp"
        );
        // A 12-byte SPB: no room for its original length.
        let mut short = ng_section(false, None, &[]);
        short.extend(ng_block(false, 3, &[]));
        let res: Vec<_> = CaptureReader::new(&short).unwrap().collect();
        assert!(matches!(
            res.last(),
            Some(Err(CaptureError::Corrupt {
                what: "simple packet block too short",
                ..
            }))
        ));
    }

    #[test]
    fn test_pcapng_many_sections_do_not_recurse() {
        let one = ng_section(false, None, &[]);
        let mut f = Vec::with_capacity(one.len() * 100_000);
        for _ in 0..100_000 {
            f.extend_from_slice(&one);
        }
        f.extend(ng_section(true, None, &[(0, 7, b"last")]));
        let frames: Vec<_> = CaptureReader::new(&f)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, b"last");
    }

    #[test]
    fn test_pcapng_bad_blocks() {
        let file = ng_section(false, None, &[(0, 1, b"abc")]);
        // Packet for interface 7.
        let bad_if = ng_section(false, None, &[(7, 1, b"abc")]);
        let res: Vec<_> = CaptureReader::new(&bad_if).unwrap().collect();
        assert!(matches!(
            res.last(),
            Some(Err(CaptureError::Corrupt {
                what: "packet for an undeclared interface",
                ..
            }))
        ));
        // Block length not a multiple of 4.
        let shb_len = 28;
        let idbs = 2 * 20;
        let mut odd = file.clone();
        odd[shb_len + idbs + 4] = 33;
        let res: Vec<_> = CaptureReader::new(&odd).unwrap().collect();
        assert!(matches!(
            res.last(),
            Some(Err(CaptureError::Corrupt {
                what: "bad block length",
                ..
            }))
        ));
        // Every prefix: never a panic, the frames before the cut are intact.
        for n in 0..file.len() {
            if let Ok(r) = CaptureReader::new(&file[..n]) {
                for f in r.flatten() {
                    assert_eq!(f.data, b"abc");
                }
            }
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes after a valid pcap or pcapng header: frames or one error, never a
        /// panic, and every frame lies inside the input.
        #[test]
        fn reader_never_panics(ng in any::<bool>(), big in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut data = if ng {
                let mut shb = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
                shb.extend_from_slice(&[0xff; 8]);
                shb.extend_from_slice(&[28, 0, 0, 0]);
                if big {
                    shb[4..8].copy_from_slice(&28u32.to_be_bytes());
                    shb[8..12].copy_from_slice(&0x1a2b_3c4du32.to_be_bytes());
                    shb[24..28].copy_from_slice(&28u32.to_be_bytes());
                }
                shb
            } else {
                let mut w = write::PcapWriter::new(Vec::new(), 1).unwrap().into_inner();
                if big {
                    w[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
                }
                w
            };
            data.extend_from_slice(&body);
            if let Ok(r) = CaptureReader::new(&data) {
                let mut errors = 0;
                for f in r {
                    match f {
                        Ok(f) => prop_assert!(f.offset + f.data.len() <= data.len()),
                        Err(_) => errors += 1,
                    }
                }
                prop_assert!(errors <= 1);
            }
        }
    }
}
