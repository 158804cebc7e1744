#!/usr/bin/env python3
"""Client generator for benches/churn.sh and benches/tls-churn.sh: MQTT 3.1.1 clients against a
broker on loopback, over plain TCP or TLS.

Starts RATE clients a second (at most MAX at a time) for SECONDS, each with keepalive 1, 2 or 3 s
and one of four endings, chosen at random: DISCONNECT, a close without DISCONNECT (FIN; over TLS
close_notify then FIN), RST (an abort with SO_LINGER 0; over TLS no close_notify), or silence (it
stops sending after CONNECT and waits for the broker to close it). Clients that live on ping
every keepalive / 2 and wait for each PINGRESP: for 1-3 s (the default), or a number of pings
drawn from --pings LO-HI. A client that pinged and then ends with RST aborts the moment it has
read its last PINGRESP (counted as rst_after_pingresp too). A client the broker closes before it
ends (a keepalive overrun when the machine is too loaded to keep time) is counted as
closed_by_broker_early (and a PINGREQ it had sent unanswered then as pingreq_at_broker_close: the
broker may or may not have read it); one that fails before its CONNACK as failed. When every client has finished,
prints what was done as one JSON object, for comparison with an agent's metrics.

usage: churn-clients.py PORT RATE MAX SECONDS [--tls CAFILE] [--keylog FILE] [--pings LO-HI]
  --tls CAFILE   TLS (verifying the broker's certificate for `localhost` against CAFILE)
  --keylog FILE  TLS: every session's secrets appended to FILE (SSLKEYLOGFILE format)
  --pings LO-HI  each client sends a number of PINGREQs drawn from LO..HI (inclusive)
  --endings LIST the endings drawn from (default disconnect,fin,rst,silent; a broker that never
                 closes silent clients, such as amqtt, is driven without `silent`)
  --seed N       the random choices repeat for the same N

The TLS client drives OpenSSL through memory BIOs over a non-blocking socket, so every close is
exactly what it says: close_notify is written and flushed before shutdown(SHUT_WR) sends the FIN,
and an abort sends neither.
"""
import argparse
import asyncio
import json
import random
import socket
import ssl
import struct
import sys
import time

p = argparse.ArgumentParser(description="MQTT churn clients")
p.add_argument("port", type=int)
p.add_argument("rate", type=float)
p.add_argument("most", type=int)
p.add_argument("seconds", type=float)
p.add_argument("--tls")
p.add_argument("--keylog")
p.add_argument("--pings")
p.add_argument("--endings", default="disconnect,fin,rst,silent")
p.add_argument("--seed", type=int)
args = p.parse_args()
if args.seed is not None:
    random.seed(args.seed)
endings = args.endings.split(",")
if not endings or not set(endings) <= {"disconnect", "fin", "rst", "silent"}:
    sys.exit(f"--endings: a list of disconnect, fin, rst, silent: {args.endings}")
pings_range = tuple(int(x) for x in args.pings.split("-")) if args.pings else None
context = None
if args.tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(args.tls)
    if args.keylog:
        context.keylog_filename = args.keylog
counts = {k: 0 for k in ["connects", "connacks", "disconnect", "fin", "rst", "rst_after_pingresp", "silent",
                         "silent_closed_by_broker", "closed_by_broker_early", "pingreq_at_broker_close", "pingreq", "pingresp", "failed", "skipped_at_max"]}
active = 0


class Closed(Exception):
    """The broker closed the connection."""


class Plain:
    """MQTT over plain TCP (asyncio streams)."""

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", args.port)

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def recv_exactly(self, n):
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise Closed()

    async def wait_close(self):
        """Reads until the broker closes; returns whether it did (not data)."""
        return await self.reader.read(1) == b""

    async def close(self):
        self.writer.close()

    def abort(self):
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def finish(self):
        self.writer.close()

    def drop(self):
        if hasattr(self, "writer"):
            self.writer.transport.abort()


class Tls:
    """MQTT over TLS: OpenSSL through memory BIOs, the socket written and read here."""

    async def open(self):
        self.loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self.loop.sock_connect(self.sock, ("127.0.0.1", args.port))
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.buffer = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                await self.fill()
        await self.flush()

    async def flush(self):
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def fill(self):
        data = await self.loop.sock_recv(self.sock, 65536)
        if not data:
            raise Closed()
        self.incoming.write(data)

    async def send(self, data):
        self.tls.write(data)
        await self.flush()

    async def recv_exactly(self, n):
        while len(self.buffer) < n:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                await self.fill()
                continue
            except ssl.SSLZeroReturnError:  # close_notify
                raise Closed()
            if not data:  # close_notify (Python returns b"" for it)
                raise Closed()
            self.buffer += data
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def wait_close(self):
        try:
            await self.recv_exactly(len(self.buffer) + 1)
            return False
        except (Closed, ConnectionError):
            return True

    async def close(self):
        """close_notify, then FIN; waits (up to 5 s) for the broker's end before closing."""
        try:
            self.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        await self.flush()
        try:
            self.sock.shutdown(socket.SHUT_WR)
            while await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), 5):
                pass
        except (asyncio.TimeoutError, OSError):  # OSError: the broker had closed first
            pass
        self.sock.close()

    def abort(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def finish(self):
        self.sock.close()

    def drop(self):
        if hasattr(self, "sock"):
            self.abort()


async def client(n):
    global active
    active += 1
    keepalive = random.choice([1, 2, 3])
    ending = random.choice(endings)
    pings = random.randint(*pings_range) if pings_range else None
    duration = random.uniform(1.0, 3.0)
    conn = Tls() if context else Plain()
    connacked = awaiting_pingresp = False
    try:
        await conn.open()
        cid = f"churn-{n}".encode()
        body = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", keepalive) + struct.pack(">H", len(cid)) + cid
        await conn.send(bytes([0x10, len(body)]) + body)
        counts["connects"] += 1
        if await conn.recv_exactly(4) != b"\x20\x02\x00\x00":
            raise RuntimeError("CONNACK refused")
        counts["connacks"] += 1
        connacked = True
        if ending == "silent":
            counts["silent"] += 1
            if await asyncio.wait_for(conn.wait_close(), timeout=keepalive * 3 + 5):
                counts["silent_closed_by_broker"] += 1
            conn.finish()
            return
        end = time.monotonic() + duration
        sent = 0
        while (sent < pings) if pings is not None else (time.monotonic() + keepalive / 2 < end):
            await asyncio.sleep(keepalive / 2)
            await conn.send(b"\xc0\x00")
            counts["pingreq"] += 1
            sent += 1
            awaiting_pingresp = True
            if await conn.recv_exactly(2) == b"\xd0\x00":
                counts["pingresp"] += 1
            awaiting_pingresp = False
        if ending == "disconnect":
            await conn.send(b"\xe0\x00")
            await conn.close()
        elif ending == "fin":
            await conn.close()
        else:
            conn.abort()
            if sent:
                counts["rst_after_pingresp"] += 1
        counts[ending] += 1
    except (Closed, ConnectionError) as e:
        if connacked:  # the broker closed it first (a keepalive overrun of a client slowed by load)
            counts["closed_by_broker_early"] += 1
            if awaiting_pingresp:  # sent as the broker closed: it may never have read it
                counts["pingreq_at_broker_close"] += 1
        else:
            counts["failed"] += 1
        print(f"client {n}: {e!r}", file=sys.stderr)
        conn.drop()
    except Exception as e:  # counted, and printed once each kind
        counts["failed"] += 1
        print(f"client {n}: {e!r}", file=sys.stderr)
        conn.drop()
    finally:
        active -= 1


async def main():
    tasks = []
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < args.seconds:
        due = start + n / args.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if active < args.most:
            tasks.append(asyncio.create_task(client(n)))
        else:
            counts["skipped_at_max"] += 1
        n += 1
    await asyncio.gather(*tasks)
    print(json.dumps(counts))


asyncio.run(main())
