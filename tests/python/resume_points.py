"""A client of the hub-wide stream that loses its connection at planned points.

    resume_points.py ADDRESS COUNT PLAN

PLAN is a comma-separated list of MODE:K, each acted on once message K has been delivered
(K = 0: right after the first #at). Modes:

    c   the client resets its connection, as a failing network would
    k   the client asks the test to kick it (prints `kick K`) and reads on until the hub
        closes the connection
    r   the client resets its connection, and again as soon as its next #resumed arrives,
        while the replay is on its way

Prints one line per event: `connected <local address>`, `message <seq> <payload>`,
`kick <k>`, `resumed ...`, `gap ...`, `noresume ...`, `disconnected ...`, and `done` once
message COUNT has been delivered. The client reconnects and resumes by itself.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

import hubcast_client as hc  # noqa: E402


def main():
    address, count, plan = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    points = {}
    for item in filter(None, plan.split(",")):
        mode, _, k = item.partition(":")
        points[int(k)] = mode
    client = hc.Client(address, timeout=20.0, backoff=0.02)
    again_on_resumed = False
    kicked = False

    def act(k):
        nonlocal again_on_resumed, kicked
        mode = points.pop(k, None)
        if mode == "c":
            client.drop_connection()
        elif mode == "k" and not kicked:
            # (Already kicked, it reads on to the end of that connection: nothing to add.)
            print(f"kick {k}", flush=True)
            kicked = True
        elif mode == "r":
            client.drop_connection()
            again_on_resumed = True

    for event in client:
        if isinstance(event, hc.Connected):
            kicked = False
            print(f"connected {event.local[0]}:{event.local[1]}", flush=True)
            if not event.reconnect:
                act(0)
        elif isinstance(event, hc.Message):
            print(f"message {event.seq} {event.payload.decode()}", flush=True)
            act(event.seq)
            if event.seq == count:
                print("done", flush=True)
                client.close()
                return
        elif isinstance(event, hc.Resumed):
            print(f"resumed {event.stream} {event.first} {event.last}", flush=True)
            if again_on_resumed:
                again_on_resumed = False
                client.drop_connection()
        elif isinstance(event, hc.NoResume):
            print(f"noresume {event.stream} {event.reason} {event.old} {event.new}", flush=True)
        elif isinstance(event, hc.Gap):
            print(f"gap {event.stream} {event.after} {event.got}", flush=True)
        elif isinstance(event, hc.Disconnected):
            print(f"disconnected {event.reason}", flush=True)


if __name__ == "__main__":
    main()
