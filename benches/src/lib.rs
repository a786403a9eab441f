//! Benchmarks of tapwatch: criterion micro-benchmarks in `benches/` (decode, flow
//! table, worker), and the end-to-end replay benchmark in `scripts/bench-replay`.
//! This library holds the frames they share.

use etherparse::PacketBuilder;

/// An Ethernet/IPv4/TCP frame with the timestamps option, as Linux sends data:
/// `payload` bytes from 198.18.x.y:port to 198.19.0.1:443.
pub fn data_frame(session: u32, payload: usize, syn: bool) -> Vec<u8> {
    let client = [198, 18, (session >> 8) as u8, session as u8];
    let port = 20_000 + (session % 40_000) as u16;
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(client, [198, 19, 0, 1], 64)
        .tcp(port, 443, 1000, 64_000)
        .options(&[
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::Noop,
            etherparse::TcpOptionElement::Timestamp(1, 2),
        ])
        .expect("options fit");
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x17; payload])
        .expect("write to a Vec");
    out
}
