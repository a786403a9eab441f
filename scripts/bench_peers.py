"""tapwatch against its peers on the same capture, in one run (issue 6, item 2).

Run through scripts/bench-peers, which installs what this needs. For each tool,
RUNS timed runs (after one untimed warm-up run that fills the page cache), their
median and min-max:

  read-only   tapwatch read FILE: every frame walked, nothing analysed (the floor)
  tapwatch    tapwatch replay -q -o /dev/null -w 1 FILE, and -w 2
  tshark      tshark -n -r FILE -Y tls.alert_message -T fields -e frame.number
              -e tls.alert_message.desc (its TCP and TLS dissectors, reassembly on,
              no name resolution, output discarded)
  nfstream    NFStreamer(source=FILE) with its defaults (nDPI), every flow iterated

Then instructions per packet from valgrind --tool=callgrind on a smaller file (all
threads), for tapwatch replay -w 1 and tapwatch read. Prints a markdown table
(packets/s, Gbit/s, each tool's time over tapwatch's with one worker) and writes a
PNG bar chart.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

NFSTREAM = """
import sys
from nfstream import NFStreamer
n = 0
for _ in NFStreamer(source=sys.argv[1]):
    n += 1
print(n)
"""


def frames_and_bytes(tw, path):
    out = subprocess.run([tw, "read", path], check=True, capture_output=True, text=True).stdout
    m = re.search(r": (\d+) frames, (\d+) bytes", out)
    return int(m.group(1)), int(m.group(2))


def timed(cmd, runs):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return times


def callgrind_ir(cmd):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        total = 0
        # One file per thread with --separate-threads; by default one file, with a
        # "summary:" (or "totals:") line.
        for name in os.listdir(d):
            for line in open(os.path.join(d, name)):
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
        return total


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tapwatch", required=True)
    ap.add_argument("--file", required=True, help="capture to run every tool on")
    ap.add_argument("--small", required=True, help="smaller capture for callgrind")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chart", required=True, help="PNG to write")
    ap.add_argument("--python", default=sys.executable, help="python with nfstream")
    a = ap.parse_args()
    tw = a.tapwatch
    frames, nbytes = frames_and_bytes(tw, a.file)
    tools = [
        ("read-only (tapwatch read)", [tw, "read", a.file]),
        ("tapwatch, 1 worker", [tw, "replay", "-q", "-o", "/dev/null", "-w", "1", a.file]),
        ("tapwatch, 2 workers", [tw, "replay", "-q", "-o", "/dev/null", "-w", "2", a.file]),
        (
            "tshark (TCP+TLS, alerts)",
            ["tshark", "-n", "-r", a.file, "-Y", "tls.alert_message", "-T", "fields",
             "-e", "frame.number", "-e", "tls.alert_message.desc"],
        ),
        ("NFStream (nDPI)", [a.python, "-c", NFSTREAM, a.file]),
    ]
    results = []
    for name, cmd in tools:
        print(f"bench-peers: {name}: {a.runs} runs ...", file=sys.stderr, flush=True)
        results.append((name, timed(cmd, a.runs)))
    base = statistics.median(results[1][1])
    print(f"\nMachine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.platform()}")
    print(f"File: {a.file}: {frames:,} frames, {nbytes:,} bytes; {a.runs} runs each after a warm-up run\n")
    print("| tool | median time | min-max | packets/s | Gbit/s | time / tapwatch 1 worker |")
    print("|---|---|---|---|---|---|")
    for name, ts in results:
        med = statistics.median(ts)
        print(
            f"| {name} | {med:.3f} s | {min(ts):.3f}-{max(ts):.3f} s | "
            f"{frames / med / 1e6:.3f} M | {nbytes * 8 / med / 1e9:.2f} | {med / base:.2f}x |"
        )
    small_frames, _ = frames_and_bytes(tw, a.small)
    ir_replay = callgrind_ir([tw, "replay", "-q", "-o", "/dev/null", "-w", "1", a.small])
    ir_read = callgrind_ir([tw, "read", a.small])
    print(
        f"\nInstructions (callgrind, {a.small}, {small_frames:,} frames, all threads): "
        f"tapwatch replay -w 1 {ir_replay / small_frames:,.0f} per packet; "
        f"tapwatch read {ir_read / small_frames:,.0f} per packet"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, _ in results]
    mpps = [frames / statistics.median(ts) / 1e6 for _, ts in results]
    lo = [frames / max(ts) / 1e6 for _, ts in results]
    hi = [frames / min(ts) / 1e6 for _, ts in results]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.barh(names, mpps, xerr=[[m - l for m, l in zip(mpps, lo)], [h - m for m, h in zip(mpps, hi)]],
            color=["#999999", "#1f77b4", "#1f77b4", "#d62728", "#ff7f0e"])
    ax.set_xscale("log")
    ax.set_xlabel("million packets per second (log scale; median, bars min-max)")
    ax.invert_yaxis()
    for i, m in enumerate(mpps):
        ax.text(m, i, f" {m:.3g}", va="center")
    ax.set_title(f"{os.path.basename(a.file)}: {frames:,} packets, {os.cpu_count()} CPUs")
    fig.tight_layout()
    fig.savefig(a.chart, dpi=100)
    print(f"\nChart: {a.chart}")


if __name__ == "__main__":
    main()
