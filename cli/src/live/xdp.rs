//! The XDP program on one interface: loaded with aya from the object committed in
//! ebpf/, attached through a bpf_link (so that the kernel detaches it whenever the
//! process ends, however it ends), configured through its `config` map, told each
//! queue's AF_XDP socket through `xsks`, and read back through `counters`.
//!
//! The layout mirrors ebpf/xdp_tapwatch.h (the source of truth).

use std::io;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};
use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::links::FdLink;
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::Ebpf;

/// The compiled program (scripts/build-ebpf.sh --check proves it is built from
/// ebpf/xdp_tapwatch.c).
static OBJECT: &[u8] = include_bytes!("../../../ebpf/xdp_tapwatch.o");

/// `xsks` holds sockets for queues 0..TW_XSKS_MAX.
pub const XSKS_MAX: u32 = 64;
/// TCP ports in the program's port filter.
pub const MAX_PORTS: usize = 8;

/// Counter names, by index in the `counters` map (enum tw_counter).
pub const COUNTERS: [&str; 12] = [
    "redirected",
    "passed",
    "dropped",
    "redirect_failed_no_socket",
    "redirect_failed_queue_range",
    "not_ip",
    "not_tcp",
    "ip_fragment",
    "ipv6_ext_unhandled",
    "port_filtered",
    "truncated",
    "malformed",
];

/// XDP_DROP and XDP_PASS, as the program's `not_matched_action`.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// `--xdp-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Driver (native) mode, else generic (SKB) mode with a warning.
    Auto,
    /// Driver mode only: fail if the driver has no XDP.
    Driver,
    /// Generic (SKB) mode: works on every interface, slower.
    Skb,
}

/// `--not-matched`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NotMatched {
    /// Drop what is not for tapwatch: a tap or SPAN port, whose traffic is not
    /// this host's.
    Drop,
    /// Hand it to the kernel: a host that needs its own traffic.
    Pass,
}

/// The mode the program ended up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Driver,
    Skb,
}

impl Attached {
    pub fn as_str(self) -> &'static str {
        match self {
            Attached::Driver => "driver",
            Attached::Skb => "skb",
        }
    }
}

/// The program, loaded and attached to one interface.
pub struct XdpProgram {
    pub iface: String,
    pub mode: Attached,
    /// Detaches the program when dropped (closing the link's fd).
    link: Option<FdLink>,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    // Last: the maps and the link above are dropped before the object.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("iface", &self.iface)
            .field("mode", &self.mode)
            .finish()
    }
}

impl XdpProgram {
    /// Loads a fresh copy of the program (its own maps: queue numbers are per
    /// interface) and attaches it to `iface`.
    pub fn attach(
        iface: &str,
        mode: ModeArg,
        not_matched: NotMatched,
        ports: &[u16],
    ) -> Result<Self> {
        if ports.len() > MAX_PORTS {
            bail!("--port: at most {MAX_PORTS} ports, {} given", ports.len());
        }
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| {
            anyhow::anyhow!(
                "cannot load the XDP program: {e} (run `tapwatch check {iface}`: BPF needs root \
                 or CAP_BPF and CAP_NET_ADMIN)"
            )
        })?;
        let mut config: Array<_, [u8; 20]> = Array::try_from(
            ebpf.map_mut("config")
                .context("the XDP object has no map \"config\"")?,
        )?;
        let mut value = [0u8; 20];
        let action = match not_matched {
            NotMatched::Drop => XDP_DROP,
            NotMatched::Pass => XDP_PASS,
        };
        value[..4].copy_from_slice(&action.to_ne_bytes());
        for (i, p) in ports.iter().enumerate() {
            value[4 + 2 * i..6 + 2 * i].copy_from_slice(&p.to_ne_bytes());
        }
        config
            .set(0, value, 0)
            .context("cannot write the XDP program's config map")?;
        let xsks = XskMap::try_from(ebpf.take_map("xsks").context("no map \"xsks\"")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("counters").context("no map \"counters\"")?)?;
        let prog: &mut Xdp = ebpf
            .program_mut("xdp_tapwatch")
            .context("the XDP object has no program xdp_tapwatch")?
            .try_into()?;
        prog.load().map_err(|e| {
            anyhow::anyhow!("the kernel refused the XDP program: {}", program_error(&e))
        })?;
        let (id, attached) = match mode {
            ModeArg::Driver => (attach_in(prog, iface, XdpMode::Driver)?, Attached::Driver),
            ModeArg::Skb => (attach_in(prog, iface, XdpMode::Skb)?, Attached::Skb),
            ModeArg::Auto => match attach_in(prog, iface, XdpMode::Driver) {
                Ok(id) => (id, Attached::Driver),
                Err(e) if is_unsupported(&e) => {
                    eprintln!(
                        "tapwatch: warning: {iface}: the driver has no native XDP; using generic \
                         (SKB) mode, which is slower (--xdp-mode skb says so explicitly)"
                    );
                    (attach_in(prog, iface, XdpMode::Skb)?, Attached::Skb)
                }
                Err(e) => return Err(e),
            },
        };
        let link = prog.take_link(id)?;
        let link = match FdLink::try_from(link) {
            Ok(l) => Some(l),
            Err(_) => {
                // aya fell back to netlink (a kernel without bpf_link for XDP): the
                // program is detached on a clean exit but outlives a SIGKILL.
                eprintln!(
                    "tapwatch: warning: {iface}: attached through netlink, not a bpf_link: if \
                     tapwatch is killed the program stays; remove it with `ip link set dev \
                     {iface} xdp off`"
                );
                None
            }
        };
        Ok(XdpProgram {
            iface: iface.to_string(),
            mode: attached,
            link,
            xsks,
            counters,
            _ebpf: ebpf,
        })
    }

    /// Sends packets of rx queue `queue` to the socket `fd`.
    pub fn register(&mut self, queue: u32, fd: &impl AsRawFd) -> Result<()> {
        if queue >= XSKS_MAX {
            bail!(
                "{}: queue {queue} is beyond the {XSKS_MAX} queues the XDP program serves",
                self.iface
            );
        }
        self.xsks.set(queue, fd.as_raw_fd(), 0).with_context(|| {
            format!(
                "{}: cannot put queue {queue}'s socket in the XSKMAP",
                self.iface
            )
        })
    }

    /// The program's counters, summed over CPUs, in [`COUNTERS`] order.
    pub fn counters(&self) -> Result<[u64; 12]> {
        let mut out = [0u64; 12];
        for (i, v) in out.iter_mut().enumerate() {
            let per_cpu = self.counters.get(&(i as u32), 0)?;
            *v = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// Detaches now (dropping does the same).
    pub fn detach(mut self) {
        self.link.take();
    }
}

fn attach_in(prog: &mut Xdp, iface: &str, mode: XdpMode) -> Result<aya::programs::xdp::XdpLinkId> {
    prog.attach(iface, mode).map_err(|e| {
        let what = match mode {
            XdpMode::Skb => "generic (SKB)",
            _ => "driver",
        };
        let hint = match os_error(&e) {
            Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
                ": another XDP program is attached to {iface} (see `ip link show dev {iface}`; \
                 remove it with `ip link set dev {iface} xdp off` if nothing needs it)"
            ),
            Some(libc::EOPNOTSUPP) => format!(": the driver of {iface} has no {what} XDP"),
            Some(libc::EPERM) | Some(libc::EACCES) => {
                ": not permitted (needs root, or CAP_NET_ADMIN and CAP_BPF)".to_string()
            }
            _ => String::new(),
        };
        anyhow::Error::new(AttachError {
            unsupported: os_error(&e) == Some(libc::EOPNOTSUPP),
        })
        .context(format!(
            "cannot attach the XDP program to {iface} in {what} mode: {}{hint}",
            program_error(&e)
        ))
    })
}

/// Marks an attach that failed because the driver lacks the mode.
#[derive(Debug)]
struct AttachError {
    unsupported: bool,
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.unsupported {
            "mode not supported"
        } else {
            "attach failed"
        })
    }
}

impl std::error::Error for AttachError {}

fn is_unsupported(e: &anyhow::Error) -> bool {
    e.downcast_ref::<AttachError>()
        .is_some_and(|a| a.unsupported)
}

fn os_error(e: &ProgramError) -> Option<i32> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io.raw_os_error();
        }
        src = s.source();
    }
    None
}

/// The error with its causes on one line.
fn program_error(e: &ProgramError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}
