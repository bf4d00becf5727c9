"""Many clients in one process: each a hubcast_client.Session over its own non-blocking
socket, all served by one selectors loop. They drop their connections together, at the
same message, and come back together: a reconnect storm.

    storm.py ADDRESS NAME CLIENTS DROP_AT REPORT DEADLINE

Each client follows the hub-wide stream, whose message k reads `m<k>`, until the message
`end`. Once it has delivered message DROP_AT it resets its connection (the others do so in
the same instant, as they get the same messages) and connects again at once, resuming.
Every REPORT messages it tells the host how far it is by sending `progress NAME-I SEQ`.

Prints `ready` once every client has had its #at, `resumed` once every client's resume of
`*` after the drop has been answered, then `result OK BAD SECONDS` and a line per client
that did not get the whole stream exactly once, in order. Gives up after DEADLINE seconds.
"""

import os
import selectors
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

import hubcast_client as hc  # noqa: E402

RESET = struct.pack("ii", 1, 0)


class Conn:
    __slots__ = ("name", "session", "framer", "sock", "out", "last", "bad", "dropped", "resumed", "done", "reported")

    def __init__(self, name):
        self.name = name
        self.session = hc.Session()
        self.framer = hc.LineFramer()
        self.sock = None
        self.out = b""
        self.last = 0
        self.bad = None
        self.dropped = False
        self.resumed = False
        self.done = False
        self.reported = 0


def main():
    address = hc._parse_address(sys.argv[1])
    name, count, drop_at, report, deadline = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    started = time.monotonic()
    ends = started + deadline
    selector = selectors.DefaultSelector()
    conns = [Conn(f"{name}-{i}") for i in range(count)]

    def connect(conn):
        sock = socket.create_connection(address, timeout=max(0.1, ends - time.monotonic()))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        conn.sock, conn.out = sock, b""
        conn.framer.reset()
        conn.session.connection_made()
        selector.register(sock, selectors.EVENT_READ, conn)

    def reset(conn):
        selector.unregister(conn.sock)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        conn.sock.close()
        conn.sock = None
        conn.session.connection_lost()

    def send(conn, payloads):
        conn.out += b"".join(conn.framer.encode(p) for p in payloads)
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        conn.out = conn.out[sent:]
        selector.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0), conn)

    def fail(conn, why):
        if conn.bad is None:
            conn.bad = why

    def take(conn, payload):
        """One frame; returns whether the connection was dropped after it."""
        for event in conn.session.receive(payload):
            if isinstance(event, hc.Message) and event.stream == hc.HUB:
                if event.seq != conn.last + 1:
                    fail(conn, f"message {event.seq} after {conn.last}")
                conn.last = event.seq
                if event.payload == b"end":
                    conn.done = True
                elif event.payload != b"m%d" % event.seq:
                    fail(conn, f"message {event.seq} reads {event.payload!r}")
                if event.seq - conn.reported >= report:
                    conn.reported = event.seq
                    send(conn, [hc.Session.encode_data(f"progress {conn.name} {event.seq}")])
                if event.seq == drop_at and not conn.dropped:
                    conn.dropped = True
                    return True
            elif isinstance(event, hc.Resumed) and event.stream == hc.HUB:
                conn.resumed = True
            elif isinstance(event, (hc.NoResume, hc.Message, hc.ServerError, hc.Unknown)):
                fail(conn, repr(event))
        out = conn.session.data_to_send()
        if out:
            send(conn, out)
        return False

    for conn in conns:
        connect(conn)
    ready = said_resumed = False
    while time.monotonic() < ends:
        if not ready and all(c.session.is_live for c in conns):
            print("ready", flush=True)
            ready = True
        if not said_resumed and all(c.resumed for c in conns):
            print("resumed", flush=True)
            said_resumed = True
        if all(c.done or c.bad for c in conns):
            break
        for key, mask in selector.select(timeout=0.5):
            conn = key.data
            if mask & selectors.EVENT_WRITE and conn.out:
                send(conn, [])
            if not mask & selectors.EVENT_READ:
                continue
            try:
                data = conn.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                data, why = b"", str(err)
            else:
                why = "the hub closed the connection"
            if not data:
                fail(conn, why)
                reset(conn)
                continue
            for payload in conn.framer.feed(data):
                if take(conn, payload):
                    # The rest of what was read is lost with the connection, as it would be
                    # on a network that failed: the resume brings it back.
                    reset(conn)
                    connect(conn)
                    break
    bad = [c for c in conns if c.bad or not c.done]
    print(f"result {count - len(bad)} {len(bad)} {time.monotonic() - started:.1f}", flush=True)
    for conn in bad:
        print(f"bad {conn.name} at {conn.last}: {conn.bad or 'unfinished'}", flush=True)


if __name__ == "__main__":
    main()
