#!/usr/bin/env python3
"""False positives of the single-point forged-RST signs (`suspect_rst`).

Replays every capture shipped in the repository, and a synthetic mix made by
`tapwatch synth`, one point at a time, and counts the session ends with an RST
(once per end that sent one) and the `suspect_rst` entries by confidence. Prints
the medium and high ones of the real captures, to be explained one by one
(docs/verdicts.md, "One point: suspect resets").

Usage: scripts/suspect-rst-fp.py   (from the repository root, after cargo build --release)
"""
import collections, glob, json, os, subprocess

BIN = "target/release/tapwatch"
os.makedirs("bench-data", exist_ok=True)
synth = "bench-data/synth-1000000.pcap"
if not os.path.exists(synth):
    subprocess.run([BIN, "synth", "--packets", "1000000", "--concurrent", "20000",
                    "--seed", "1", "-o", synth], check=True)
groups = {
    "ours (tests/captures, tests/captures/tls: direct, no middlebox)":
        sorted(glob.glob("tests/captures/*.pcap*") + glob.glob("tests/captures/tls/*.pcap")),
    "corpus (tests/corpus: zeek, suricata-verify, arkime)":
        sorted(glob.glob("tests/corpus/*/*.pcap*")),
    "synthetic mix (tapwatch synth, 1M packets, seed 1)": [synth],
}
for group, files in groups.items():
    ends, by = 0, collections.Counter()
    shown = []
    for f in files:
        out = subprocess.run([BIN, "replay", "-q", "--no-progress", f],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            r = json.loads(line)
            senders = {who for p in r["points"].values() for who in p["rst"]}
            ends += len(senders)
            for s in r["suspect_rst"]:
                by[s["confidence"]] += 1
                if s["confidence"] != "low" and f != synth:
                    shown.append((f, r["client"]["port"], s["from"], s["confidence"], s["signs"]))
    print(f"{group}: {len(files)} files, {ends} session ends with an RST; "
          f"suspect: high {by['high']}, medium {by['medium']}, low {by['low']}")
    for x in shown:
        print("   ", x)
