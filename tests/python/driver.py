"""One hubcast_client.Client, driven line by line from stdin by a test (tests/resume.rs).

Each command runs to completion, prints the events it consumed (one line each, see `show`)
and then `ok`, or `fail <why>` if it raised. Commands:

    connect                     connect (or reconnect) until #at
    until <stream> <seq>        receive until the stream's position reaches seq
    until-event <kind> [<stream>]
                                receive until an event of that kind (of that stream) came
    join <topic> [<n>] | leave <topic>
                                ask (join: with its last n messages), and wait for the answer
    who <topic>                 ask for a presence topic's members, and wait for the answer
    view <topic>                print the client's member set of a presence topic
    send <text>                 send a data message (escaped if it starts with '#')
    drop                        break the connection, as a failing network would
    address <host:port>         connect there from now on
    positions                   print every stream's position
    quit                        close and exit

Options: --address host:port (required), --framing lines|length-prefixed, --auth TEXT,
--rcvbuf BYTES, --timeout SECONDS, --topics a,b, --positions STREAM=EPOCH:SEQ,...
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

import hubcast_client as hc  # noqa: E402


def text(payload):
    return payload.decode("utf-8", "backslashreplace")


# Each stream's position as far as the events shown tell (the client's own positions run
# ahead of the events not yet taken from it).
SHOWN = {}


def member_list(count, names):
    """`all <n> <sorted members>` or `count <n>`."""
    if names is None:
        return f"count {count}"
    return " ".join(["all", str(count)] + sorted(names))


def show(event):
    """One line per event, with a fixed shape per kind."""
    if isinstance(event, (hc.Message, hc.Own, hc.Presence)) and event.seq is not None:
        SHOWN[event.stream] = event.seq
    elif isinstance(event, hc.NoResume):
        SHOWN[event.stream] = event.new[1]
    if isinstance(event, hc.Message):
        seq = "-" if event.seq is None else event.seq
        line = f"message {event.stream} {seq} {text(event.payload)}"
    elif isinstance(event, hc.Own):
        line = f"own {event.stream} {event.seq}"
    elif isinstance(event, hc.Connected):
        line = f"connected {event.epoch} {event.seq} {int(event.reconnect)} {event.local[0]}:{event.local[1]}"
    elif isinstance(event, hc.Disconnected):
        line = f"disconnected {event.reason}"
    elif isinstance(event, hc.Gap):
        line = f"gap {event.stream} {event.after} {event.got}"
    elif isinstance(event, hc.Resumed):
        line = f"resumed {event.stream} {event.epoch} {event.first} {event.last}"
    elif isinstance(event, hc.NoResume):
        old = "- -" if event.old is None else f"{event.old[0]} {event.old[1]}"
        line = f"noresume {event.stream} {event.reason} {old} {event.new[0]} {event.new[1]}"
    elif isinstance(event, hc.Joined):
        line = f"joined {event.stream} {event.epoch} {event.seq}"
    elif isinstance(event, hc.Left):
        line = f"left {event.stream}"
    elif isinstance(event, hc.Refused):
        line = f"refused {event.request} {event.stream} {event.reason}"
    elif isinstance(event, hc.Members):
        line = f"members {event.stream} {event.epoch} {event.seq} {member_list(event.count, event.names)}"
    elif isinstance(event, hc.Presence):
        what = " ".join(event.names) if event.kind in ("join", "leave") else member_list(event.count, event.names if event.kind == "all" else None)
        line = f"presence {event.stream} {event.seq} {event.kind} {what}" if event.kind in ("join", "leave") else f"presence {event.stream} {event.seq} {what}"
    elif isinstance(event, hc.ServerError):
        line = f"error {event.text}"
    else:
        line = f"unknown {event!r}"
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--framing", default="lines")
    parser.add_argument("--auth")
    parser.add_argument("--rcvbuf", type=int)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--topics", default="")
    parser.add_argument("--positions", default="")
    args = parser.parse_args()
    positions = {}
    for item in filter(None, args.positions.split(",")):
        stream, _, at = item.partition("=")
        epoch, _, seq = at.partition(":")
        positions[stream] = (int(epoch), int(seq))
    client = hc.Client(
        args.address,
        framing=args.framing,
        auth=args.auth,
        rcvbuf=args.rcvbuf,
        timeout=args.timeout,
        topics=[t for t in args.topics.split(",") if t],
        positions=positions,
    )

    def drain():
        """Shows the events already received, without waiting."""
        while True:
            try:
                show(client.recv(timeout=0))
            except hc.Timeout:
                return

    def until(done):
        while True:
            event = client.recv()
            show(event)
            if done(event):
                return

    for line in sys.stdin:
        words = line.rstrip("\n").split(" ")
        command, rest = words[0], words[1:]
        try:
            if command == "connect":
                client.connect()
                drain()
            elif command == "until":
                stream, seq = rest[0], int(rest[1])
                while SHOWN.get(stream, -1) < seq:
                    show(client.recv())
            elif command == "until-event":
                kind = rest[0]
                stream = rest[1] if len(rest) > 1 else None
                until(lambda e: type(e).__name__.lower() == kind and (stream is None or getattr(e, "stream", None) == stream))
            elif command == "join":
                show(client.join(rest[0], history=int(rest[1]) if len(rest) > 1 else None))
            elif command == "who":
                show(client.who(rest[0]))
            elif command == "view":
                members = client.members(rest[0])
                if members is None:
                    print(f"view @{rest[0]} none", flush=True)
                else:
                    print(f"view @{rest[0]} {members.position} {member_list(members.count, members.names)}", flush=True)
            elif command == "leave":
                show(client.leave(rest[0]))
            elif command == "send":
                client.send(" ".join(rest))
            elif command == "drop":
                client.drop_connection()
                drain()
            elif command == "address":
                client.address = hc._parse_address(rest[0])
            elif command == "positions":
                items = sorted(client.positions.items())
                print("positions " + " ".join(f"{s}={e}:{q}" for s, (e, q) in items), flush=True)
            elif command == "quit":
                client.close()
                print("ok", flush=True)
                return
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception as err:  # reported to the test, which fails with it
            print(f"fail {type(err).__name__}: {err}", flush=True)
            continue
        print("ok", flush=True)


if __name__ == "__main__":
    main()
