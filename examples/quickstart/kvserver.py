"""A tiny Redis-protocol (RESP) key-value server: PING, GET, SET, INCR. Stdlib only."""

import argparse
import asyncio

store: dict[bytes, bytes] = {}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"*"):
            args = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                args.append((await reader.readexactly(size + 2))[:-2])
        else:
            args = line.split()
        if not args:
            continue
        cmd = args[0].upper()
        if cmd == b"PING":
            writer.write(b"+PONG\r\n")
        elif cmd == b"SET" and len(args) == 3:
            store[args[1]] = args[2]
            writer.write(b"+OK\r\n")
        elif cmd == b"GET" and len(args) == 2:
            value = store.get(args[1])
            writer.write(b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value))
        elif cmd == b"INCR" and len(args) == 2:
            value = int(store.get(args[1], b"0")) + 1
            store[args[1]] = str(value).encode()
            writer.write(b":%d\r\n" % value)
        else:
            writer.write(b"-ERR unknown command\r\n")
        await writer.drain()
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=6390)
    port = parser.parse_args().port
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"kvserver ready on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
