//! After warm-up, following packets allocates nothing: neither the sans-IO path
//! (capture framing, decode, worker) nor the threaded pipeline (dispatch batches,
//! worker rings, record rings).
//!
//! A counting global allocator counts every allocation of the process; the tests
//! run in this one binary, one at a time (a mutex serialises them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use engine::capture::write::PcapWriter;
use engine::capture::CaptureReader;
use engine::pipeline::{self, PipelineConfig};
use engine::session::PointId;
use engine::time::Timestamp;
use engine::wire;
use engine::worker::{PacketMeta, Worker, WorkerConfig};
use etherparse::PacketBuilder;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::new(());

/// A capture of `sessions` complete sessions (handshake, data both ways, FINs),
/// interleaved, starting at `t0` seconds.
fn capture(sessions: u16, t0: u64) -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
    let mut ts = t0 * 1_000_000_000;
    let mut frame = Vec::new();
    let payload = [0x17u8; 600];
    for step in 0..9u32 {
        for s in 0..sessions {
            let (cport, sport) = (20_000 + s, 443);
            let client = [198, 18, (s >> 8) as u8, s as u8];
            let server = [198, 19, 0, 1];
            let (from_client, syn, ack, fin, len) = match step {
                0 => (true, true, false, false, 0),
                1 => (false, true, true, false, 0),
                2 => (true, false, true, false, 0),
                3 => (true, false, true, false, 200),
                4 => (false, false, true, false, 600),
                5 => (false, false, true, false, 600),
                6 => (true, false, true, true, 0),
                7 => (false, false, true, true, 0),
                _ => (true, false, true, false, 0),
            };
            let (src, dst, sp, dp) = if from_client {
                (client, server, cport, sport)
            } else {
                (server, client, sport, cport)
            };
            let seq = if from_client {
                1000 + step * 1000
            } else {
                50_000 + step * 1000
            };
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4(src, dst, 64)
                .tcp(sp, dp, seq, 64_000);
            let b = if syn { b.syn() } else { b };
            let b = if ack { b.ack(1) } else { b };
            let b = if fin { b.fin() } else { b };
            frame.clear();
            b.write(&mut frame, &payload[..len]).unwrap();
            ts += 1_000;
            w.write_frame(Timestamp(ts), &frame, frame.len() as u32)
                .unwrap();
        }
    }
    w.into_inner()
}

fn run_sans_io(worker: &mut Worker, data: &[u8], records: &mut Vec<engine::verdict::Record>) {
    for frame in CaptureReader::new(data).unwrap() {
        let frame = frame.unwrap();
        let pkt = wire::decode(frame.link, frame.data, frame.wire_len).unwrap();
        let m = PacketMeta::new(frame.ts, PointId(0), pkt).at(frame.offset as u64);
        worker.process(&m, m.payload(data), &mut |r| records.push(r));
    }
}

#[test]
fn sans_io_path_does_not_allocate_after_warm_up() {
    let _guard = SERIAL.lock().unwrap();
    let warm = capture(2_000, 1_000);
    let steady = capture(2_000, 2_000);
    let mut worker = Worker::new(WorkerConfig {
        max_sessions: 4_000,
        ..WorkerConfig::default()
    });
    let mut records = Vec::with_capacity(10_000);
    run_sans_io(&mut worker, &warm, &mut records);
    assert_eq!(worker.stats().sessions, 2_000);

    let before = ALLOCS.load(Ordering::SeqCst);
    run_sans_io(&mut worker, &steady, &mut records);
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    let packets = worker.stats().packets;
    assert_eq!(packets, 2 * 9 * 2_000);
    assert!(
        records.len() >= 2_000,
        "the warm-up sessions ended: {}",
        records.len()
    );
    assert_eq!(
        allocs,
        0,
        "{allocs} allocations for {} packets",
        packets / 2
    );
}

#[test]
fn pipeline_does_not_allocate_after_warm_up() {
    let _guard = SERIAL.lock().unwrap();
    let decode_all = |data: &[u8]| -> Vec<PacketMeta> {
        CaptureReader::new(data)
            .unwrap()
            .map(|f| {
                let f = f.unwrap();
                PacketMeta::new(
                    f.ts,
                    PointId(0),
                    wire::decode(f.link, f.data, f.wire_len).unwrap(),
                )
            })
            .collect()
    };
    let warm = decode_all(&capture(2_000, 1_000));
    let steady = decode_all(&capture(2_000, 2_000));
    let cfg = PipelineConfig {
        workers: 2,
        worker: WorkerConfig {
            max_sessions: 8_000,
            ..WorkerConfig::default()
        },
        ..PipelineConfig::default()
    };
    let (mut dispatchers, mut loops) = pipeline::build(&cfg);
    let mut dispatcher = dispatchers.pop().unwrap();
    let rings: Vec<_> = loops.iter_mut().map(|l| l.take_records()).collect();
    let written = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let exporter = scope.spawn(|| {
            pipeline::run_exporter::<()>(rings, &[], Default::default(), |_| {
                written.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
        });
        let workers: Vec<_> = loops
            .into_iter()
            .map(|l| scope.spawn(move || l.run(&[])))
            .collect();
        for m in &warm {
            dispatcher.push(*m);
        }
        // Let every thread settle (its first sleep, first batch, first record).
        std::thread::sleep(Duration::from_millis(300));
        let before = ALLOCS.load(Ordering::SeqCst);
        for m in &steady {
            dispatcher.push(*m);
        }
        std::thread::sleep(Duration::from_millis(300));
        let allocs = ALLOCS.load(Ordering::SeqCst) - before;
        dispatcher.finish();
        let packets: u64 = workers
            .into_iter()
            .map(|w| w.join().unwrap().stats.packets)
            .sum();
        let report = exporter.join().unwrap();
        assert_eq!(packets, (warm.len() + steady.len()) as u64);
        assert_eq!(report.written, 4_000);
        assert_eq!(
            allocs,
            0,
            "{allocs} allocations while {} packets flowed",
            steady.len()
        );
    });
}
