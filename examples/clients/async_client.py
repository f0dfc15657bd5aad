#!/usr/bin/env python3
"""An asynchronous poetry client: fetches a poem from every server at once, in one thread.

    python3 async_client.py 10000 10001 10002

Each address is PORT (on 127.0.0.1) or HOST:PORT. The client connects to every server, then
waits in one place (the `selectors` module: epoll on Linux) for any of the sockets to have
bytes, reads what is there without waiting, and goes back to waiting. It prints a line for
every read, as it happens, then each poem's size and the total time, measured with a
monotonic clock: about the slowest server's time, not the sum. Written for poetry-serve's
docs/teaching.md; it needs nothing beyond Python 3's standard library.
"""

import argparse
import selectors
import socket
import time


def address(text):
    """'10000' or 'host:10000' as (host, port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError("not a port or HOST:PORT: %r" % text)
    return (host or "127.0.0.1", int(port))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("addresses", nargs="+", type=address, metavar="[HOST:]PORT")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per read")
    args = parser.parse_args()
    started = time.monotonic()
    waiting = selectors.DefaultSelector()
    poems = {}
    for task, addr in enumerate(args.addresses, 1):
        sock = socket.create_connection(addr)
        sock.setblocking(False)  # from now on a read returns at once, with what is there
        poems[task] = bytearray()
        waiting.register(sock, selectors.EVENT_READ, (task, "%s:%d" % addr))
    while waiting.get_map():
        for key, _ in waiting.select():  # the one place this client waits
            task, where = key.data
            data = key.fileobj.recv(4096)
            if not data:
                waiting.unregister(key.fileobj)
                key.fileobj.close()
                continue
            poems[task] += data
            if not args.quiet:
                print("Task %d: got %d bytes of poetry from %s" % (task, len(data), where),
                      flush=True)
    for task, poem in poems.items():
        print("Task %d: %d bytes of poetry" % (task, len(poem)))
    print("Got %d poems in %.1f s" % (len(poems), time.monotonic() - started))


if __name__ == "__main__":
    main()
