#!/usr/bin/env python3
"""A TCP proxy that limits each connection's client->upstream byte rate (bench/distributed.sh).

    bench/throttle_proxy.py --upstream 127.0.0.1:PORT [--rate-kib 512] [--port 0]

Listens on 127.0.0.1 (port 0: a free one), prints `listening on PORT` on stdout, and forwards
every accepted connection to the upstream. Data from the client to the upstream goes through a
token bucket of its own per connection (R KiB/s, a burst of one 16 KiB read), so N connections
carry at most N x R; data from the upstream back to the client is not limited. Standard library
only; SIGTERM or SIGINT ends it. The bucket sleeps until the tokens are there (no busy loop).
"""

import argparse
import asyncio
import signal
import sys

CHUNK = 16 * 1024


async def pump(reader, writer, rate):
    """Copies reader to writer until EOF; `rate` bytes/s, or None for no limit."""
    loop = asyncio.get_running_loop()
    tokens = float(CHUNK)
    last = loop.time()
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if rate:
                now = loop.time()
                tokens = min(float(CHUNK), tokens + (now - last) * rate) - len(data)
                last = now
                if tokens < 0:
                    await asyncio.sleep(-tokens / rate)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def handle(client_r, client_w, upstream, rate):
    host, port = upstream
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(
            pump(client_r, up_w, rate),
            pump(up_r, client_w, None),
        )
    finally:
        for w in (up_w, client_w):
            w.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    p.add_argument("--rate-kib", type=float, default=512,
                   help="client->upstream KiB/s per connection (0: no limit)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    a = p.parse_args()
    host, _, port = a.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))
    rate = a.rate_kib * 1024 if a.rate_kib > 0 else None

    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, rate), "127.0.0.1", a.port)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
