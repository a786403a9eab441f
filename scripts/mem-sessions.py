#!/usr/bin/env python3
"""Peak memory of tapwatch holding N concurrent sessions.

Writes a capture of N sessions that each send a SYN and get a SYN-ACK and then stay
open (so all N are in the flow table at the end), replays it, and samples the
process's anonymous resident memory (RssAnon in /proc/PID/status: the flow table,
rings and buffers, not the mapped capture file) every 20 ms. Usage:
    scripts/mem-sessions.py N [extra tapwatch replay flags...]
"""
import os, struct, subprocess, sys, time

n = int(sys.argv[1])
extra = sys.argv[2:]
path = f"bench-data/open-{n}.pcap"
os.makedirs("bench-data", exist_ok=True)
if not os.path.exists(path):
    def frame(src, sport, dst, dport, flags, seq, ack):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0)
        return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        server = bytes([198, 19, 0, 1])
        for phase, flags in ((0, 0x02), (1, 0x12)):
            for i in range(n):
                client = bytes([198, 18, (i >> 8) & 0xFF, i & 0xFF])
                port = 1024 + (i >> 16)
                if phase == 0:
                    fr = frame(client, port, server, 443, flags, 1000, 0)
                else:
                    fr = frame(server, 443, client, port, flags, 5000, 1001)
                t = 1_700_000_000_000_000_000 + phase * 1_000_000_000 + i * 100
                f.write(struct.pack("<IIII", t // 10**9, t % 10**9, len(fr), len(fr)) + fr)
cmd = ["target/release/tapwatch", "replay", "--no-progress", "-q", "-o", "/dev/null",
       "--max-sessions", str(max(n, 1)), *extra, path]
proc = subprocess.Popen(cmd)
peak = 0
while proc.poll() is None:
    try:
        for line in open(f"/proc/{proc.pid}/status"):
            if line.startswith("RssAnon:"):
                peak = max(peak, int(line.split()[1]))
    except FileNotFoundError:
        break
    time.sleep(0.02)
print(f"{n} open sessions, {' '.join(extra) or 'default flags'}: peak RssAnon {peak / 1024:.1f} MiB "
      f"({peak * 1024 / max(n, 1):.0f} bytes per session)")
sys.exit(proc.returncode)
