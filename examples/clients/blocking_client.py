#!/usr/bin/env python3
"""A blocking poetry client: fetches a poem from each server in turn.

    python3 blocking_client.py 10000 10001 10002

Each address is PORT (on 127.0.0.1) or HOST:PORT. The client connects to the first server,
reads until that server closes the connection, then goes on to the next: while it waits for
one slow server, it does nothing else. So the whole run takes the sum of the servers' times.
It prints when each task starts and ends, then the total, measured with a monotonic clock.
Written for poetry-serve's docs/teaching.md; it needs nothing beyond Python 3's standard
library.
"""

import argparse
import socket
import time


def address(text):
    """'10000' or 'host:10000' as (host, port)."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError("not a port or HOST:PORT: %r" % text)
    return (host or "127.0.0.1", int(port))


def fetch(addr):
    """Every byte the server at `addr` sends, until it closes the connection."""
    poem = bytearray()
    with socket.create_connection(addr) as sock:
        while True:
            data = sock.recv(4096)  # blocks until bytes come, or the end
            if not data:
                return bytes(poem)
            poem += data


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("addresses", nargs="+", type=address, metavar="[HOST:]PORT")
    addresses = parser.parse_args().addresses
    started = time.monotonic()
    for task, addr in enumerate(addresses, 1):
        where = "%s:%d" % addr
        print("Task %d: get poetry from: %s" % (task, where), flush=True)
        began = time.monotonic()
        poem = fetch(addr)
        took = time.monotonic() - began
        print("Task %d: got %d bytes of poetry from %s in %.1f s" % (task, len(poem), where, took),
              flush=True)
    print("Got %d poems in %.1f s" % (len(addresses), time.monotonic() - started))


if __name__ == "__main__":
    main()
