//! One AF_XDP socket per receive queue, with xdpilone: its own UMEM (anonymous,
//! page-aligned memory registered with the kernel), a fill ring that holds every
//! frame the socket is not reading, and an RX ring. The capture loop reads a burst
//! of descriptors, decodes each frame, copies its TCP payload into the worker's
//! batch (`Dispatcher::push_copy`) and gives the frames straight back to the fill
//! ring: frames are never lent to workers, so the kernel can never run out of them
//! because a worker is slow (a slow worker costs counted ring-full drops instead).

use std::ffi::CString;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use engine::pipeline::Dispatcher;
use engine::session::PointId;
use engine::stats::ReaderStats;
use engine::time::Timestamp;
use engine::wire::{self, LinkType};
use engine::worker::PacketMeta;
use xdpilone::xdp::XdpStatisticsV2;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

/// Bytes per UMEM frame: a page, the size every driver accepts in aligned mode.
pub const FRAME_SIZE: u32 = 4096;
/// Descriptors read per burst.
const BURST: u32 = 64;

/// `--bind-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BindMode {
    /// Zero-copy where the driver has it, copy mode otherwise.
    Auto,
    /// Copy mode: the kernel copies each frame into the UMEM (works everywhere).
    Copy,
    /// Zero-copy: the NIC writes into the UMEM; fail where the driver cannot.
    Zero,
}

/// How a socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Copy,
    ZeroCopy,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Copy => "copy",
            Bound::ZeroCopy => "zero-copy",
        }
    }
}

/// Counters of one socket that other threads read while it runs (SIGUSR1): the
/// capture thread stores them once per burst.
#[derive(Debug, Default)]
pub struct Shared {
    pub frames: AtomicU64,
    pub bytes: AtomicU64,
    pub tcp: AtomicU64,
    pub skipped: AtomicU64,
    pub ring_full_drops: AtomicU64,
}

/// One bound socket and its memory.
pub struct QueueSocket {
    pub iface: String,
    pub queue: u32,
    pub bound: Bound,
    rx: RingRx,
    fq: DeviceQueue,
    _user: User,
    // Drop order: the rings and the socket above, then the UMEM, then its memory.
    _umem: Umem,
    area: memmap2::MmapMut,
    frames: u32,
}

// SAFETY: a QueueSocket is moved to its capture thread once and used by that one
// thread only (never shared: it is not Sync). xdpilone's types are not Send only
// because they hold raw pointers: into the UMEM area, which this struct owns and
// which moves with it (the mapping's address does not change), and into the ring
// mappings of the socket, which it also owns. Nothing in them is tied to the
// thread that created them.
unsafe impl Send for QueueSocket {}

impl std::fmt::Debug for QueueSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSocket")
            .field("iface", &self.iface)
            .field("queue", &self.queue)
            .field("bound", &self.bound)
            .finish()
    }
}

/// What a socket's capture loop counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopStats {
    pub reader: ReaderStats,
    /// Times the loop slept in poll() with nothing to read.
    pub polls: u64,
    /// Times the fill ring needed a wake-up call.
    pub wakeups: u64,
    /// Frames without the XDP program's timestamp (the driver had no room for
    /// metadata): stamped with the time the burst was read.
    pub unstamped: u64,
    /// RX descriptors pointing outside the UMEM (never seen; a kernel or driver
    /// bug): skipped, counted here.
    pub bad_descriptors: u64,
}

impl QueueSocket {
    /// Creates and binds the socket of `iface`'s queue `queue`, with a UMEM of
    /// `frames` frames (a power of two), and puts every frame in the fill ring.
    pub fn open(iface: &str, queue: u32, frames: u32, mode: BindMode) -> Result<Self> {
        if !frames.is_power_of_two() || frames < 64 {
            bail!("--umem-frames must be a power of two of at least 64, not {frames}");
        }
        let len = frames as usize * FRAME_SIZE as usize;
        let mut area = memmap2::MmapOptions::new()
            .len(len)
            .populate()
            .map_anon()
            .with_context(|| {
                format!("cannot map {len} bytes for the UMEM of {iface} queue {queue}")
            })?;
        let ptr = NonNull::new(std::ptr::slice_from_raw_parts_mut(area.as_mut_ptr(), len))
            .context("the UMEM mapping is null")?;
        let config = UmemConfig {
            fill_size: frames,
            complete_size: frames,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is an anonymous mapping (page-aligned, as mmap returns),
        // valid for `len` bytes, and it outlives the UMEM: both live in the returned
        // struct, where `umem` is declared (so dropped) before `area`.
        let umem = unsafe { Umem::new(config, ptr) }.map_err(|e| {
            let hint = if e.get_raw() == libc::EPERM || e.get_raw() == libc::ENOMEM {
                " (registering the UMEM locks its memory: it needs CAP_IPC_LOCK or a \
                 higher RLIMIT_MEMLOCK; `tapwatch check` tells)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot register the UMEM of {iface} queue {queue}: {e}{hint}")
        })?;
        let mut info = IfInfo::invalid();
        let name = CString::new(iface).context("interface name with a NUL byte")?;
        info.from_name(&name)
            .map_err(|e| anyhow::anyhow!("no such interface {iface}: {e}"))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem)
            .map_err(|e| anyhow::anyhow!("cannot create the AF_XDP socket for {iface}: {e}"))?;
        let fq = umem.fq_cq(&sock).map_err(|e| {
            anyhow::anyhow!("cannot set up the fill ring of {iface} queue {queue}: {e}")
        })?;
        // Auto: neither flag, and the kernel binds zero-copy where the driver can
        // and falls back to copy mode where it cannot; XDP_OPTIONS tells which.
        let flags = match mode {
            BindMode::Auto => 0,
            BindMode::Copy => SocketConfig::XDP_BIND_COPY,
            BindMode::Zero => SocketConfig::XDP_BIND_ZEROCOPY,
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(frames),
                    tx_size: None,
                    bind_flags: flags | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(|e| {
                anyhow::anyhow!("cannot set up the RX ring of {iface} queue {queue}: {e}")
            })?;
        let rx = user
            .map_rx()
            .map_err(|e| anyhow::anyhow!("cannot map the RX ring of {iface} queue {queue}: {e}"))?;
        umem.bind(&user).map_err(|e| {
            let hint = match e.get_raw() {
                libc::EOPNOTSUPP if mode == BindMode::Zero => {
                    " (the driver has no zero-copy AF_XDP here: use --bind-mode auto or copy)"
                }
                libc::EBUSY => " (another AF_XDP socket is bound to this queue)",
                libc::EINVAL => {
                    " (does the interface have this queue? `tapwatch check` lists them)"
                }
                _ => "",
            };
            anyhow::anyhow!("cannot bind an AF_XDP socket to {iface} queue {queue}: {e}{hint}")
        })?;
        let bound = if zero_copy(rx.as_raw_fd()) {
            Bound::ZeroCopy
        } else {
            Bound::Copy
        };
        let mut s = QueueSocket {
            iface: iface.to_string(),
            queue,
            bound,
            rx,
            fq,
            _user: user,
            _umem: umem,
            area,
            frames,
        };
        s.fill_all();
        Ok(s)
    }

    /// Gives every frame to the fill ring.
    fn fill_all(&mut self) {
        let mut f = self.fq.fill(self.frames);
        let n = f.insert((0..u64::from(self.frames)).map(|i| i * u64::from(FRAME_SIZE)));
        f.commit();
        debug_assert_eq!(n, self.frames);
    }

    /// The socket's file descriptor (for the XSKMAP).
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.rx.as_raw_fd()
    }

    /// The kernel's counters of this socket (XDP_STATISTICS).
    pub fn statistics(&self) -> Result<XdpStatisticsV2> {
        self.fq.statistics_v2().map_err(|e| {
            anyhow::anyhow!("XDP_STATISTICS of {} queue {}: {e}", self.iface, self.queue)
        })
    }
}

/// Whether the socket `fd` is bound in zero-copy mode (getsockopt XDP_OPTIONS).
fn zero_copy(fd: std::os::fd::RawFd) -> bool {
    const SOL_XDP: libc::c_int = 283;
    const XDP_OPTIONS: libc::c_int = 8;
    const XDP_OPTIONS_ZEROCOPY: u32 = 1;
    let mut flags: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (the size of `flags`) to the
    // pointer, which is valid and aligned for u32; `fd` is an open AF_XDP socket.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut flags as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && flags & XDP_OPTIONS_ZEROCOPY != 0
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call).
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t);
    }
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

/// Capture timestamps: the XDP program stamps frames with CLOCK_MONOTONIC (the
/// only clock it has); verdicts carry wall-clock time. One offset, taken at start
/// and shared by every capture thread, maps one to the other, so all threads'
/// times compare (a wall-clock step during the capture does not reorder them).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Realtime minus monotonic, nanoseconds.
    offset: i128,
}

impl Clock {
    pub fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        Clock {
            offset: wall - i128::from(monotonic_ns()),
        }
    }

    /// The capture time of monotonic instant `mono`.
    pub fn at(self, mono: u64) -> Timestamp {
        Timestamp((i128::from(mono) + self.offset).clamp(0, i128::from(u64::MAX)) as u64)
    }

    pub fn now(self) -> Timestamp {
        self.at(monotonic_ns())
    }
}

/// The XDP program's timestamp of the frame at `start` in the UMEM (struct tw_meta
/// in the 16 bytes before it), if it is there.
fn stamped(area: &[u8], start: usize) -> Option<u64> {
    let meta = area.get(start.checked_sub(META_LEN)?..start)?;
    let magic = u32::from_ne_bytes(meta[8..12].try_into().ok()?);
    (magic == META_MAGIC).then(|| u64::from_ne_bytes(meta[..8].try_into().unwrap_or_default()))
}

/// struct tw_meta (ebpf/xdp_tapwatch.h).
const META_LEN: usize = 16;
const META_MAGIC: u32 = 0x7461_7077;

/// How far behind its clock a reader with nothing to read says it is: a frame the
/// program stamped just before the ring was found empty can still be on its way
/// into the ring (the kernel publishes a NAPI poll's frames at its end).
const IDLE_SLACK_NS: u64 = 2_000_000;

impl QueueSocket {
    /// Reads this socket until `stop` is set: every frame is decoded, its TCP
    /// payload copied into `dispatcher`'s batch for the owning worker, and the frame
    /// given back to the kernel in the same burst. All packets of one burst carry
    /// the time the burst was read. With nothing to read, half-full batches are sent
    /// on, the workers are told the time, and the thread sleeps in poll() (or, with
    /// `busy_poll`, polls the driver without sleeping).
    pub fn run(
        &mut self,
        clock: Clock,
        point: PointId,
        dispatcher: &mut Dispatcher,
        stop: &AtomicBool,
        shared: &Shared,
        busy_poll: bool,
    ) -> LoopStats {
        let mut st = LoopStats::default();
        let mut addrs = [0u64; BURST as usize];
        let fd = self.fd();
        let mut last = Timestamp::ZERO;
        let Self { rx, fq, area, .. } = self;
        while !stop.load(Ordering::Relaxed) {
            let mut burst = rx.receive(BURST);
            let n = burst.capacity();
            if n == 0 {
                drop(burst);
                dispatcher.flush();
                let now = monotonic_ns().saturating_sub(IDLE_SLACK_NS);
                dispatcher.idle(clock.at(now).max(last));
                if fq.needs_wakeup() {
                    fq.wake();
                    st.wakeups += 1;
                }
                wait_for_frames(fd, busy_poll);
                st.polls += 1;
                continue;
            }
            let read_at = clock.now();
            let mut k = 0;
            while let Some(desc) = burst.read() {
                addrs[k] = desc.addr;
                k += 1;
                let r = &mut st.reader;
                r.frames += 1;
                let start = desc.addr as usize;
                // The kernel hands out frames inside the UMEM; anything else is a
                // bug somewhere, counted as truncated rather than trusted.
                let Some(frame) = area.get(start..start + desc.len as usize) else {
                    st.bad_descriptors += 1;
                    continue;
                };
                r.bytes += frame.len() as u64;
                let ts = match stamped(area, start) {
                    Some(mono) => clock.at(mono),
                    None => {
                        st.unstamped += 1;
                        read_at
                    }
                };
                // A reader's times never go back (the workers merge readers by
                // time and rely on it).
                last = last.max(ts);
                match wire::decode(LinkType::Ethernet, frame, desc.len) {
                    Ok(pkt) => {
                        r.tcp += 1;
                        let m = PacketMeta::new(last, point, pkt);
                        dispatcher.push_copy(m, m.payload(frame));
                    }
                    Err(skip) => r.skipped[skip.index()] += 1,
                }
            }
            burst.release();
            // The fill ring holds every frame, so it has room for these.
            let mut fill = fq.fill(k as u32);
            fill.insert(addrs[..k].iter().copied());
            fill.commit();
            drop(fill);
            if fq.needs_wakeup() {
                fq.wake();
                st.wakeups += 1;
            }
            if n < BURST {
                // The ring ran dry: do not hold packets back for a fuller batch.
                dispatcher.flush();
            }
            let r = &st.reader;
            shared.frames.store(r.frames, Ordering::Relaxed);
            shared.bytes.store(r.bytes, Ordering::Relaxed);
            shared.tcp.store(r.tcp, Ordering::Relaxed);
            shared.skipped.store(r.skipped_total(), Ordering::Relaxed);
            shared
                .ring_full_drops
                .store(dispatcher.drops(), Ordering::Relaxed);
        }
        st.reader.ring_full_drops = dispatcher.drops();
        shared
            .ring_full_drops
            .store(dispatcher.drops(), Ordering::Relaxed);
        st
    }
}

/// Waits until the socket may have frames: poll() for up to 2 ms (an idle reader
/// wakes that often to tell the workers its time, see `IDLE_SLACK_NS`, and to see
/// a stop request), or with busy polling a non-blocking receive that lets the
/// kernel run the driver's poll on this thread.
fn wait_for_frames(fd: std::os::fd::RawFd, busy_poll: bool) {
    if busy_poll {
        // SAFETY: a zero-length, non-blocking recvfrom on an open socket with null
        // buffers and address: the kernel reads and writes no user memory.
        unsafe {
            libc::recvfrom(
                fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd and the count says one.
    unsafe {
        libc::poll(&mut pfd, 1, 2);
    }
}

/// Turns on the kernel's busy polling for the socket (`--busy-poll`): the driver's
/// NAPI poll runs from this thread's receive calls instead of from interrupts.
pub fn enable_busy_poll(fd: std::os::fd::RawFd) -> Result<()> {
    const SO_PREFER_BUSY_POLL: libc::c_int = 69;
    const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
    for (opt, value) in [
        (SO_PREFER_BUSY_POLL, 1),
        (libc::SO_BUSY_POLL, 20),
        (SO_BUSY_POLL_BUDGET, BURST as libc::c_int),
    ] {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!(
                "--busy-poll: setsockopt {opt} failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
