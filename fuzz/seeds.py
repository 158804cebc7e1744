#!/usr/bin/env python3
"""Builds the seed corpora of the TLS and WebSocket fuzz targets from the real fixtures.

Usage (from the repository root or from fuzz/):  python3 fuzz/seeds.py [OUT_DIR]
OUT_DIR defaults to fuzz/corpus (git-ignored); each target gets OUT_DIR/<target>/.

Needs tshark (it reads the captures: TCP segments in order, per connection and side). What it
writes, per target (the input formats are documented at the top of each fuzz target):

- tls_record, tls_handshake: one side's TLS stream (all of it / the plaintext handshake-record
  fragments), after a chunk plan.
- tls_keylog: the key log files as they are.
- tls_layer, ws_layer: both sides' segments of a connection, as captured (gaps where TCP
  sequence numbers skip), after a mode byte.
- ws_frame: one side's frames after the HTTP head (first 4 KiB), after a side byte.
- ws_upgrade: the request and the answer heads, after a side byte.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# Chunk plans used for the one-sided seeds: whole, and split at odd sizes.
PLANS = [b"", bytes([6, 199, 0, 40])]


def segments(pcap):
    """Per TCP connection, its segments in order: (side, "data", bytes) or (side, "gap", n) where
    sequence numbers skip; side 0 = the client (the sender of the first packet seen);
    retransmitted bytes dropped."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "fields", "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src",
         "-e", "tcp.srcport", "-e", "tcp.seq", "-e", "tcp.len", "-e", "tcp.payload", "-e", "tcp.flags.syn",
         "-o", "tcp.relative_sequence_numbers:TRUE", "-o", "tcp.analyze_sequence_numbers:TRUE",
         "-o", "tcp.desegment_tcp_streams:FALSE", "-Y", "tcp"],
        check=True, capture_output=True, text=True).stdout
    conns = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 8 or not f[0]:
            continue
        stream, src4, src6, port, seq, length, payload, syn = f[:8]
        who = (src4 or src6, port)
        c = conns.setdefault(stream, {"client": who, "next": {}, "segs": []})
        side = 0 if who == c["client"] else 1
        seq, length = int(seq), int(length or 0)
        if syn == "1" or syn == "True":
            c["next"][side] = seq + 1
            continue
        if length == 0:
            continue
        data = bytes.fromhex(payload.replace(":", ""))
        nxt = c["next"].get(side)
        if nxt is not None:
            if seq + length <= nxt:
                continue  # retransmission
            if seq < nxt:
                data = data[nxt - seq:]
                seq = nxt
            elif seq > nxt:
                c["segs"].append((side, "gap", seq - nxt))
        c["segs"].append((side, "data", data))
        c["next"][side] = seq + len(data)
    return [c["segs"] for c in conns.values() if c["segs"]]


def side_stream(segs, side):
    """One side's bytes up to its first gap."""
    out = bytearray()
    for s, kind, v in segs:
        if s != side:
            continue
        if kind == "gap":
            break
        out += v
    return bytes(out)


def two_sided(mode, segs, limit=1 << 16):
    """The tls_layer / ws_layer format: mode byte, then [tag][len u16 BE][bytes] per segment;
    tag bit 0 = broker side, bit 1 = a gap of len bytes."""
    out = bytearray([mode])
    for side, kind, v in segs:
        if kind == "gap":
            out += bytes([side | 2]) + min(v, 0xFFFF).to_bytes(2, "big")
        else:
            for i in range(0, len(v), 0xFFFF):
                piece = v[i:i + 0xFFFF]
                out += bytes([side]) + len(piece).to_bytes(2, "big") + piece
        if len(out) > limit:
            break
    return bytes(out)


def plaintext_handshake(stream):
    """Fragments of the handshake records (type 22) before the first ChangeCipherSpec or
    application-data record: the handshake messages sent in the clear."""
    out = bytearray()
    at = 0
    while at + 5 <= len(stream):
        ctype, n = stream[at], int.from_bytes(stream[at + 3:at + 5], "big")
        frag = stream[at + 5:at + 5 + n]
        if ctype != 22:
            break
        out += frag
        at += 5 + n
    return bytes(out)


def http_head(stream):
    end = stream.find(b"\r\n\r\n")
    return (stream[:end + 4], stream[end + 4:]) if end >= 0 else (b"", stream)


class Writer:
    def __init__(self, root):
        self.root = Path(root)
        self.counts = {}

    def put(self, target, name, data):
        d = self.root / target
        d.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha1(data).hexdigest()[:8]
        (d / f"{name}-{tag}").write_bytes(data)
        self.counts[target] = self.counts.get(target, 0) + 1


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fuzz" / "corpus"
    w = Writer(out)
    tls = sorted((FIXTURES / "tls").glob("*.pcap")) + sorted((FIXTURES / "ws").glob("wss*.pcap"))
    ws = [p for p in sorted((FIXTURES / "ws").glob("*.pcap")) if not p.name.startswith("wss")]
    for pcap in tls:
        keys = pcap.with_suffix(".keys")
        if keys.exists():
            w.put("tls_keylog", pcap.stem, keys.read_bytes())
        for i, segs in enumerate(segments(pcap)):
            name = f"{pcap.stem}-{i}"
            # Mode 0: the TLS layer with the key logs; mode 1: the whole detecting stack (wss too).
            w.put("tls_layer", name, two_sided(0, segs))
            w.put("tls_layer", name + "-stack", two_sided(1, segs))
            for side in (0, 1):
                stream = side_stream(segs, side)
                hs = plaintext_handshake(stream)
                for plan in PLANS:
                    w.put("tls_record", f"{name}-{side}", bytes([len(plan)]) + plan + stream[:1 << 16])
                    if hs:
                        w.put("tls_handshake", f"{name}-{side}", bytes([len(plan)]) + plan + hs)
    for pcap in ws:
        for i, segs in enumerate(segments(pcap)):
            name = f"{pcap.stem}-{i}"
            w.put("ws_layer", name, two_sided(0, segs))
            w.put("tls_layer", name + "-stack", two_sided(1, segs))
            for side in (0, 1):
                head, frames = http_head(side_stream(segs, side))
                from_client = 1 if side == 0 else 0
                if head:
                    w.put("ws_upgrade", f"{name}-{side}", bytes([from_client]) + head + frames[:64])
                if frames:
                    w.put("ws_frame", f"{name}-{side}", bytes([from_client]) + frames[:4096])
                    # Joined mid-stream: the same side's frames from a few bytes in.
                    w.put("ws_layer", f"{name}-{side}-mid",
                          two_sided(1, [(side, "data", frames[3:4096])]))
    for target, n in sorted(w.counts.items()):
        print(f"{target}: {n} seeds in {out / target}")


if __name__ == "__main__":
    main()
