"""Unit tests of hubcast_client: the Session fed messages by hand (including ones a real hub
sends only in rare conditions), the framers, and the Client's timeouts against sockets of
this process. Run by tests/resume.rs, or alone: python3 -m unittest tests/python/test_client.py
"""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

import hubcast_client as hc  # noqa: E402

E = 77


def session(*payloads, **kwargs):
    """A session greeted with `#at * 77 0`, then fed `payloads`; returns it and the events."""
    s = hc.Session(**kwargs)
    s.connection_made()
    events = s.receive(b"#at * 77 0")
    for p in payloads:
        events += s.receive(p)
    return s, events


def delivered(events, stream="*"):
    return [(e.seq, e.payload) for e in events if isinstance(e, hc.Message) and e.stream == stream]


class Framers(unittest.TestCase):
    def test_lines(self):
        f = hc.LineFramer(max_frame=8)
        self.assertEqual(f.feed(b"1 a\r\n2 b\n3"), [b"1 a", b"2 b"])
        self.assertEqual(f.feed(b" c\n"), [b"3 c"])
        self.assertEqual(f.encode(b"x"), b"x\n")
        with self.assertRaises(ValueError):
            f.encode(b"a\nb")
        with self.assertRaises(hc.ProtocolError):
            f.feed(b"123456789")

    def test_length_prefixed(self):
        f = hc.LengthPrefixedFramer(max_frame=8)
        wire = f.encode(b"1 a") + f.encode(b"") + f.encode(b"2 b\nc")
        self.assertEqual(f.feed(wire[:5]), [])
        self.assertEqual(f.feed(wire[5:]), [b"1 a", b"", b"2 b\nc"])
        with self.assertRaises(hc.ProtocolError):
            f.feed(b"\x00\x00\x00\x09")

    def test_escaping(self):
        self.assertEqual(hc.Session.encode_data("#x"), b"##x")
        self.assertEqual(hc.Session.encode_data(b"x#"), b"x#")
        self.assertEqual(hc.Session.encode_data(""), b"")


class Streams(unittest.TestCase):
    def test_messages_in_order_duplicates_dropped(self):
        s, events = session(b"1 a", b"2 b", b"2 b", b"1@t x", b"- direct")
        self.assertEqual(delivered(events), [(1, b"a"), (2, b"b")])
        self.assertEqual(delivered(events, "@t"), [(1, b"x")])
        self.assertEqual(delivered(events, "-"), [(None, b"direct")])
        self.assertEqual(s.positions["*"], (E, 2))
        self.assertNotIn("@t", s.positions, "no epoch without #joined: never resumed")

    def test_a_gap_is_repaired_with_next_and_held_messages_follow(self):
        s, events = session(b"1 a", b"4 d", b"5 e")
        self.assertEqual(delivered(events), [(1, b"a")])
        self.assertIn(hc.Gap("*", 1, 4), events)
        self.assertEqual(s.data_to_send(), [b"#resume * 77 1 4"])
        events = s.receive(b"#resumed * 77 2 3") + s.receive(b"2 b") + s.receive(b"3 c") + s.receive(b"6 f")
        self.assertEqual(delivered(events), [(2, b"b"), (3, b"c"), (4, b"d"), (5, b"e"), (6, b"f")])

    def test_own_markers_move_the_position_even_while_held(self):
        s, events = session(b"1 a", b"#own * 2", b"3 c")
        self.assertEqual(delivered(events), [(1, b"a"), (3, b"c")])
        self.assertIn(hc.Own("*", 2), events)
        s.connection_lost()
        s.connection_made()
        events = s.receive(b"#at * 77 5") + s.receive(b"#own * 6") + s.receive(b"#resumed * 77 4 5")
        self.assertEqual(s.data_to_send(), [b"#resume * 77 3"])
        events += s.receive(b"4 d") + s.receive(b"#own * 5") + s.receive(b"7 g")
        self.assertEqual(delivered(events), [(4, b"d"), (7, b"g")])
        self.assertEqual([e.seq for e in events if isinstance(e, hc.Own)], [5, 6])

    def test_a_reconnect_holds_live_messages_until_resumed(self):
        s, _ = session(b"1 a")
        s.connection_lost()
        s.connection_made()
        events = s.receive(b"#at * 77 3") + s.receive(b"4 d")
        self.assertEqual(delivered(events), [], "held until #resumed")
        self.assertEqual(s.data_to_send(), [b"#resume * 77 1"])
        events = s.receive(b"#resumed * 77 2 3") + s.receive(b"2 b") + s.receive(b"3 c")
        self.assertEqual(delivered(events), [(2, b"b"), (3, b"c"), (4, b"d")])

    def test_noresume_goes_on_from_the_new_position(self):
        s, _ = session(b"1 a")
        s.connection_lost()
        s.connection_made()
        events = s.receive(b"#at * 77 9") + s.receive(b"10 j") + s.receive(b"#noresume * old 77 10")
        events += s.receive(b"11 k")
        self.assertIn(hc.NoResume("*", "old", (E, 1), (E, 10)), events)
        self.assertEqual(delivered(events), [(11, b"k")], "10 is in the state to refetch")

    def test_much_is_asked_again_then_taken_as_a_refusal(self):
        s, _ = session(b"1 a")
        s.connection_lost()
        s.connection_made()
        events = s.receive(b"#at * 77 9") + s.receive(b"10 j")
        self.assertEqual(s.data_to_send(), [b"#resume * 77 1"])
        # Asked again, the live messages still held; then the replay fits.
        events += s.receive(b"#noresume * much 77 10")
        self.assertEqual(s.data_to_send(), [b"#resume * 77 1"])
        events += s.receive(b"#resumed * 77 2 9")
        for i in range(2, 10):
            events += s.receive(b"%d m" % i)
        self.assertFalse([e for e in events if isinstance(e, hc.NoResume)])
        self.assertEqual([seq for seq, _ in delivered(events)], list(range(2, 11)))
        # A gap repair asked again keeps its <next>; a replay that never fits is refused.
        events = s.receive(b"13 m")
        for _ in range(hc._MAX_MUCH + 1):
            self.assertEqual(s.data_to_send(), [b"#resume * 77 10 13"])
            events += s.receive(b"#noresume * much 77 13")
        self.assertEqual(s.data_to_send(), [])
        self.assertIn(hc.NoResume("*", "much", (E, 10), (E, 13)), events)
        events += s.receive(b"14 n")
        self.assertEqual(delivered(events), [(14, b"n")], "13 is in the state to refetch")

    def test_a_hub_that_leaves_a_gap_unfilled_is_not_asked_for_ever(self):
        s, events = session(b"1 a", b"5 e")
        for _ in range(hc._MAX_FRUITLESS - 1):
            events += s.receive(b"#resumed * 77 2 1")
        events += s.receive(b"#resumed * 77 2 1")
        self.assertEqual(len([e for e in events if isinstance(e, hc.Gap)]), hc._MAX_FRUITLESS)
        self.assertIn(hc.NoResume("*", "gap", (E, 1), (E, 4)), events)
        self.assertEqual(delivered(events), [(1, b"a"), (5, b"e")])


class Topics(unittest.TestCase):
    def test_join_leave_and_refusals(self):
        s, events = session()
        s.join("room")
        s.join("@other")
        self.assertEqual(s.data_to_send(), [b"#join @room", b"#join @other"])
        events = s.receive(b"#joined @room 5 2") + s.receive(b"3@room x") + s.receive(b"#refused join @other denied")
        self.assertEqual(delivered(events, "@room"), [(3, b"x")])
        self.assertIn(hc.Refused("join", "@other", "denied"), events)
        self.assertEqual(s.topics, ["@room"])
        events = s.receive(b"#left @room")
        self.assertEqual(s.topics, [])
        for bad in ["a b", "a\u00a0b", "a\u0085", "a\u009b", ""]:
            with self.assertRaises(ValueError):
                s.join(bad)
        # Names as the hub takes them: a format character, punctuation, '@' and '#'.
        for good in ["a\u200bb", "*", "a@b", "#x"]:
            s.join(good)

    def test_a_resume_that_joins_gets_its_position_from_the_answer(self):
        s, _ = session(b"#joined @t 5 0", b"1@t a")
        s.connection_lost()
        s.connection_made()
        s.receive(b"#at * 77 0")
        self.assertEqual(s.data_to_send(), [b"#resume @t 5 1"])
        events = s.receive(b"#joined @t 5 3") + s.receive(b"#resumed @t 5 2 3")
        events += s.receive(b"2@t b") + s.receive(b"3@t c") + s.receive(b"4@t d")
        self.assertEqual(delivered(events, "@t"), [(2, b"b"), (3, b"c"), (4, b"d")])

    def test_joined_ahead_or_in_a_new_epoch(self):
        s, _ = session(b"#joined @t 5 0", b"1@t a")
        events = s.receive(b"#joined @t 5 4")
        self.assertIn(hc.Gap("@t", 1, 5), events)
        self.assertEqual(s.data_to_send(), [b"#resume @t 5 1 5"])
        s.receive(b"#resumed @t 5 2 4")
        events = s.receive(b"#joined @t 6 0")
        self.assertIn(hc.NoResume("@t", "epoch", (5, 1), (6, 0)), events)

    def test_member_refusal_stops_following_the_topic(self):
        s, _ = session(positions={"*": (E, 0), "@t": (5, 3)})
        self.assertEqual(s.data_to_send(), [b"#resume @t 5 3"])
        events = s.receive(b"#refused join @t off") + s.receive(b"#noresume @t member 0 0")
        self.assertIn(hc.NoResume("@t", "member", (5, 3), (0, 0)), events)
        self.assertEqual(s.topics, [])

    def test_publish_refusals_are_surfaced_and_change_nothing(self):
        s, _ = session(b"#joined @news 5 0")
        events = s.receive(b"#refused publish @news denied") + s.receive(b"#refused publish * denied")
        self.assertEqual(
            [e for e in events if isinstance(e, hc.Refused)],
            [hc.Refused("publish", "@news", "denied"), hc.Refused("publish", "*", "denied")],
        )
        self.assertEqual(s.topics, ["@news"])
        self.assertEqual(s.data_to_send(), [], "nothing is resent")
        self.assertEqual(delivered(s.receive(b"1@news x"), "@news"), [(1, b"x")])

    def test_denied_history_is_not_asked_again_and_the_topic_is_followed_live(self):
        s, _ = session(positions={"*": (E, 0), "@news": (5, 3)})
        self.assertEqual(s.data_to_send(), [b"#resume @news 5 3"])
        # Its resume joins it; a live message comes before the answer, and is held.
        events = s.receive(b"#joined @news 5 9") + s.receive(b"10@news live")
        events += s.receive(b"#noresume @news denied 5 9")
        self.assertIn(hc.NoResume("@news", "denied", (5, 3), (5, 9)), events)
        self.assertEqual(delivered(events, "@news"), [(10, b"live")])
        self.assertEqual(s.topics, ["@news"])
        # A jump in numbers is not repaired with a resume: there is no history to ask for.
        events = s.receive(b"12@news later")
        self.assertEqual(delivered(events, "@news"), [(12, b"later")])
        self.assertEqual(s.data_to_send(), [])
        # On the next connection it joins the topic again instead of resuming it.
        s.connection_lost()
        s.connection_made()
        s.receive(b"#at * 77 0")
        self.assertEqual(s.data_to_send(), [b"#join @news"])

    def test_the_client_calls_on_refused(self):
        seen = []
        client = hc.Client(("127.0.0.1", 1), on_refused=seen.append, reconnect=False)
        client._emit([hc.Refused("publish", "@news", "denied"), hc.Left("@x")])
        self.assertEqual(seen, [hc.Refused("publish", "@news", "denied")])


def names(s, topic="@room"):
    members = s.members(topic)
    return None if members is None else (members.position, members.count, members.names)


class Presence(unittest.TestCase):
    """The member set of a presence topic, by the client rule (docs/PROTOCOL.md,
    "Presence")."""

    def test_members_then_changes_in_order(self):
        s, events = session(b"#joined @room 5 3", b"#members @room 5 3 all 2 u:alice c:7")
        self.assertIn(hc.Members("@room", 5, 3, 2, ("u:alice", "c:7")), events)
        self.assertEqual(names(s), (3, 2, frozenset({"u:alice", "c:7"})))
        events = s.receive(b"#presence @room 4 join u:bob") + s.receive(b"5@room hi")
        events += s.receive(b"#presence @room 6 leave c:7")
        self.assertIn(hc.Presence("@room", 4, "join", None, ("u:bob",)), events)
        self.assertEqual(delivered(events, "@room"), [(5, b"hi")])
        self.assertEqual(names(s), (6, 2, frozenset({"u:alice", "u:bob"})))
        self.assertEqual(s.positions["@room"], (5, 6), "presence messages are numbered")
        # A data message after them follows on: no gap.
        s.receive(b"7@room x")
        self.assertEqual(s.data_to_send(), [])

    def test_changes_held_during_a_resume_and_replayed_ones_ignored(self):
        s, _ = session(b"#joined @room 5 3", b"#members @room 5 3 all 1 c:7", b"#presence @room 4 join c:8")
        s.connection_lost()
        s.connection_made()
        s.receive(b"#at * 77 0")
        self.assertEqual(s.data_to_send(), [b"#resume @room 5 4"])
        # A resume that joins: #joined and #members at 7, a live change, then the replay.
        events = s.receive(b"#joined @room 5 7") + s.receive(b"#members @room 5 7 all 2 c:8 c:9")
        events += s.receive(b"#presence @room 8 join u:zoe")
        self.assertEqual(names(s), (7, 2, frozenset({"c:8", "c:9"})))
        events += s.receive(b"#resumed @room 5 5 7") + s.receive(b"#presence @room 5 leave c:7")
        events += s.receive(b"6@room m") + s.receive(b"#presence @room 7 join c:9")
        self.assertEqual([e.seq for e in events if isinstance(e, hc.Presence)], [5, 7, 8])
        self.assertEqual(delivered(events, "@room"), [(6, b"m")])
        self.assertEqual(names(s), (8, 3, frozenset({"c:8", "c:9", "u:zoe"})))

    def test_over_the_limit_counts_then_the_whole_list(self):
        s, _ = session(b"#joined @room 5 0", b"#members @room 5 0 all 1 c:1")
        s.receive(b"#presence @room 1 count 4")
        self.assertEqual(names(s), (1, 4, None))
        s.receive(b"#presence @room 2 all 2 c:1 u:a")
        self.assertEqual(names(s), (2, 2, frozenset({"c:1", "u:a"})))
        s.receive(b"#members @room 5 2 count 9")
        self.assertEqual(names(s), (2, 9, None))

    def test_who_and_its_refusals(self):
        s, _ = session(b"#joined @room 5 0")
        s.who("room")
        self.assertEqual(s.data_to_send(), [b"#who @room"])
        events = s.receive(b"#refused who @room off") + s.receive(b"#refused who @x member")
        self.assertEqual([e for e in events if isinstance(e, hc.Refused)],
                         [hc.Refused("who", "@room", "off"), hc.Refused("who", "@x", "member")])
        self.assertIsNone(s.members("room"))
        self.assertEqual(s.topics, ["@room"])

    def test_a_join_with_history_gets_the_messages_before_its_position(self):
        s, _ = session()
        s.join("news", history=3)
        self.assertEqual(s.data_to_send(), [b"#join @news 3"])
        events = s.receive(b"#joined @news 5 10") + s.receive(b"#members @news 5 10 all 1 c:1")
        events += s.receive(b"#resumed @news 5 7 10")
        for seq in (7, 8):
            events += s.receive(b"%d@news m%d" % (seq, seq))
        events += s.receive(b"#presence @news 9 leave c:2") + s.receive(b"10@news m10")
        events += s.receive(b"11@news live")
        self.assertEqual(delivered(events, "@news"), [(7, b"m7"), (8, b"m8"), (10, b"m10"), (11, b"live")])
        self.assertEqual(names(s, "@news"), (10, 1, frozenset({"c:1"})), "the replay's change is before the set")
        self.assertEqual(s.data_to_send(), [])
        # Asked again on the next connection if not answered; a resume otherwise.
        s.connection_lost()
        s.connection_made()
        s.receive(b"#at * 77 0")
        self.assertEqual(s.data_to_send(), [b"#resume @news 5 11"])

    def test_a_lost_stretch_asks_who(self):
        s, _ = session(b"#joined @room 5 0", b"#members @room 5 0 all 1 c:1", b"1@room a", b"4@room d")
        self.assertEqual(s.data_to_send(), [b"#resume @room 5 1 4"])
        s.receive(b"#noresume @room old 5 4")
        self.assertEqual(s.data_to_send(), [b"#who @room"])


class Other(unittest.TestCase):
    def test_errors_unknowns_and_heartbeats(self):
        s, events = session(b"#error unknown request", b"#bogus", b"x y", b"")
        self.assertIn(hc.ServerError("unknown request"), events)
        self.assertEqual([type(e) for e in events if isinstance(e, hc.Unknown)], [hc.Unknown, hc.Unknown])
        self.assertEqual(s.data_to_send(), [b""], "a heartbeat is answered")


class Timeouts(unittest.TestCase):
    """The Client against a listener of this process that accepts and says nothing."""

    def setUp(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.accepted = []
        self.greet = None
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            if self.greet is not None:
                conn.sendall(self.greet)

    def tearDown(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()

    def test_no_at_within_the_timeout(self):
        client = hc.Client(self.listener.getsockname(), timeout=0.3)
        began = time.monotonic()
        with self.assertRaises(hc.Timeout):
            client.connect()
        self.assertLess(time.monotonic() - began, 2)

    def test_recv_times_out_on_a_silent_hub(self):
        self.greet = b"#at * 1 0\n"
        client = hc.Client(self.listener.getsockname(), timeout=5)
        client.connect()
        self.assertIsInstance(client.recv(), hc.Connected)
        began = time.monotonic()
        with self.assertRaises(hc.Timeout):
            client.recv(timeout=0.2)
        self.assertLess(time.monotonic() - began, 2)
        client.close()
        with self.assertRaises(hc.ConnectionClosed):
            client.recv(timeout=0.2)

    def test_iteration_outlasts_a_quiet_hub(self):
        # The README's loop, with a timeout shorter than the quiet: it waits on, and
        # yields the message that comes after it.
        self.greet = b"#at * 1 0\n"
        client = hc.Client(self.listener.getsockname(), timeout=0.2)
        quiet = 0.7
        events = iter(client)
        self.assertIsInstance(next(events), hc.Connected)
        began = time.monotonic()
        timer = threading.Timer(quiet, lambda: self.accepted[0].sendall(b"1 after the quiet\n"))
        timer.start()
        try:
            event = next(events)
        finally:
            timer.cancel()
        self.assertEqual(event, hc.Message("*", 1, b"after the quiet", 1))
        self.assertGreaterEqual(time.monotonic() - began, quiet)
        client.close()
        self.assertEqual(list(events), [], "ends quietly once closed")

    def test_messages_outlast_a_quiet_hub_unless_bounded(self):
        self.greet = b"#at * 1 0\n"
        client = hc.Client(self.listener.getsockname(), timeout=0.2)
        client.connect()
        with self.assertRaises(hc.Timeout):
            next(client.messages(timeout=0.2))
        timer = threading.Timer(0.5, lambda: self.accepted[0].sendall(b"1 after the quiet\n"))
        timer.start()
        try:
            message = next(client.messages())
        finally:
            timer.cancel()
        self.assertEqual(message.payload, b"after the quiet")
        client.close()

    def test_iteration_raises_timeout_when_it_cannot_reconnect(self):
        # Disconnected, with nothing listening any more: the loop does not spin forever.
        self.greet = b"#at * 1 0\n"
        client = hc.Client(self.listener.getsockname(), timeout=0.3, backoff=0.01)
        events = iter(client)
        self.assertIsInstance(next(events), hc.Connected)
        # Moved to a port where nothing listens (bound, never listening: refused).
        nowhere = socket.socket()
        self.addCleanup(nowhere.close)
        nowhere.bind(("127.0.0.1", 0))
        client.address = nowhere.getsockname()
        client.drop_connection()
        self.assertIsInstance(next(events), hc.Disconnected)
        began = time.monotonic()
        with self.assertRaises(hc.Timeout):
            next(events)
        self.assertLess(time.monotonic() - began, 5)
        client.close()

    def test_a_resume_left_unanswered_ends_the_connection(self):
        self.greet = b"#at * 1 5\n"
        client = hc.Client(self.listener.getsockname(), timeout=0.3, positions={"*": (1, 2)}, reconnect=False)
        client.connect()
        self.assertIsInstance(client.recv(), hc.Connected)
        with self.assertRaises(hc.Timeout):
            client.recv(timeout=0.2)
        self.assertIsInstance(client.recv(timeout=1), hc.Disconnected)
        with self.assertRaises(hc.ConnectionClosed):
            client.recv(timeout=1)


if __name__ == "__main__":
    unittest.main()
