#!/usr/bin/env python3
"""Rewrite a classic pcap file with the other byte order (little-endian <-> big-endian).

Usage: pcap-byteswap.py IN.pcap OUT.pcap [--to big|little|swap]

The global header fields (magic, version, thiszone, sigfigs, snaplen, linktype) and
each record header (ts_sec, ts_frac, incl_len, orig_len) are rewritten in the target
byte order; packet bytes are copied unchanged. Microsecond (a1b2c3d4) and nanosecond
(a1b23c4d) pcap are both handled; the timestamp resolution is kept. pcapng is refused.
Default target: big-endian (the input must then be little-endian, unless --to swap).
Python 3 standard library only.
"""
import argparse
import struct
import sys

MAGICS = {0xA1B2C3D4: "usec", 0xA1B23C4D: "nsec"}


def detect(header: bytes):
    """Return (byte order char, magic value) of a pcap global header."""
    for order in ("<", ">"):
        (magic,) = struct.unpack(order + "I", header[:4])
        if magic in MAGICS:
            return order, magic
    if header[:4] == b"\x0a\x0d\x0d\x0a":
        raise ValueError("input is pcapng, not classic pcap")
    raise ValueError("not a pcap file (magic %s)" % header[:4].hex())


def convert(src, dst, to: str) -> int:
    header = src.read(24)
    if len(header) < 24:
        raise ValueError("truncated pcap global header")
    order, magic = detect(header)
    if to == "swap":
        out = ">" if order == "<" else "<"
    else:
        out = ">" if to == "big" else "<"
        if out == order:
            raise ValueError("input is already %s-endian" % to)
    ghdr = "IHHiIII"
    fields = struct.unpack(order + ghdr, header)
    dst.write(struct.pack(out + ghdr, *fields))
    n = 0
    while True:
        rec = src.read(16)
        if not rec:
            break
        if len(rec) < 16:
            raise ValueError("truncated record header after %d packets" % n)
        ts_sec, ts_frac, incl_len, orig_len = struct.unpack(order + "IIII", rec)
        data = src.read(incl_len)
        if len(data) < incl_len:
            raise ValueError("truncated packet %d (%d of %d bytes)" % (n + 1, len(data), incl_len))
        dst.write(struct.pack(out + "IIII", ts_sec, ts_frac, incl_len, orig_len))
        dst.write(data)
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--to", choices=("big", "little", "swap"), default="big")
    args = ap.parse_args()
    try:
        with open(args.input, "rb") as src, open(args.output, "wb") as dst:
            n = convert(src, dst, args.to)
    except (OSError, ValueError) as e:
        print("pcap-byteswap: %s" % e, file=sys.stderr)
        return 1
    print("pcap-byteswap: %s -> %s (%s-endian), %d packets" % (args.input, args.output, "big" if args.to == "big" else args.to, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
