"""The tutorial's poetry server on Twisted (twisted-intro's twisted-server-1/fastpoetry.py), as a
peer for poetry-serve's connection-rate benchmark: on each connection, write the whole poem and
lose the connection (Twisted closes once the write has gone out).

The poem is read once, as bytes; the listen backlog is 4096, as poetry-serve's.

    /usr/bin/python3 benches/peers/fastpoetry.py --port 10000 POEM
"""

import argparse

from twisted.internet import reactor
from twisted.internet.protocol import Protocol, ServerFactory


class PoetryProtocol(Protocol):
    def connectionMade(self):
        self.transport.write(self.factory.poem)
        self.transport.loseConnection()


class PoetryFactory(ServerFactory):
    protocol = PoetryProtocol

    def __init__(self, poem):
        self.poem = poem


def main():
    parser = argparse.ArgumentParser(description="The Fast Poetry Server, Twisted edition.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--iface", default="127.0.0.1")
    parser.add_argument("poem")
    args = parser.parse_args()

    with open(args.poem, "rb") as f:
        poem = f.read()
    port = reactor.listenTCP(args.port, PoetryFactory(poem), backlog=4096, interface=args.iface)
    print("Serving %s on %s." % (args.poem, port.getHost()), flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
