//! `tapwatch check [IFACE...]`: can this machine run `tapwatch live`? The kernel,
//! BPF and AF_XDP, the capabilities and memlock limit of this process, and per
//! interface its driver, XDP modes, zero-copy support and receive queues; for every
//! problem, what to do.
//!
//! Read-only: it creates one BPF array map and one AF_XDP socket to see whether the
//! kernel allows them, and closes both at once; it attaches nothing.
//!
//! The kernel edge is here, so is `unsafe`: each block is one syscall or ioctl on
//! buffers this module owns, with a `// SAFETY:` comment.

use std::ffi::CString;
use std::io::{self, Write};
use std::path::Path;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    /// Live capture works, but not at its best.
    Warn,
    /// Live capture cannot work until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug)]
struct Line {
    level: Level,
    what: String,
    /// What to do about it (warnings and failures).
    fix: Option<String>,
}

impl Line {
    fn failed(&self) -> bool {
        self.level == Level::Fail
    }
}

fn ok(what: impl Into<String>) -> Line {
    Line {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn warn(what: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        level: Level::Warn,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        level: Level::Fail,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// Runs the checks and prints the report; returns whether everything is fine.
pub fn run(ifaces: &[String], out: &mut impl Write) -> io::Result<bool> {
    let mut lines = vec![kernel()];
    lines.extend(capabilities());
    lines.push(memlock());
    lines.push(bpf());
    lines.push(af_xdp());
    let mut all_ok = !lines.iter().any(Line::failed);
    write_lines(out, "system", &lines)?;
    for iface in ifaces {
        let lines = interface(iface);
        all_ok &= !lines.iter().any(Line::failed);
        write_lines(out, &format!("interface {iface}"), &lines)?;
    }
    if all_ok {
        writeln!(
            out,
            "no check failed (lines marked warn work, but not at their best)"
        )?;
    } else {
        writeln!(out, "some checks failed: see the lines marked FAIL")?;
    }
    Ok(all_ok)
}

fn write_lines(out: &mut impl Write, title: &str, lines: &[Line]) -> io::Result<()> {
    writeln!(out, "{title}:")?;
    for l in lines {
        let mark = match l.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        writeln!(out, "  {mark} {}", l.what)?;
        if let Some(fix) = &l.fix {
            writeln!(out, "       -> {fix}")?;
        }
    }
    Ok(())
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// AF_XDP needs 4.18, bpf_link for XDP 5.9, the netdev XDP feature report 6.3.
fn kernel() -> Line {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) >= (5, 9) {
        ok(format!(
            "kernel {release} (AF_XDP and XDP links: 5.9 or later)"
        ))
    } else {
        problem(
            format!("kernel {release:?}: older than 5.9"),
            "run on a kernel with AF_XDP and bpf_link for XDP (5.9 or later; 6.3 or later also reports XDP features)",
        )
    }
}

/// Capability bits (include/uapi/linux/capability.h) that live capture needs.
const CAPS: [(u32, &str, &str); 5] = [
    (12, "CAP_NET_ADMIN", "attach the XDP program"),
    (13, "CAP_NET_RAW", "open AF_XDP sockets"),
    (
        14,
        "CAP_IPC_LOCK",
        "lock the UMEM in memory beyond the memlock limit",
    ),
    (
        39,
        "CAP_BPF",
        "load the XDP program and its maps; CAP_SYS_ADMIN also does",
    ),
    (21, "CAP_SYS_ADMIN", "BPF on kernels without CAP_BPF"),
];

fn capabilities() -> Vec<Line> {
    let status = read("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    let mut lines = Vec::new();
    for (bit, name, why) in CAPS {
        if bit == 21 {
            continue;
        }
        let present = has(bit) || (bit == 39 && has(21));
        if present {
            lines.push(ok(format!("{name}: present ({why})")));
        } else {
            lines.push(problem(
                format!("{name}: missing (needed to {why})"),
                "run as root, or grant it: setcap cap_net_admin,cap_net_raw,cap_ipc_lock,cap_bpf+ep $(command -v tapwatch)",
            ));
        }
    }
    lines
}

fn memlock() -> Line {
    let limits = read("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("?")
        .to_string();
    let has_ipc_lock = read("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|eff| eff & (1 << 14) != 0);
    // A UMEM of 16,384 frames of 4 KiB is 64 MiB per socket.
    let enough = soft == "unlimited" || soft.parse::<u64>().is_ok_and(|b| b >= 64 << 20);
    if enough || has_ipc_lock {
        ok(format!(
            "memlock limit {soft}{}",
            if enough {
                ""
            } else {
                " bytes, lifted by CAP_IPC_LOCK"
            }
        ))
    } else {
        problem(
            format!("memlock limit {soft} bytes: too small for a 64 MiB UMEM"),
            "raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in a systemd unit) or grant CAP_IPC_LOCK",
        )
    }
}

/// Creates (and closes) a one-entry BPF array map: is BPF there, and allowed?
fn bpf() -> Line {
    // union bpf_attr, BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
    let mut attr = [0u32; 5];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: bpf(2) with BPF_MAP_CREATE (0) reads `size` bytes of the attribute
    // union from `attr`, which is a live, properly aligned buffer of that size; the
    // kernel treats the rest of the union as zero.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            attr.as_ptr(),
            std::mem::size_of_val(&attr) as u32,
        )
    };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this function just received and owns.
        unsafe { libc::close(fd as i32) };
        return ok("BPF: a map could be created");
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) => problem(
            format!("BPF: not allowed ({err})"),
            "grant CAP_BPF (or CAP_SYS_ADMIN), or run as root",
        ),
        Some(libc::ENOSYS) => problem(
            "BPF: the kernel has no bpf(2) syscall",
            "use a kernel built with CONFIG_BPF_SYSCALL",
        ),
        _ => problem(format!("BPF: map creation failed: {err}"), "see dmesg"),
    }
}

/// Opens (and closes) an AF_XDP socket.
fn af_xdp() -> Line {
    // SAFETY: socket(2) with constant arguments; no memory is passed.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this function just received and owns.
        unsafe { libc::close(fd) };
        return ok("AF_XDP: a socket could be opened");
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => problem(
            "AF_XDP: not supported by this kernel",
            "use a kernel built with CONFIG_XDP_SOCKETS",
        ),
        Some(libc::EPERM | libc::EACCES) => problem(
            format!("AF_XDP: not allowed ({err})"),
            "grant CAP_NET_RAW, or run as root",
        ),
        _ => problem(format!("AF_XDP: socket failed: {err}"), "see dmesg"),
    }
}

fn interface(name: &str) -> Vec<Line> {
    let sys = Path::new("/sys/class/net").join(name);
    if name.contains('/') || !sys.exists() {
        return vec![problem(
            format!("no such interface {name:?} in this network namespace"),
            "give an interface `ip link` lists (run inside the interface's namespace with `ip netns exec NS`)",
        )];
    }
    let mut lines = Vec::new();
    let ifindex: u32 = read(sys.join("ifindex"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let state = read(sys.join("operstate")).unwrap_or_default();
    let mtu = read(sys.join("mtu")).unwrap_or_default();
    if state == "down" {
        lines.push(problem(
            format!("state down (mtu {mtu})"),
            format!("ip link set dev {name} up"),
        ));
    } else {
        lines.push(ok(format!("state {state}, mtu {mtu}, ifindex {ifindex}")));
    }
    let driver = driver_of(name).unwrap_or_else(|| "unknown".to_string());
    let queues = std::fs::read_dir(sys.join("queues"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0);
    lines.push(ok(format!(
        "driver {driver}; {queues} receive queue(s): one AF_XDP socket and capture thread each"
    )));
    match xdp_features(ifindex) {
        Ok(Some(f)) => {
            let native = f & XDP_ACT_BASIC != 0 && f & XDP_ACT_REDIRECT != 0;
            lines.push(if native {
                ok("XDP: driver (native) mode supported; generic (SKB) mode always is")
            } else {
                warn(
                    "XDP: no driver (native) mode: only generic (SKB) mode, slower, and every packet reports rx queue 0",
                    "expect `--xdp-mode auto` to fall back to skb; for speed, use a NIC whose driver has native XDP",
                )
            });
            lines.push(if f & XDP_ACT_XSK_ZEROCOPY != 0 {
                ok("AF_XDP zero-copy: supported (`--bind-mode zero`)")
            } else {
                ok("AF_XDP zero-copy: not supported by the driver: copy mode (`--bind-mode copy`)")
            });
        }
        Ok(None) => lines.push(ok(
            "XDP features: the kernel does not report them (before 6.3): `--xdp-mode auto` will try driver mode, then skb",
        )),
        Err(e) => lines.push(ok(format!(
            "XDP features: could not be read ({e}): `--xdp-mode auto` will try driver mode, then skb"
        ))),
    }
    match attached_xdp(name) {
        Some(true) => lines.push(problem(
            "an XDP program is already attached",
            format!("detach it (ip link set dev {name} xdp off) or capture elsewhere: only one program per interface and mode"),
        )),
        Some(false) => lines.push(ok("no XDP program attached")),
        None => {}
    }
    lines
}

/// The driver name, from ethtool's GDRVINFO ioctl (what `ethtool -i` prints).
fn driver_of(name: &str) -> Option<String> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    let mut info = DrvInfo {
        cmd: 0x0000_0003, // ETHTOOL_GDRVINFO
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: `DrvInfo` is struct ethtool_drvinfo, the size ETHTOOL_GDRVINFO writes.
    if !unsafe { ethtool(name, &mut info) } {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// Whether generic receive offload is on (ETHTOOL_GGRO); `None` if unknown.
pub fn gro_on(name: &str) -> Option<bool> {
    #[repr(C)]
    struct Value {
        cmd: u32,
        data: u32,
    }
    let mut v = Value {
        cmd: 0x0000_002b, // ETHTOOL_GGRO
        data: 0,
    };
    // SAFETY: `Value` is struct ethtool_value, what ETHTOOL_GGRO reads and writes.
    unsafe { ethtool(name, &mut v) }.then_some(v.data != 0)
}

/// SIOCETHTOOL on interface `name` with the command struct `data` (its first field
/// the command); false if the call failed.
///
/// # Safety
///
/// `T` must be the struct the kernel reads and writes for the command in its first
/// four bytes, no smaller.
unsafe fn ethtool<T>(name: &str, data: &mut T) -> bool {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return false;
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: (data as *mut T).cast(),
        _pad: [0; 16],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: SIOCETHTOOL reads the interface name and the pointer from `req` and
    // reads and writes the command's struct at `data` (the caller vouches for its
    // size); both outlive the call.
    let rc = unsafe { libc::ioctl(fd, 0x8946, &mut req) }; // SIOCETHTOOL
                                                           // SAFETY: `fd` is the socket opened above, owned here.
    unsafe { libc::close(fd) };
    rc >= 0
}

/// Whether `ip` shows an XDP program on the interface (`None`: `ip` not usable).
fn attached_xdp(name: &str) -> Option<bool> {
    let out = std::process::Command::new("ip")
        .args(["-d", "link", "show", "dev", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.contains(" prog/xdp id ") || text.contains("xdpgeneric") || text.contains("xdpdrv"))
}

// The netdev generic netlink family (Documentation/netlink/specs/netdev.yaml).
const XDP_ACT_BASIC: u64 = 1;
const XDP_ACT_REDIRECT: u64 = 2;
const XDP_ACT_XSK_ZEROCOPY: u64 = 8;

/// The interface's XDP features from the `netdev` generic netlink family (kernel
/// 6.3 and later); `Ok(None)` if the kernel has no such family.
fn xdp_features(ifindex: u32) -> io::Result<Option<u64>> {
    let sock = Netlink::open()?;
    // CTRL_CMD_GETFAMILY (3) to GENL_ID_CTRL (0x10), CTRL_ATTR_FAMILY_NAME (2).
    let reply = sock.request(0x10, 3, 1, &attr(2, b"netdev\0"))?;
    let Some(reply) = reply else {
        return Ok(None);
    };
    // CTRL_ATTR_FAMILY_ID (1), a u16.
    let Some(id) = find_attr(&reply, 1).and_then(|v| v.get(..2)) else {
        return Ok(None);
    };
    let family = u16::from_ne_bytes([id[0], id[1]]);
    // NETDEV_CMD_DEV_GET (1), NETDEV_A_DEV_IFINDEX (1).
    let reply = sock.request(family, 1, 1, &attr(1, &ifindex.to_ne_bytes()))?;
    // NETDEV_A_DEV_XDP_FEATURES (3), a u64.
    Ok(reply
        .as_deref()
        .and_then(|r| find_attr(r, 3))
        .and_then(|v| v.get(..8))
        .map(|v| u64::from_ne_bytes(v.try_into().unwrap_or([0; 8]))))
}

/// A netlink attribute: length, type, value, padded to 4 bytes.
fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::with_capacity((len + 3) & !3);
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize((len + 3) & !3, 0);
    v
}

/// The value of the first attribute of type `kind` in `attrs`.
fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let t = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if t == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

/// A generic netlink socket, closed on drop.
#[derive(Debug)]
struct Netlink(i32);

impl Drop for Netlink {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink(fd))
    }

    /// Sends one request and returns the attributes of its reply, or `None` if the
    /// kernel answered with an error (no such family, no such device).
    fn request(
        &self,
        family: u16,
        cmd: u8,
        version: u8,
        attrs: &[u8],
    ) -> io::Result<Option<Vec<u8>>> {
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&family.to_ne_bytes());
        msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(attrs);
        // SAFETY: send(2) reads `msg.len()` bytes from `msg`, which lives across the
        // call; netlink sockets need no address (the kernel is the peer).
        let sent = unsafe { libc::send(self.0, msg.as_ptr().cast(), msg.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`, which lives
        // across the call.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let buf = &buf[..n as usize];
        if buf.len() < 20 {
            return Ok(None);
        }
        let msg_len =
            (u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize).min(buf.len());
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind == libc::NLMSG_ERROR as u16 || msg_len < 20 {
            return Ok(None);
        }
        Ok(Some(buf[20..msg_len].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_attributes_round_trip() {
        let mut a = attr(2, b"netdev\0");
        a.extend(attr(1, &7u32.to_ne_bytes()));
        assert_eq!(find_attr(&a, 2), Some(&b"netdev\0"[..]));
        assert_eq!(find_attr(&a, 1), Some(&7u32.to_ne_bytes()[..]));
        assert_eq!(find_attr(&a, 3), None);
        // A hostile length never reads out of bounds.
        assert_eq!(find_attr(&[200, 0, 1, 0, 9], 1), None);
        assert_eq!(find_attr(&[2, 0, 1, 0], 1), None);
    }

    #[test]
    fn test_loopback_is_checked_without_panicking() {
        let mut out = Vec::new();
        let _ = run(&["lo".to_string(), "no-such-if0".to_string()], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("interface lo:"), "{text}");
        assert!(text.contains("no such interface \"no-such-if0\""), "{text}");
    }
}
