//! `tapwatch live`: capture with AF_XDP on one or more interfaces (each a capture
//! point), one socket and one capture thread per receive queue, into the same
//! dispatch, workers and exporter as a replay.
//!
//! ```text
//!  NIC queue q --XDP program (xsks[q])--> AF_XDP socket q --capture thread q--+
//!                                                                            +--> workers --> exporter
//!  NIC queue r --XDP program (xsks[r])--> AF_XDP socket r --capture thread r--+
//! ```
//!
//! Setup (all of it before any packet is read, each failure one clear line): the
//! XDP program is loaded and attached per interface, a socket is bound to every
//! receive queue and entered in that interface's XSKMAP, and then every capability
//! the running sensor does not need is dropped. SIGINT or SIGTERM (or
//! `--duration`) stops the capture threads; the workers then judge every open
//! session (`shutdown`), the exporter writes the last verdicts, and the programs are
//! detached. SIGUSR1 prints the counters so far.

pub mod xdp;
pub mod xsk;

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use engine::pipeline::{self, ExportReport, Overflow, ReplayReport, WorkerLoop};
use engine::session::{PointId, MAX_POINTS};
use engine::stats::ReaderStats;
use engine::verdict::EndReason;
use engine::worker::WorkerStats;
use serde_json::{json, Value};

use crate::summary;
use crate::LiveArgs;
use xdp::XdpProgram;
use xsk::{LoopStats, QueueSocket, Shared};

/// One socket as the main thread sees it while its capture thread runs.
struct SocketView {
    point: usize,
    iface: String,
    queue: u32,
    bound: xsk::Bound,
    fd: RawFd,
    shared: Arc<Shared>,
}

/// Splits `NAME=IFACE`; a bare interface names its point.
fn iface_spec(spec: &str) -> (String, String) {
    match spec.split_once('=') {
        Some((name, iface)) if !name.is_empty() && !iface.is_empty() => {
            (name.to_string(), iface.to_string())
        }
        _ => (spec.to_string(), spec.to_string()),
    }
}

/// Receive queues of `iface` (its `rx-N` entries in sysfs).
fn rx_queues(iface: &str) -> Result<u32> {
    let dir = format!("/sys/class/net/{iface}/queues");
    let n = std::fs::read_dir(&dir)
        .with_context(|| {
            format!("no such interface {iface:?} in this network namespace (`ip link` lists them)")
        })?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
}

pub fn run(args: LiveArgs) -> Result<i32> {
    let an = &args.analysis;
    if args.ifaces.len() > MAX_POINTS {
        bail!(
            "at most {MAX_POINTS} capture points are supported, {} given",
            args.ifaces.len()
        );
    }
    let mut names: Vec<String> = Vec::new();
    let mut ifaces: Vec<String> = Vec::new();
    for spec in &args.ifaces {
        let (name, iface) = iface_spec(spec);
        if names.contains(&name) {
            bail!("capture point {name:?} is named twice: name the points with NAME=IFACE");
        }
        if ifaces.contains(&iface) {
            bail!("interface {iface} is given twice");
        }
        names.push(name);
        ifaces.push(iface);
    }
    let queues: Vec<u32> = ifaces.iter().map(|i| rx_queues(i)).collect::<Result<_>>()?;
    // Before anything is attached: a bad --metrics address is a setup error.
    let listener = an.metrics_listener()?;
    if !args.umem_frames.is_power_of_two() || args.umem_frames < 64 {
        bail!(
            "--umem-frames must be a power of two of at least 64, not {}",
            args.umem_frames
        );
    }
    if !caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_NET_ADMIN,
    )
    .unwrap_or(false)
    {
        bail!(
            "live capture needs CAP_NET_ADMIN, CAP_BPF and CAP_IPC_LOCK (run as root); \
             `tapwatch check {}` shows what is missing",
            ifaces.join(" ")
        );
    }
    let client_side = an.client_side(&names)?;
    let mut cfg = an.pipeline(names.len(), client_side)?;
    let readers: u32 = queues.iter().sum();

    // Setup: programs, then sockets (their bind mode depends on the XDP mode), then
    // the XSKMAP entries. Until a queue's entry is in, its packets meet the
    // not-matched action and are counted (redirect_failed_no_socket).
    let mut programs = Vec::new();
    let mut sockets: Vec<(usize, QueueSocket)> = Vec::new();
    for (p, iface) in ifaces.iter().enumerate() {
        let mut prog = XdpProgram::attach(iface, args.xdp_mode, args.not_matched, &args.port)?;
        if prog.mode == xdp::Attached::Skb && crate::check::gro_on(iface) == Some(true) {
            eprintln!(
                "tapwatch: warning: {iface}: generic (SKB) mode sees packets after GRO has \
                 merged them; merged packets over 3,840 bytes do not fit a UMEM frame and are \
                 dropped by the kernel (counted as rx_dropped): turn GRO off with `ethtool -K \
                 {iface} gro off`"
            );
        }
        let bind_mode = match (prog.mode, args.bind_mode) {
            // Generic XDP hands sockets copies; zero-copy needs the driver's XDP.
            (xdp::Attached::Skb, xsk::BindMode::Auto) => xsk::BindMode::Copy,
            (xdp::Attached::Skb, xsk::BindMode::Zero) => bail!(
                "--bind-mode zero needs driver-mode XDP, but {iface} runs the program in \
                 generic (SKB) mode"
            ),
            (_, m) => m,
        };
        for q in 0..queues[p] {
            let s = QueueSocket::open(iface, q, args.umem_frames, bind_mode)?;
            if args.busy_poll {
                xsk::enable_busy_poll(s.fd())?;
            }
            prog.register(q, &s.fd())?;
            sockets.push((p, s));
        }
        programs.push(prog);
    }
    // Files first: the process keeps its user id but no capability after this.
    // The sinks' spools and files too; their connections need no capability.
    let mut outs = crate::Outputs::new(an)?;
    if let Some(path) = &an.stats {
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    let kept = drop_capabilities()?;

    cfg.readers = readers as usize;
    cfg.batch_bytes = pipeline::MIN_BATCH_BYTES;
    cfg.batches_in_flight = 64;
    // Readers with nothing to read tell the workers their time this often, so that
    // the workers' merge by time never waits long for an idle queue.
    cfg.tick = engine::time::Nanos::from_millis(1);
    cfg.overflow = Overflow::Drop;
    cfg.open_at_end = EndReason::Shutdown;

    let stop = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while shutting down ends the process at once.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&usr1))?;

    let views: Vec<SocketView> = sockets
        .iter()
        .map(|(p, s)| SocketView {
            point: *p,
            iface: s.iface.clone(),
            queue: s.queue,
            bound: s.bound,
            fd: s.fd(),
            shared: Arc::new(Shared::default()),
        })
        .collect();
    if !an.quiet {
        for (p, prog) in programs.iter().enumerate() {
            let socks: Vec<&SocketView> = views.iter().filter(|v| v.point == p).collect();
            eprintln!(
                "tapwatch: point {} on {}: XDP {} mode, {} queue(s), {} bind, {} frames per socket",
                names[p],
                prog.iface,
                prog.mode.as_str(),
                socks.len(),
                socks.first().map_or("-", |v| v.bound.as_str()),
                args.umem_frames
            );
        }
        eprintln!(
            "tapwatch: capturing; capabilities kept: {}; SIGUSR1 prints counters, SIGINT or SIGTERM stops",
            if kept.is_empty() { "none".to_string() } else { kept.join(", ") }
        );
    }

    // --metrics reads the capture threads' counters (kept once the sockets are
    // closed: their descriptors must not be asked after that).
    let final_points: Arc<Mutex<Option<crate::metrics::LivePoints>>> = Arc::default();
    let live_points = {
        let views: Vec<(usize, RawFd, Arc<Shared>)> = views
            .iter()
            .map(|v| (v.point, v.fd, Arc::clone(&v.shared)))
            .collect();
        let npoints = names.len();
        let final_points = Arc::clone(&final_points);
        move || {
            if let Some(f) = final_points
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                return f.clone();
            }
            let mut l = crate::metrics::LivePoints {
                points: vec![ReaderStats::default(); npoints],
                kernel_drops: vec![0; npoints],
            };
            for (p, fd, sh) in &views {
                let r = &mut l.points[*p];
                r.frames += sh.frames.load(Ordering::Relaxed);
                r.bytes += sh.bytes.load(Ordering::Relaxed);
                r.tcp += sh.tcp.load(Ordering::Relaxed);
                r.ring_full_drops += sh.ring_full_drops.load(Ordering::Relaxed);
                l.kernel_drops[*p] += kernel_stats(*fd).rx_dropped;
            }
            l
        }
    };
    let served =
        crate::AnalysisArgs::serve_metrics(listener, &names, &outs, Some(Box::new(live_points)))?;

    let started = Instant::now();
    let clock = xsk::Clock::new();
    let first_ts = clock.now();
    let (dispatchers, mut loops) = pipeline::build(&cfg);
    if let Some(src) = &served {
        let shares = src.telemetry.worker_shares(loops.len());
        for (l, sh) in loops.iter_mut().zip(shares) {
            l.publish_to(Arc::clone(sh));
        }
    }
    let mut export_probe = served
        .as_ref()
        .map(|s| crate::metrics::ExportProbe::new(Arc::clone(&s.export)));
    let rings: Vec<_> = loops.iter_mut().map(WorkerLoop::take_records).collect();
    let notices: Vec<_> = loops.iter_mut().map(WorkerLoop::take_notices).collect();
    let clocks: Vec<_> = loops.iter().map(WorkerLoop::progress).collect();
    let pairing = cfg.pair_config();
    let capture_stop = AtomicBool::new(false);
    let (returned, workers, record_waits, notices_lost, export) = thread::scope(|scope| {
        let exporter = thread::Builder::new()
            .name("tw-export".into())
            .spawn_scoped(scope, {
                let outs = std::cell::RefCell::new(&mut outs);
                let names = &names;
                move || {
                    let mut line = Vec::with_capacity(4096);
                    pipeline::run_exporter_idle(
                        rings,
                        notices,
                        &clocks,
                        pairing,
                        |r| {
                            line.clear();
                            engine::json::record_to(&mut line, r, names);
                            outs.borrow_mut().write(&line)?;
                            if let Some(p) = export_probe.as_mut() {
                                p.written(r);
                            }
                            Ok(())
                        },
                        // Live verdicts are read as they come: each burst is handed
                        // on as soon as nothing follows it (the sinks' threads
                        // deliver as lines arrive).
                        || outs.borrow_mut().flush(),
                    )
                }
            })
            .expect("spawn exporter thread");
        // Live workers get no frames: their payloads come copied in the batches.
        let workers = pipeline::spawn_workers(scope, loops, &[]);
        let captures: Vec<_> = sockets
            .into_iter()
            .zip(dispatchers)
            .zip(&views)
            .map(|(((p, mut sock), mut d), view)| {
                let stop = &capture_stop;
                let busy = args.busy_poll;
                thread::Builder::new()
                    .name(format!("tw-xsk-{}-{}", sock.iface, sock.queue))
                    .spawn_scoped(scope, move || {
                        let st =
                            sock.run(clock, PointId(p as u8), &mut d, stop, &view.shared, busy);
                        let by_worker = d.drops_by_worker().to_vec();
                        d.finish();
                        (sock, st, by_worker)
                    })
                    .expect("spawn capture thread")
            })
            .collect();

        let deadline = args.duration.map(|d| started + Duration::from_nanos(d.0));
        while !stop.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d) {
            if usr1.swap(false, Ordering::Relaxed) {
                print_counters(&names, &programs, &views, started.elapsed());
            }
            thread::sleep(Duration::from_millis(50));
        }
        capture_stop.store(true, Ordering::Relaxed);
        let returned: Vec<(QueueSocket, LoopStats, Vec<u64>)> = captures
            .into_iter()
            .map(|c| c.join().expect("capture thread panicked"))
            .collect();
        let mut total = WorkerStats::default();
        let (mut waits, mut notices_lost) = (0, 0);
        for w in workers {
            let r = w.join().expect("worker thread panicked");
            total.add(&r.stats);
            waits += r.record_waits;
            notices_lost += r.notices_lost;
        }
        let export: ExportReport<io::Error> = exporter.join().expect("exporter thread panicked");
        (returned, total, waits, notices_lost, export)
    });
    let elapsed = started.elapsed();
    let last_ts = clock.now();

    // Final counters, then detach (dropping a program closes its link).
    let mut points = vec![ReaderStats::default(); names.len()];
    let mut socket_json = Vec::new();
    let mut drops_by_worker = vec![0u64; cfg.workers];
    for ((sock, st, by_worker), view) in returned.iter().zip(&views) {
        points[view.point].add(&st.reader);
        for (a, b) in drops_by_worker.iter_mut().zip(by_worker) {
            *a += b;
        }
        let k = sock.statistics().ok();
        socket_json.push(json!({
            "point": names[view.point],
            "iface": sock.iface,
            "queue": sock.queue,
            "bind": sock.bound.as_str(),
            "frames": st.reader.frames,
            "tcp_packets": st.reader.tcp,
            "ring_full_drops": st.reader.ring_full_drops,
            "bad_descriptors": st.bad_descriptors,
            "unstamped": st.unstamped,
            "polls": st.polls,
            "wakeups": st.wakeups,
            "kernel": k.map(|k| json!({
                "rx_dropped": k.rx_dropped,
                "rx_invalid_descs": k.rx_invalid_descs,
                "rx_ring_full": k.rx_ring_full,
                "rx_fill_ring_empty_descs": k.rx_fill_ring_empty_descs,
            })),
        }));
    }
    let xdp_json: Vec<Value> = programs
        .iter()
        .zip(&names)
        .map(|(prog, name)| xdp_json(prog, name))
        .collect();
    if served.is_some() {
        let kernel_drops = (0..names.len())
            .map(|p| {
                returned
                    .iter()
                    .zip(&views)
                    .filter(|(_, v)| v.point == p)
                    .filter_map(|((sock, _, _), _)| sock.statistics().ok())
                    .map(|k| k.rx_dropped)
                    .sum()
            })
            .collect();
        *final_points.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(crate::metrics::LivePoints {
                points: points.clone(),
                kernel_drops,
            });
    }
    drop(returned);
    for prog in programs {
        prog.detach();
    }
    // Detached first: the sinks' drain (up to --sink-drain-timeout) holds no
    // interface.
    let (flushed, sink_reports) = outs.finish(an.quiet);

    let report = ReplayReport {
        points,
        workers,
        record_waits,
        notices_lost,
        export,
        errors: Vec::new(),
        first_ts: Some(first_ts),
        last_ts: Some(last_ts),
    };
    let sources: Vec<String> = ifaces.iter().map(|i| format!("interface {i}")).collect();
    let clocks = vec![engine::clock::ClockEstimate::REFERENCE; names.len()];
    let run = summary::Points {
        names: &names,
        sources: &sources,
        client_side,
        match_window: an.match_window,
        pair_window: an.pair_window,
        clock_mode: summary::ClockMode::None,
        clocks: &clocks,
    };
    let mut summary = summary::Summary::new(&report, &run, elapsed, cfg.workers);
    summary.insert(
        "live",
        json!({
            "xdp": xdp_json,
            "sockets": socket_json,
            "umem_frames": args.umem_frames,
            "busy_poll": args.busy_poll,
            "capabilities_kept": kept,
            "ring_full_drops_by_worker": drops_by_worker,
        }),
    );
    if !sink_reports.is_empty() {
        summary.insert("sinks", crate::sink::reports_json(&sink_reports));
    }
    if !an.quiet {
        let mut err = io::stderr().lock();
        summary.print(&mut err);
        crate::sink::print_reports(&mut err, &sink_reports);
        print_live(&mut err, summary.get("live"));
    }
    if let Some(path) = &an.stats {
        summary.write_json(path)?;
    }
    an.linger_metrics(served.as_deref());
    crate::output_result(&report.export, flushed, an.quiet)?;
    Ok(0)
}

fn xdp_json(prog: &XdpProgram, point: &str) -> Value {
    let counters = match prog.counters() {
        Ok(c) => Value::Object(
            xdp::COUNTERS
                .iter()
                .zip(c)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        ),
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({
        "point": point,
        "iface": prog.iface,
        "mode": prog.mode.as_str(),
        "counters": counters,
    })
}

/// The live part of the summary, a line per interface and per socket.
fn print_live(out: &mut impl Write, live: Option<&Value>) {
    let Some(live) = live else { return };
    let nonzero = summary::nonzero;
    for x in live["xdp"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  XDP on {} ({} mode): {}",
            x["iface"].as_str().unwrap_or("?"),
            x["mode"].as_str().unwrap_or("?"),
            nonzero(&x["counters"])
        );
    }
    let by_worker = &live["ring_full_drops_by_worker"];
    if by_worker
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v.as_u64().unwrap_or(0) > 0))
    {
        let _ = writeln!(
            out,
            "  packets dropped because a worker's ring was full, by worker: {by_worker}"
        );
    }
    for s in live["sockets"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  socket {} queue {} ({}): {} frames, {} TCP, ring-full drops {}; kernel: {}",
            s["iface"].as_str().unwrap_or("?"),
            s["queue"],
            s["bind"].as_str().unwrap_or("?"),
            s["frames"],
            s["tcp_packets"],
            s["ring_full_drops"],
            nonzero(&s["kernel"])
        );
    }
}

/// SIGUSR1: the counters so far, on standard error.
fn print_counters(names: &[String], programs: &[XdpProgram], views: &[SocketView], up: Duration) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "tapwatch: counters after {:.1} s", up.as_secs_f64());
    for (prog, name) in programs.iter().zip(names) {
        print_live(&mut err, Some(&json!({ "xdp": [xdp_json(prog, name)] })));
    }
    for v in views {
        let k = kernel_stats(v.fd);
        let _ = writeln!(
            err,
            "  socket {} queue {} ({}): {} frames, {} TCP, {} skipped, ring-full drops {}; kernel: rx_dropped {}, rx_ring_full {}, fill_ring_empty {}",
            v.iface,
            v.queue,
            v.bound.as_str(),
            v.shared.frames.load(Ordering::Relaxed),
            v.shared.tcp.load(Ordering::Relaxed),
            v.shared.skipped.load(Ordering::Relaxed),
            v.shared.ring_full_drops.load(Ordering::Relaxed),
            k.rx_dropped,
            k.rx_ring_full,
            k.rx_fill_ring_empty_descs,
        );
    }
}

/// XDP_STATISTICS of a socket by its descriptor (the socket itself is with its
/// capture thread); zeros if the kernel does not answer.
fn kernel_stats(fd: RawFd) -> xdpilone::xdp::XdpStatisticsV2 {
    let mut st = xdpilone::xdp::XdpStatisticsV2::default();
    let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes, the size of `st` (a repr(C)
    // struct of u64s, the kernel's struct xdp_statistics), to a valid pointer; `fd`
    // stays open while the capture thread holds its socket.
    unsafe {
        libc::getsockopt(
            fd,
            283,
            7,
            (&mut st as *mut xdpilone::xdp::XdpStatisticsV2).cast(),
            &mut len,
        );
    }
    st
}

/// Drops every capability the running sensor does not need, from all sets, and
/// forbids gaining new ones (no_new_privs). Returns the names of those kept.
///
/// What the capture needs after setup: reading the bound sockets' rings (shared
/// memory), getsockopt(XDP_STATISTICS) on its own sockets, reading the XDP
/// program's counters through the map descriptor it already holds, and closing
/// the bpf_link at exit: none of these checks a capability on this kernel (the
/// live test checks the counters still read after the drop).
fn drop_capabilities() -> Result<Vec<String>> {
    use caps::{CapSet, Capability};
    let keep: &[Capability] = &[];
    // The bounding set first: that needs CAP_SETPCAP, which goes next.
    for cap in caps::read(None, CapSet::Bounding).unwrap_or_default() {
        if !keep.contains(&cap) {
            // Not fatal: a sensor without CAP_SETPCAP cannot shrink it, and the
            // other sets are what count for this process.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        let now = caps::read(None, set)
            .with_context(|| format!("cannot read the {set:?} capabilities"))?;
        for cap in now {
            if !keep.contains(&cap) {
                caps::drop(None, set, cap)
                    .with_context(|| format!("cannot drop {cap} from the {set:?} set"))?;
            }
        }
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes integers only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        bail!("prctl(PR_SET_NO_NEW_PRIVS): {}", io::Error::last_os_error());
    }
    Ok(keep.iter().map(|c| c.to_string()).collect())
}
