#!/usr/bin/env python3
"""Client generator for benches/churn.sh: MQTT 3.1.1 clients against a broker on loopback.

Starts RATE clients a second (at most MAX at a time) for SECONDS, each with keepalive 1, 2 or 3 s
and one of four endings, chosen at random: DISCONNECT, FIN without DISCONNECT, RST, or silence
(it stops sending after CONNECT and waits for the broker to close it). Clients that live on
ping every keepalive / 2 and wait for each PINGRESP. When every client has finished, prints what
was done as one JSON object, for comparison with the agent's metrics.

usage: churn-clients.py PORT RATE MAX SECONDS
"""
import asyncio
import json
import random
import socket
import struct
import sys
import time

port, rate, most, seconds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
counts = {k: 0 for k in ["connects", "connacks", "disconnect", "fin", "rst", "silent", "silent_closed_by_broker",
                         "pingreq", "pingresp", "failed", "skipped_at_max"]}
active = 0


async def client(n):
    global active
    active += 1
    keepalive = random.choice([1, 2, 3])
    ending = random.choice(["disconnect", "fin", "rst", "silent"])
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        cid = f"churn-{n}".encode()
        body = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive) + struct.pack(">H", len(cid)) + cid
        writer.write(bytes([0x10, len(body)]) + body)
        await writer.drain()
        counts["connects"] += 1
        if await reader.readexactly(4) != b"\x20\x02\x00\x00":
            raise RuntimeError("CONNACK refused")
        counts["connacks"] += 1
        if ending == "silent":
            counts["silent"] += 1
            if await asyncio.wait_for(reader.read(1), timeout=keepalive * 3 + 5) == b"":
                counts["silent_closed_by_broker"] += 1
            writer.close()
            return
        end = time.monotonic() + random.uniform(1.0, 3.0)
        while time.monotonic() + keepalive / 2 < end:
            await asyncio.sleep(keepalive / 2)
            writer.write(b"\xc0\x00")
            await writer.drain()
            counts["pingreq"] += 1
            if await reader.readexactly(2) == b"\xd0\x00":
                counts["pingresp"] += 1
        if ending == "disconnect":
            writer.write(b"\xe0\x00")
            await writer.drain()
            writer.close()
        elif ending == "fin":
            writer.close()
        else:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        counts[ending] += 1
    except Exception as e:  # counted, and printed once each kind
        counts["failed"] += 1
        print(f"client {n}: {e!r}", file=sys.stderr)
        if writer is not None:
            writer.transport.abort()
    finally:
        active -= 1


async def main():
    tasks = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if active < most:
            tasks.append(asyncio.create_task(client(n)))
        else:
            counts["skipped_at_max"] += 1
        n += 1
    await asyncio.gather(*tasks)
    print(json.dumps(counts))


asyncio.run(main())
