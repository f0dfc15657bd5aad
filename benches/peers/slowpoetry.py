"""The tutorial's blocking Slow Poetry Server (twisted-intro's blocking-server/slowpoetry.py),
as a peer for poetry-serve's connection-rate benchmark.

The same loop: accept a client, open the poem, send it NUM_BYTES at a time with sendall and a
sleep of DELAY after each piece, close, print a line per client and per piece; then the next
client. Two changes, both to be fair to it on a benchmark: the listen backlog is 4096 (as
poetry-serve's) instead of 5, so that a burst of connects waits in the queue instead of in SYN
retries, and the file is read as bytes, so any poem goes out byte for byte.

    python3 benches/peers/slowpoetry.py --port 10000 --num-bytes 1500 --delay 0 POEM
"""

import argparse
import socket
import sys
import time


def send_poetry(sock, poetry_file, num_bytes, delay):
    """Sends the poem slowly down the socket, then closes it."""
    with open(poetry_file, "rb") as inputf:
        while True:
            piece = inputf.read(num_bytes)
            if not piece:
                sock.close()
                return
            print("Sending %d bytes" % len(piece))
            try:
                sock.sendall(piece)  # a blocking call
            except OSError:
                sock.close()
                return
            time.sleep(delay)


def serve(listen_socket, poetry_file, num_bytes, delay):
    while True:
        sock, addr = listen_socket.accept()
        print("Somebody at %s wants poetry!" % (addr,))
        send_poetry(sock, poetry_file, num_bytes, delay)


def main():
    parser = argparse.ArgumentParser(description="The Slow Poetry Server, blocking edition.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--iface", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.7)
    parser.add_argument("--num-bytes", type=int, default=10)
    parser.add_argument("poem")
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.iface, args.port))
    sock.listen(4096)
    print("Serving %s on port %s." % (args.poem, sock.getsockname()[1]), flush=True)
    try:
        serve(sock, args.poem, args.num_bytes, args.delay)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
