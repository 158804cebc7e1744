#!/usr/bin/env python3
"""A realistic fleet for benches/realistic-load.sh: N MQTT 3.1.1 clients over TLS that stay
connected (keepalive 90 s), each sending a PINGREQ once a minute and a QoS 0 PUBLISH (64-byte
payload) every PERIOD seconds, both at a random phase, so the fleet makes N / 60 pings and
N / PERIOD publishes a second; plus one subscriber to `fleet/#` that reads every publish (a
backend service). Clients connect at RAMP a second. Every second it writes its counters as one
JSON object to STATUS (replaced atomically): connected, connect_failures, pingreq, pingresp,
published, received, closed (connections the broker closed). Runs until SIGTERM or SIGINT.

usage: fleet-clients.py PORT CAFILE N PERIOD RAMP STATUS
"""
import asyncio
import json
import os
import random
import signal
import ssl
import struct
import sys

port, cafile, n, period, ramp, status = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                                         float(sys.argv[5]), sys.argv[6])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(cafile)
counts = {k: 0 for k in ["connected", "connect_failures", "pingreq", "pingresp", "published", "received", "closed"]}
PAYLOAD = b"x" * 64


def connect_packet(cid, keepalive):
    cid = cid.encode()
    body = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive) + struct.pack(">H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def publish_packet(topic):
    topic = topic.encode()
    body = struct.pack(">H", len(topic)) + topic + PAYLOAD
    return bytes([0x30, len(body)]) + body


async def read_packet(reader):
    """One MQTT packet: (first byte, body)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await reader.readexactly(length)


async def open_client(cid, keepalive):
    for attempt in range(5):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
            writer.write(connect_packet(cid, keepalive))
            await writer.drain()
            first, body = await read_packet(reader)
            if first != 0x20 or body[1] != 0:
                raise RuntimeError(f"CONNACK {first:#x} {body!r}")
            return reader, writer
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            counts["connect_failures"] += 1
            await asyncio.sleep(1 + attempt)
    raise RuntimeError(f"{cid}: could not connect")


async def device(i):
    reader, writer = await open_client(f"fleet-{i}", 90)
    counts["connected"] += 1
    loop = asyncio.get_running_loop()
    next_ping = loop.time() + random.uniform(0, 60)
    next_publish = loop.time() + random.uniform(0, period)

    async def read():
        try:
            while True:
                first, _ = await read_packet(reader)
                if first == 0xD0:
                    counts["pingresp"] += 1
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError):
            counts["closed"] += 1
            counts["connected"] -= 1

    reading = asyncio.create_task(read())
    topic = f"fleet/{i}"
    while not reading.done():
        now = loop.time()
        wake = min(next_ping, next_publish)
        if wake > now:
            await asyncio.sleep(wake - now)
            continue
        if next_publish <= now:
            writer.write(publish_packet(topic))
            counts["published"] += 1
            next_publish += period
        if next_ping <= now:
            writer.write(b"\xc0\x00")
            counts["pingreq"] += 1
            next_ping += 60
        await writer.drain()


async def subscriber():
    reader, writer = await open_client("fleet-backend", 90)
    topic = b"fleet/#"
    body = b"\x00\x01" + struct.pack(">H", len(topic)) + topic + b"\x00"
    writer.write(bytes([0x82, len(body)]) + body)
    await writer.drain()

    async def keepalive():
        while True:
            await asyncio.sleep(60)
            writer.write(b"\xc0\x00")
            await writer.drain()

    asyncio.get_running_loop().create_task(keepalive())
    while True:
        first, _ = await read_packet(reader)
        if first >> 4 == 3:
            counts["received"] += 1


async def report():
    while True:
        tmp = status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(counts, f)
        os.replace(tmp, status)
        await asyncio.sleep(1)


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set_result, None)
    tasks = [loop.create_task(report()), loop.create_task(subscriber())]
    await asyncio.sleep(0.5)
    start = loop.time()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / ramp - loop.time()))
        tasks.append(loop.create_task(device(i)))
        if stop.done():
            break
    await stop
    print(json.dumps(counts))
    os._exit(0)  # ten thousand connections: the kernel closes them faster than asyncio would


asyncio.run(main())
