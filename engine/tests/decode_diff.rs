//! The hand-written fast decoder and the etherparse decoder agree: for every frame of
//! every capture shipped in tests/, whenever the fast path decodes a frame, the
//! etherparse path gives the very same packet. And the fast path does take the common
//! frames (otherwise it would be a fast path in name only).

use std::path::Path;

use engine::capture::CaptureReader;
use engine::wire::{decode_fast, decode_slow};

#[test]
fn fast_and_etherparse_decoders_agree_on_every_shipped_frame() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    let (mut files, mut frames, mut fast, mut tcp) = (0, 0u64, 0u64, 0u64);
    for dir in [
        "captures",
        "corpus/zeek",
        "corpus/suricata-verify",
        "corpus/arkime",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let path = entry.path();
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                continue;
            }
            files += 1;
            let data = std::fs::read(&path).unwrap();
            let Ok(reader) = CaptureReader::new(&data) else {
                continue;
            };
            for (i, frame) in reader.flatten().enumerate() {
                frames += 1;
                let slow = decode_slow(frame.link, frame.data, frame.wire_len);
                tcp += u64::from(slow.is_ok());
                if let Some(f) = decode_fast(frame.link, frame.data, frame.wire_len) {
                    fast += 1;
                    if f.options.truncated {
                        // Only the fast path follows a header cut inside its options.
                        assert_eq!(
                            slow,
                            Err(engine::wire::Skip::TruncatedTcp),
                            "{} frame {}",
                            path.display(),
                            i + 1
                        );
                    } else {
                        assert_eq!(slow, Ok(f), "{} frame {}", path.display(), i + 1);
                    }
                }
            }
        }
    }
    assert!(files > 100, "{files} captures");
    assert!(
        fast * 100 >= tcp * 95,
        "fast path took {fast} of {tcp} TCP frames ({frames} frames)"
    );
    eprintln!("{files} captures, {frames} frames, {tcp} TCP, {fast} by the fast path");
}
