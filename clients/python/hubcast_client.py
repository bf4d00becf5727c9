"""A client for the hubcast protocol (``Protocol::Sequenced``, ``docs/PROTOCOL.md``).

Standard library only, Python 3.9 or later. Two layers:

* :class:`Session` keeps the protocol's state and does no I/O: feed it each message the hub
  sends (a frame's payload), get back events, and send what :meth:`Session.data_to_send`
  gives. It keeps each stream's position ``(epoch, seq)``, holds the live messages of a
  stream while it is being resumed, repairs gaps, and turns every control message into an
  event. Use it to drive many connections from one ``selectors`` loop.
* :class:`Client` runs a :class:`Session` over one TCP connection with blocking sockets,
  every blocking call bounded by a timeout, and reconnects with backoff when the
  connection fails, resuming every stream it had.

The caller gets every data message of every stream exactly once and in order, across gaps
and reconnects, or an explicit :class:`NoResume` event saying which stream could not be
resumed, why, and where it goes on from.

Not thread-safe: use a client from one thread.
"""

from __future__ import annotations

import random
import socket
import struct
import time
import unicodedata
from collections import deque
from typing import Callable, Deque, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

__all__ = [
    "HUB",
    "DIRECT",
    "Position",
    "Message",
    "Own",
    "Connected",
    "Disconnected",
    "Gap",
    "Resumed",
    "NoResume",
    "Joined",
    "Left",
    "Refused",
    "Members",
    "Presence",
    "MemberSet",
    "ServerError",
    "Unknown",
    "HubcastError",
    "Timeout",
    "ConnectionClosed",
    "ProtocolError",
    "LineFramer",
    "LengthPrefixedFramer",
    "make_framer",
    "Session",
    "Client",
]

#: The hub-wide stream's name.
HUB = "*"
#: The stream name of direct messages (``Hub::send_to``): not numbered, never replayed.
DIRECT = "-"

#: A stream's position: ``(epoch, seq)``, the last message of the stream the client has.
Position = Tuple[int, int]


# ----------------------------------------------------------------------------- events


class Message(NamedTuple):
    """A data message. ``stream`` is ``"*"``, ``"@topic"`` or ``"-"`` (direct: ``seq`` and
    ``epoch`` are ``None``)."""

    stream: str
    seq: Optional[int]
    payload: bytes
    epoch: Optional[int]

    @property
    def topic(self) -> Optional[str]:
        """The topic's name for a topic message, else ``None``."""
        return self.stream[1:] if self.stream.startswith("@") else None


class Own(NamedTuple):
    """Message ``seq`` of ``stream`` was this client's own (``#own``): the position moved
    past it and nothing is delivered in its place."""

    stream: str
    seq: int


class Connected(NamedTuple):
    """A connection is up: the hub-wide stream starts for it after ``(epoch, seq)``
    (``#at``). ``reconnect`` is true for every connection after the first. ``local`` is
    this end's address (what the hub shows as the client's address)."""

    address: Tuple[str, int]
    local: Tuple[str, int]
    epoch: int
    seq: int
    reconnect: bool


class Disconnected(NamedTuple):
    """The connection was lost (not closed by :meth:`Client.close`); a reconnect follows if
    reconnecting is on."""

    reason: str


class Gap(NamedTuple):
    """Messages of ``stream`` after ``after`` were lost before ``got`` (the hub dropped them
    for a slow client): a resume was asked for to fetch them. Informational."""

    stream: str
    after: int
    got: int


class Resumed(NamedTuple):
    """The hub replays messages ``first`` to ``last`` of ``stream`` (none if first > last).
    Informational: the messages themselves come as :class:`Message` events."""

    stream: str
    epoch: int
    first: int
    last: int


class NoResume(NamedTuple):
    """``stream`` could not be resumed: messages between ``old`` and ``new`` are lost to this
    client. Refetch whatever state the stream describes; delivery goes on after ``new``.

    ``reason`` is the hub's: ``epoch`` (numbers restarted), ``old`` (no longer in the replay
    ring), ``much`` (the replay did not fit in the client's queue: the client asks again, as
    the protocol allows, and reports ``much`` only if it still does not fit after a few
    tries, when its queue held nothing else), ``member`` (a topic the client is
    not in and may not join: the client stops following it; ``new`` is then what the hub
    said, ``(0, 0)`` today), ``denied`` (the client is in the topic but the host does not
    let it have the topic's history: like ``member``, never asked again, but the client
    stays in the topic and follows it live from ``new``, without resuming it, joining it
    again on the next connection); or the client's own ``gap`` (the hub answered a resume without
    filling the gap, which a hub that implements the protocol does not do)."""

    stream: str
    reason: str
    old: Optional[Position]
    new: Position


class Joined(NamedTuple):
    """The client is in topic ``stream`` (``"@name"``) and gets it from after ``seq``."""

    stream: str
    epoch: int
    seq: int


class Left(NamedTuple):
    """The client is no longer in topic ``stream``."""

    stream: str


class Refused(NamedTuple):
    """A request was refused (``#refused``): ``request`` is ``join`` or ``leave``; or
    ``publish``: a message this client sent was relayed to nobody, because the host does
    not let it write to ``stream`` (``"@name"``, or ``"*"`` on a hub that relays to
    everyone), ``reason`` ``denied``. Not resent: show it to the user."""

    request: str
    stream: str
    reason: str


class Members(NamedTuple):
    """The members of presence topic ``stream`` at position ``(epoch, seq)`` (``#members``):
    after a :class:`Joined` of a topic with presence, and as the answer to
    :meth:`Client.who`. ``names`` are the members (``u:<user key>`` or ``c:<client id>``),
    ``None`` when the topic has more than its limit (``count`` only). The client's member
    set (:meth:`Session.members`) is replaced by it."""

    stream: str
    epoch: int
    seq: int
    count: int
    names: Optional[Tuple[str, ...]]


class Presence(NamedTuple):
    """Message ``seq`` of presence topic ``stream`` is a change of its members
    (``#presence``): ``kind`` ``join`` or ``leave`` (``names`` is the one member), ``count``
    (over the topic's limit: names stop, ``count`` is how many), or ``all`` (back under it:
    ``names`` is the whole list, ``count`` its length). Numbered with the topic's messages,
    delivered in their order, exactly once; the member set follows (the client rule: a
    change is applied only if it is after the set's position)."""

    stream: str
    seq: int
    kind: str
    count: Optional[int]
    names: Tuple[str, ...]


class ServerError(NamedTuple):
    """The hub did not understand a control message (``#error``)."""

    text: str


class Unknown(NamedTuple):
    """A message this client does not understand (a newer hub, or one without the protocol)."""

    payload: bytes


Event = Union[
    Message, Own, Connected, Disconnected, Gap, Resumed, NoResume, Joined, Left, Refused,
    Members, Presence, ServerError, Unknown,
]


# ------------------------------------------------------------------------- exceptions


class HubcastError(Exception):
    """Every error this module raises."""


class Timeout(HubcastError, TimeoutError):
    """A blocking call did not finish within its timeout."""


class ConnectionClosed(HubcastError, ConnectionError):
    """The client is closed, or its connection failed and reconnecting is off."""


class ProtocolError(HubcastError):
    """The hub sent something that breaks the framing (a frame over ``max_frame``)."""


# ---------------------------------------------------------------------------- framing


class LineFramer:
    """``Framing::Lines``: one message per line; a ``\\r`` before the ``\\n`` is dropped."""

    def __init__(self, max_frame: int = 16 << 20) -> None:
        self.max_frame = max_frame
        self._buf = b""

    def feed(self, data: bytes) -> List[bytes]:
        """The whole messages ``data`` completes, in order."""
        buf = self._buf + data if self._buf else data
        parts = buf.split(b"\n")
        self._buf = parts.pop()
        if len(self._buf) > self.max_frame:
            raise ProtocolError(f"a line longer than {self.max_frame} bytes")
        for i, part in enumerate(parts):
            if part.endswith(b"\r"):
                parts[i] = part[:-1]
        return parts

    def encode(self, payload: bytes) -> bytes:
        if b"\n" in payload or payload.endswith(b"\r"):
            raise ValueError("with line framing a message holds no \\n and does not end in \\r")
        return payload + b"\n"

    def reset(self) -> None:
        self._buf = b""


class LengthPrefixedFramer:
    """``Framing::LengthPrefixed``: a 4-byte big-endian length, then the payload."""

    def __init__(self, max_frame: int = 16 << 20) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> List[bytes]:
        self._buf += data
        out = []
        at = 0
        buf = self._buf
        while len(buf) - at >= 4:
            (length,) = struct.unpack_from(">I", buf, at)
            if length > self.max_frame:
                raise ProtocolError(f"a frame of {length} bytes, over {self.max_frame}")
            if len(buf) - at - 4 < length:
                break
            out.append(bytes(buf[at + 4 : at + 4 + length]))
            at += 4 + length
        del buf[:at]
        return out

    def encode(self, payload: bytes) -> bytes:
        if len(payload) > 0xFFFFFFFF:
            raise ValueError("a message longer than 4 GiB")
        return struct.pack(">I", len(payload)) + payload

    def reset(self) -> None:
        self._buf = bytearray()


def make_framer(framing: str, max_frame: int = 16 << 20):
    """A framer by name: ``"lines"`` or ``"length-prefixed"``."""
    if framing == "lines":
        return LineFramer(max_frame)
    if framing in ("length-prefixed", "length_prefixed"):
        return LengthPrefixedFramer(max_frame)
    raise ValueError(f"unknown framing {framing!r}: 'lines' or 'length-prefixed'")


# ---------------------------------------------------------------------------- session


def _stream_name(topic_or_stream: str) -> str:
    """``"lobby"`` or ``"@lobby"`` -> ``"@lobby"``; checks the name as the hub does: no
    white space and no control character (Unicode category ``Cc``), not empty. The hub's
    length limit (64 bytes by default) is its own setting: a longer name is ``#refused``."""
    name = topic_or_stream[1:] if topic_or_stream.startswith("@") else topic_or_stream
    if not name or any(c.isspace() or unicodedata.category(c) == "Cc" for c in name):
        raise ValueError(f"not a topic name: {topic_or_stream!r} (no whitespace, not empty)")
    return "@" + name


class MemberSet:
    """A presence topic's members as this client knows them, kept by the protocol's client
    rule: a ``#members`` snapshot replaces the set and its position; a ``#presence`` change
    is applied only if its number is after the position (those at or before it come again
    in replays), and moves it.

    ``names`` is a frozenset of members (``u:<user key>``, ``c:<client id>``), or ``None``
    while the topic is over its limit; ``count`` is how many there are either way."""

    __slots__ = ("position", "names", "count")

    def __init__(self) -> None:
        self.position = -1
        self.names: Optional[frozenset] = None
        self.count = 0

    def snapshot(self, seq: int, count: int, names: Optional[Iterable[str]]) -> None:
        self.position = seq
        self.count = count
        self.names = None if names is None else frozenset(names)

    def change(self, seq: int, kind: str, count: Optional[int], names: Tuple[str, ...]) -> bool:
        """Applies a change numbered ``seq``; false if it was at or before the position."""
        if seq <= self.position:
            return False
        self.position = seq
        if kind == "join" and self.names is not None:
            self.names = self.names | {names[0]}
            self.count = len(self.names)
        elif kind == "leave" and self.names is not None:
            self.names = self.names - {names[0]}
            self.count = len(self.names)
        elif kind == "count":
            self.names, self.count = None, int(count or 0)
        elif kind == "all":
            self.names, self.count = frozenset(names), len(names)
        return True

    def __repr__(self) -> str:
        shown = "count only" if self.names is None else sorted(self.names)
        return f"MemberSet(position={self.position}, count={self.count}, names={shown})"


class _Change(NamedTuple):
    """The body of a ``#presence`` message, held and taken in order like a data message's."""

    kind: str
    count: Optional[int]
    names: Tuple[str, ...]


def _member_list(words: List[str]) -> Tuple[int, Optional[Tuple[str, ...]]]:
    """``all <n> <member>...`` or ``count <n>`` -> (n, names or None)."""
    if words[:1] == ["all"] and len(words) >= 2 and int(words[1]) == len(words) - 2:
        return int(words[1]), tuple(words[2:])
    if words[:1] == ["count"] and len(words) == 2:
        return int(words[1]), None
    raise ValueError("not a member list")


#: How many resumes in a row may leave the same gap unfilled before the client skips it.
_MAX_FRUITLESS = 3

#: How many times in a row a resume answered ``much`` is asked again. Each time, what was
#: queued before the answer has arrived with it, so a replay that still does not fit never
#: will: the stream then goes on from the hub's position, as after any refusal.
_MAX_MUCH = 3


class _Stream:
    """One stream's state. While ``pending``, a resume is on its way and every message of
    the stream is held; ``replay_to`` is the last number a resume's replay brings, until
    the position reaches it; then the held messages are taken in order."""

    __slots__ = (
        "name", "epoch", "seq", "pending", "held", "replay_to", "asked_after", "fruitless",
        "until", "much", "joined_at",
    )

    def __init__(self, name: str, epoch: Optional[int], seq: int) -> None:
        self.name = name
        self.epoch = epoch
        self.seq = seq
        self.pending = False
        self.held: List[Tuple[int, Union[bytes, _Change, None]]] = []
        self.replay_to: Optional[int] = None
        self.asked_after = -1
        self.fruitless = 0
        # The last resume's <next>, and how many times in a row it was answered `much`.
        self.until: Optional[int] = None
        self.much = 0
        # The position #joined gave a new stream, until its first message: a #resumed to
        # it is the join's history (#join @t <n>, or the topic's default), not a resume.
        self.joined_at: Optional[int] = None

    def reset_connection(self) -> None:
        self.pending = False
        self.held = []
        self.replay_to = None
        self.much = 0


class Session:
    """The protocol's state for one client, across its connections; no I/O, no clock.

    Call :meth:`connection_made` when a connection opens (after sending any authentication
    frame), :meth:`receive` with each message's payload, and send the payloads
    :meth:`data_to_send` returns (control messages, framed by the caller) after each call.
    Call :meth:`connection_lost` when it fails. Positions survive connections: on the next
    one, every stream is resumed.

    ``positions`` resumes streams from an earlier life (``{"*": (epoch, seq), "@t": ...}``);
    ``topics`` are joined on every connection until joined (then resumed).
    """

    def __init__(self, positions: Optional[Dict[str, Position]] = None, topics: Iterable[str] = ()) -> None:
        self._streams: Dict[str, _Stream] = {}
        for name, (epoch, seq) in (positions or {}).items():
            if name != HUB:
                name = _stream_name(name)
            self._streams[name] = _Stream(name, int(epoch), int(seq))
        # Topics asked for (#join) and not yet answered, by stream name.
        self._wanted = {_stream_name(t) for t in topics} - set(self._streams)
        # How many last messages each wanted topic asked for (#join @t <n>).
        self._history: Dict[str, int] = {}
        # The member sets of presence topics, by stream name.
        self._members: Dict[str, MemberSet] = {}
        self._out: List[bytes] = []
        self._events: List[Event] = []
        self._greeted = False
        #: How many connections got as far as ``#at``.
        self.connections = 0
        #: The last ``#at`` position: where the hub-wide stream started for the connection.
        self.last_at: Optional[Position] = None

    # -- state

    @property
    def positions(self) -> Dict[str, Position]:
        """Every stream's position, for streams with a known epoch."""
        return {n: (s.epoch, s.seq) for n, s in self._streams.items() if s.epoch is not None}

    @property
    def topics(self) -> List[str]:
        """The topics followed (``"@name"``), sorted."""
        return sorted(n for n in self._streams if n != HUB)

    def members(self, topic: str) -> Optional[MemberSet]:
        """The member set of a presence topic (``"lobby"`` or ``"@lobby"``), kept by the
        client rule; ``None`` for a topic without presence, or not joined yet."""
        return self._members.get(_stream_name(topic))

    @property
    def is_live(self) -> bool:
        """Whether this connection's ``#at`` has arrived."""
        return self._greeted

    def is_resuming(self) -> bool:
        """Whether some stream waits for the answer to a resume."""
        return any(s.pending for s in self._streams.values())

    # -- connection

    def connection_made(self) -> None:
        """A new connection: its first message will be ``#at``."""
        self._greeted = False
        self._out = []
        for stream in self._streams.values():
            stream.reset_connection()

    def connection_lost(self) -> None:
        """The connection is gone: held messages were never delivered and come back with
        the next connection's resumes."""
        self._greeted = False
        self._out = []
        for stream in self._streams.values():
            stream.reset_connection()

    def data_to_send(self) -> List[bytes]:
        """The payloads to send now, in order (unframed)."""
        out, self._out = self._out, []
        return out

    # -- requests

    def join(self, topic: str, history: Optional[int] = None) -> None:
        """Asks to join a topic (``#join``); the answer is a :class:`Joined` or
        :class:`Refused` event. Asked again on every connection until answered. With
        ``history``, asks for the topic's last ``history`` messages as well (``#join @t
        <n>``; without it, the topic's default): they come as :class:`Message` events
        after the :class:`Joined` (and a :class:`Resumed` naming them), before the live
        ones. For a presence topic, a :class:`Members` event comes after the
        :class:`Joined`."""
        name = _stream_name(topic)
        self._wanted.add(name)
        if history is None:
            self._history.pop(name, None)
        else:
            self._history[name] = int(history)
        if self._greeted:
            self._out.append(self._join_request(name))

    def _join_request(self, name: str) -> bytes:
        history = self._history.get(name)
        return f"#join {name}".encode() if history is None else f"#join {name} {history}".encode()

    def who(self, topic: str) -> None:
        """Asks for a presence topic's members now (``#who``): answered with a
        :class:`Members` event, or a :class:`Refused` (``who``: ``member`` if this client
        is not in the topic, ``off`` if the topic has no presence). Not asked again on a
        new connection (a resume that joins brings a :class:`Members` itself)."""
        name = _stream_name(topic)
        if self._greeted:
            self._out.append(b"#who " + name.encode())

    def leave(self, topic: str) -> None:
        """Stops following a topic (``#leave``); the hub answers :class:`Left`."""
        name = _stream_name(topic)
        self._wanted.discard(name)
        self._streams.pop(name, None)
        self._members.pop(name, None)
        if self._greeted:
            self._out.append(b"#leave " + name.encode())

    @staticmethod
    def encode_data(payload: Union[bytes, bytearray, str]) -> bytes:
        """A data message as sent: one that starts with ``#`` gets another in front."""
        if isinstance(payload, str):
            payload = payload.encode()
        payload = bytes(payload)
        return b"#" + payload if payload[:1] == b"#" else payload

    # -- receiving

    def receive(self, payload: bytes) -> List[Event]:
        """Takes one message from the hub; returns the events it makes, in order."""
        self._events = events = []
        if not payload:
            # A heartbeat: answer with an empty frame.
            self._out.append(b"")
        elif payload[0] == 0x23:  # '#'
            self._control(payload)
        else:
            self._data(payload)
        return events

    def _data(self, payload: bytes) -> None:
        space = payload.find(b" ")
        head = payload[:space] if space > 0 else b""
        if head == b"-":
            self._events.append(Message(DIRECT, None, payload[space + 1 :], None))
            return
        at = head.find(b"@")
        try:
            if at < 0:
                seq, name = int(head), HUB
            else:
                seq, name = int(head[:at]), "@" + head[at + 1 :].decode()
        except ValueError:
            self._events.append(Unknown(payload))
            return
        stream = self._streams.get(name)
        if stream is None:
            # A stream this client did not know it had (no #joined seen): follow it from
            # here, without an epoch, so it is never resumed.
            stream = self._streams[name] = _Stream(name, None, seq - 1)
        body = payload[space + 1 :]
        if stream.pending:
            stream.held.append((seq, body))
        else:
            self._take(stream, seq, body)

    def _take(self, stream: _Stream, seq: int, body: Union[bytes, _Change, None]) -> None:
        """One message (``body`` None for an ``#own`` marker, a :class:`_Change` for a
        ``#presence``) of a stream not waiting for a resume: deliver it, drop it as a
        duplicate, or start repairing a gap."""
        if seq <= stream.seq:
            return
        if seq != stream.seq + 1 and stream.epoch is not None:
            if stream.asked_after == stream.seq:
                stream.fruitless += 1
            else:
                stream.asked_after, stream.fruitless = stream.seq, 0
            if stream.fruitless < _MAX_FRUITLESS:
                self._events.append(Gap(stream.name, stream.seq, seq))
                stream.held.append((seq, body))
                self._resume(stream, until=seq)
                return
            # The hub answered resumes without filling this gap: skip it, and say so.
            old = (stream.epoch, stream.seq)
            stream.seq = seq - 1
            self._events.append(NoResume(stream.name, "gap", old, (stream.epoch, stream.seq)))
        stream.seq = seq
        stream.joined_at = None
        if body is None:
            self._events.append(Own(stream.name, seq))
        elif isinstance(body, _Change):
            members = self._members.get(stream.name)
            if members is not None:
                members.change(seq, body.kind, body.count, body.names)
            self._events.append(Presence(stream.name, seq, body.kind, body.count, body.names))
        else:
            self._events.append(Message(stream.name, seq, body, stream.epoch))
        if stream.replay_to is not None and seq >= stream.replay_to:
            self._release(stream)

    def _release(self, stream: _Stream) -> None:
        """The replay is complete: take the held messages, in order of number (those it
        already brought are dropped as duplicates)."""
        stream.replay_to = None
        held, stream.held = stream.held, []
        held.sort(key=lambda item: item[0])
        for seq, body in held:
            if stream.pending:
                stream.held.append((seq, body))
            else:
                self._take(stream, seq, body)

    def _resume(self, stream: _Stream, until: Optional[int] = None) -> None:
        """Asks for what follows the stream's position; with ``until``, only up to the
        message before it (a gap on this connection: the client has ``until`` already)."""
        stream.pending = True
        stream.replay_to = None
        stream.until = until
        request = f"#resume {stream.name} {stream.epoch} {stream.seq}"
        if until is not None:
            request += f" {until}"
        self._out.append(request.encode())

    def _control(self, payload: bytes) -> None:
        words = payload[1:].decode("utf-8", "replace").split(" ")
        kind = words[0]
        try:
            if kind == "at" and len(words) == 4:
                self._at(int(words[2]), int(words[3]))
            elif kind == "own" and len(words) == 3:
                self._own(words[1], int(words[2]))
            elif kind == "resumed" and len(words) == 5:
                self._resumed(words[1], int(words[2]), int(words[3]), int(words[4]))
            elif kind == "noresume" and len(words) == 5:
                self._noresume(words[1], words[2], int(words[3]), int(words[4]))
            elif kind == "joined" and len(words) == 4:
                self._joined(words[1], int(words[2]), int(words[3]))
            elif kind == "left" and len(words) == 2:
                self._left(words[1])
            elif kind == "presence" and len(words) >= 5:
                self._presence(words[1], int(words[2]), words[3:])
            elif kind == "members" and len(words) >= 6:
                self._members_at(words[1], int(words[2]), int(words[3]), words[4:])
            elif kind == "refused" and len(words) >= 4:
                self._refused(words[1], words[2], " ".join(words[3:]))
            elif kind == "error":
                self._events.append(ServerError(" ".join(words[1:])))
            else:
                self._events.append(Unknown(payload))
        except ValueError:
            self._events.append(Unknown(payload))

    def _at(self, epoch: int, seq: int) -> None:
        self._greeted = True
        self.last_at = (epoch, seq)
        self.connections += 1
        # Streams followed without an epoch cannot be resumed: they are gone with the
        # connection they came on.
        for name in [n for n, s in self._streams.items() if s.epoch is None]:
            del self._streams[name]
        for stream in self._streams.values():
            stream.asked_after, stream.fruitless = -1, 0
        hub = self._streams.get(HUB)
        if hub is None:
            self._streams[HUB] = _Stream(HUB, epoch, seq)
        elif (hub.epoch, hub.seq) != (epoch, seq):
            # Live messages from after `seq` may come before the answer: held meanwhile.
            self._resume(hub)
        for name, stream in self._streams.items():
            if name != HUB:
                self._resume(stream)
        for name in sorted(self._wanted):
            self._out.append(self._join_request(name))

    def _own(self, name: str, seq: int) -> None:
        stream = self._streams.get(name)
        if stream is None:
            return
        if stream.pending:
            stream.held.append((seq, None))
        else:
            self._take(stream, seq, None)

    def _presence(self, name: str, seq: int, words: List[str]) -> None:
        """``#presence @t <seq> <change>``: message ``seq`` of the topic, taken in order."""
        kind = words[0]
        if kind in ("join", "leave") and len(words) == 2:
            change = _Change(kind, None, (words[1],))
        elif kind in ("count", "all"):
            count, names = _member_list(words)
            change = _Change(kind, count, names or ())
        else:
            raise ValueError("not a presence change")
        stream = self._streams.get(name)
        if stream is None:
            return
        if stream.pending:
            stream.held.append((seq, change))
        else:
            self._take(stream, seq, change)

    def _members_at(self, name: str, epoch: int, seq: int, words: List[str]) -> None:
        """``#members @t <epoch> <seq> all|count ...``: the set at that position."""
        count, names = _member_list(words)
        if name in self._streams:
            self._members.setdefault(name, MemberSet()).snapshot(seq, count, names)
        self._events.append(Members(name, epoch, seq, count, names))

    def _resumed(self, name: str, epoch: int, first: int, last: int) -> None:
        stream = self._streams.get(name)
        self._events.append(Resumed(name, epoch, first, last))
        if (
            stream is not None
            and not stream.pending
            and stream.joined_at == last == stream.seq
            and stream.epoch == epoch
            and first <= last
        ):
            # The history of a join: messages first..last follow, before the live ones.
            stream.joined_at = None
            stream.seq = first - 1
            return
        if stream is None or not stream.pending:
            return
        stream.pending = False
        stream.much = 0
        # Messages first..last follow; live ones held meanwhile and numbered up to `last`
        # are among them.
        stream.replay_to = last
        if stream.seq >= last:
            self._release(stream)

    def _noresume(self, name: str, reason: str, epoch: int, seq: int) -> None:
        stream = self._streams.get(name)
        if reason == "much" and stream is not None and stream.pending and stream.much < _MAX_MUCH:
            # Retryable: the ring still holds the messages, and what was queued before this
            # answer (earlier replays) has arrived with it. Held messages stay held.
            stream.much += 1
            self._resume(stream, until=stream.until)
            return
        old = (stream.epoch, stream.seq) if stream is not None and stream.epoch is not None else None
        self._events.append(NoResume(name, reason, old, (epoch, seq)))
        if stream is None:
            return
        if reason == "member":
            # Not in the topic and may not join it: stop following it.
            del self._streams[name]
            self._members.pop(name, None)
            return
        members = self._members.get(name)
        if members is not None and members.position < seq and self._greeted:
            # Changes between the set's position and where the stream goes on are lost
            # with the messages: ask for the members now.
            self._out.append(b"#who " + name.encode())
        if reason == "denied":
            # In the topic, but not allowed its history: never asked again. Followed live
            # from the position given, without an epoch (so never resumed), and joined
            # again on the next connection, which drops streams without one.
            fresh = self._streams[name] = _Stream(name, None, seq)
            if name != HUB:
                self._wanted.add(name)
            for held_seq, body in sorted(stream.held, key=lambda item: item[0]):
                self._take(fresh, held_seq, body)
            return
        stream.pending = False
        stream.epoch, stream.seq = epoch, seq
        stream.asked_after, stream.fruitless, stream.much = -1, 0, 0
        # Held messages up to the new position are part of the state to refetch.
        self._release(stream)

    def _joined(self, name: str, epoch: int, seq: int) -> None:
        self._wanted.discard(name)
        self._events.append(Joined(name, epoch, seq))
        stream = self._streams.get(name)
        if stream is None or stream.epoch is None:
            fresh = self._streams[name] = _Stream(name, epoch, seq)
            fresh.joined_at = seq
        elif stream.pending:
            # A resume of this topic joined it: the resume's answer gives the position.
            pass
        elif stream.epoch != epoch:
            old = (stream.epoch, stream.seq)
            stream.epoch, stream.seq = epoch, seq
            stream.replay_to = None
            self._events.append(NoResume(name, "epoch", old, (epoch, seq)))
        elif seq > stream.seq:
            # Live from after `seq`, and the client is behind it: fetch what it lacks.
            self._events.append(Gap(name, stream.seq, seq + 1))
            self._resume(stream, until=seq + 1)

    def _left(self, name: str) -> None:
        self._wanted.discard(name)
        self._streams.pop(name, None)
        self._members.pop(name, None)
        self._events.append(Left(name))

    def _refused(self, request: str, name: str, reason: str) -> None:
        if request == "join":
            self._wanted.discard(name)
            self._history.pop(name, None)
        self._events.append(Refused(request, name, reason))


# ----------------------------------------------------------------------------- client


def _parse_address(address: Union[str, Tuple[str, int]]) -> Tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"``) or ``(host, port)`` -> ``(host, port)``."""
    if isinstance(address, str):
        host, _, port = address.rpartition(":")
        return host.strip("[]"), int(port)
    return address[0], int(address[1])


class Client:
    """A blocking client over TCP that reconnects and resumes by itself.

    ``address`` is ``(host, port)`` or ``"host:port"``; set :attr:`address` to move to
    another hub (the next connection goes there). ``auth`` is sent as the first frame of
    every connection, for a hub with an authenticator (``HubBuilder::authenticate``) only:
    a hub without one takes it as an ordinary message, relayed to other clients.
    ``framing`` is ``"lines"`` or
    ``"length-prefixed"``, as the hub's. ``topics`` are joined and ``positions`` resumed
    (see :class:`Session`).

    Every blocking call takes a ``timeout`` (default: the ``timeout`` given here, 10 s)
    and raises :class:`Timeout` when it passes (iterating over the client is not one
    call: it waits out a quiet hub, see :meth:`__iter__`); ``connect_timeout`` bounds each connection
    attempt. When a connection fails, the next call reconnects (if ``reconnect``) after a
    random pause of up to ``backoff`` seconds, doubled after each failed attempt up to
    ``max_backoff``. A resume unanswered for ``timeout`` counts as a failed connection,
    and so does a connection silent for ``idle_timeout`` (use it with the hub's heartbeats).

    ``on_noresume`` is called with each :class:`NoResume` event, ``on_refused`` with each
    :class:`Refused` (among them ``publish``: a message sent was relayed to nobody) and
    ``on_event`` with every event, as it arrives; :meth:`recv` returns them too. ``rcvbuf`` sets ``SO_RCVBUF``.
    """

    def __init__(
        self,
        address: Union[str, Tuple[str, int]],
        *,
        auth: Union[bytes, str, None] = None,
        framing: str = "lines",
        topics: Iterable[str] = (),
        positions: Optional[Dict[str, Position]] = None,
        timeout: float = 10.0,
        connect_timeout: Optional[float] = None,
        reconnect: bool = True,
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        idle_timeout: Optional[float] = None,
        max_frame: int = 16 << 20,
        rcvbuf: Optional[int] = None,
        on_noresume: Optional[Callable[[NoResume], None]] = None,
        on_event: Optional[Callable[[Event], None]] = None,
        on_refused: Optional[Callable[[Refused], None]] = None,
    ) -> None:
        self.address = _parse_address(address)
        self.auth = auth.encode() if isinstance(auth, str) else auth
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.reconnect = reconnect
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.idle_timeout = idle_timeout
        self.rcvbuf = rcvbuf
        self.on_noresume = on_noresume
        self.on_refused = on_refused
        self.on_event = on_event
        self.session = Session(positions, topics)
        self._framer = make_framer(framing, max_frame)
        self._sock: Optional[socket.socket] = None
        self._events: Deque[Event] = deque()
        # Frames read but not yet given to the session: taken one at a time as the caller
        # asks for events, so a connection dropped after some event loses only frames the
        # caller never saw, which the next connection's resumes fetch again.
        self._frames: Deque[bytes] = deque()
        self._closed = False
        self._failures = 0
        self._resume_since: Optional[float] = None
        self._heard_at = 0.0

    # -- state

    @property
    def positions(self) -> Dict[str, Position]:
        """Each stream's position ``(epoch, seq)``: save it to resume in a later process."""
        return self.session.positions

    @property
    def topics(self) -> List[str]:
        """The topics followed (``"@name"``)."""
        return self.session.topics

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def local_address(self) -> Optional[Tuple[str, int]]:
        """This end of the current connection, if any."""
        return self._sock.getsockname()[:2] if self._sock is not None else None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the calls

    def connect(self, timeout: Optional[float] = None) -> None:
        """Connects (retrying with backoff) until ``#at`` has arrived, unless connected."""
        deadline = self._deadline(timeout)
        if self._sock is None:
            self._connect_before(deadline)

    def recv(self, timeout: Optional[float] = None) -> Event:
        """The next event, waiting up to ``timeout``; connects and reconnects as needed.
        With ``timeout=0``, only an event already received, never a connection attempt.

        Raises :class:`Timeout`, or :class:`ConnectionClosed` once closed (or when the
        connection failed and reconnecting is off)."""
        deadline = self._deadline(timeout)
        while not self._events:
            self._step(deadline)
        return self._events.popleft()

    def __iter__(self) -> Iterator[Event]:
        """Every event, for as long as the client lives: a quiet hub never ends the loop
        (``timeout`` bounds each read, and the loop simply reads again). It reconnects as
        :meth:`recv` does, and raises :class:`Timeout` only when it has been disconnected
        and could not connect again within ``timeout``; it ends quietly once the client
        is closed (:meth:`close`, from a callback or the loop's body)."""
        while True:
            try:
                yield self.recv()
            except Timeout:
                if self._sock is None:
                    raise
                # Connected, and nothing came within `timeout`: a quiet chat, not an
                # error. A resume left unanswered, or silence past `idle_timeout`, ends
                # the connection instead (a Disconnected event), never this loop.
            except ConnectionClosed:
                if self._closed:
                    return
                raise

    def messages(self, timeout: Optional[float] = None) -> Iterator[Message]:
        """The data messages only (the callbacks still see every event). Without
        ``timeout``, as long as iterating over the client lasts (a quiet hub does not end
        it); with one, each event is waited for up to ``timeout`` and :class:`Timeout`
        ends the loop."""
        events = iter(self) if timeout is None else iter(lambda: self.recv(timeout), None)
        for event in events:
            if isinstance(event, Message):
                yield event

    def send(self, payload: Union[bytes, bytearray, str], timeout: Optional[float] = None) -> None:
        """Sends a data message to the hub (escaping a leading ``#``), connecting first if
        needed. At most once: if the connection fails meanwhile, it may not have arrived,
        and this raises :class:`ConnectionClosed` (the next call reconnects)."""
        deadline = self._deadline(timeout)
        frame = self._framer.encode(Session.encode_data(payload))
        if self._sock is None:
            self._connect_before(deadline)
        self._write(frame, deadline)

    def join(
        self,
        topic: str,
        wait: bool = True,
        timeout: Optional[float] = None,
        history: Optional[int] = None,
    ) -> Optional[Event]:
        """Joins a topic (``#join``); with ``wait``, returns the answer (:class:`Joined` or
        :class:`Refused`), which :meth:`recv` then does not return again. Events that come
        first are kept for :meth:`recv`, in order. ``history`` asks for the topic's last
        messages (see :meth:`Session.join`); they come from :meth:`recv`."""
        deadline = self._deadline(timeout)
        name = _stream_name(topic)
        self.session.join(name, history)
        self._flush(deadline)
        if not wait:
            return None
        return self._wait_for(
            lambda e: (isinstance(e, Joined) and e.stream == name)
            or (isinstance(e, Refused) and e.request == "join" and e.stream == name),
            deadline,
        )

    def members(self, topic: str) -> Optional[MemberSet]:
        """A presence topic's members as this client knows them (see
        :meth:`Session.members`): exact up to the events :meth:`recv` has returned."""
        return self.session.members(topic)

    def who(self, topic: str, wait: bool = True, timeout: Optional[float] = None) -> Optional[Event]:
        """Asks for a presence topic's members (``#who``), connecting first if needed;
        with ``wait``, returns the answer (:class:`Members`, or :class:`Refused` with
        request ``who``), keeping other events for :meth:`recv`, as :meth:`join` does."""
        deadline = self._deadline(timeout)
        name = _stream_name(topic)
        if self._sock is None:
            self._connect_before(deadline)
        self.session.who(name)
        self._flush(deadline)
        if not wait:
            return None
        return self._wait_for(
            lambda e: (isinstance(e, Members) and e.stream == name)
            or (isinstance(e, Refused) and e.request == "who" and e.stream == name),
            deadline,
        )

    def leave(self, topic: str, wait: bool = True, timeout: Optional[float] = None) -> Optional[Event]:
        """Leaves a topic (``#leave``); with ``wait``, returns the :class:`Left` (or
        :class:`Refused`) answer, as :meth:`join` does. Disconnected, it only forgets the
        topic: the next connection does not resume it."""
        deadline = self._deadline(timeout)
        name = _stream_name(topic)
        live = self._sock is not None and self.session.is_live
        self.session.leave(name)
        self._flush(deadline)
        if not wait or not live:
            return None
        return self._wait_for(
            lambda e: (isinstance(e, Left) and e.stream == name)
            or (isinstance(e, Refused) and e.request == "leave" and e.stream == name),
            deadline,
        )

    def drop_connection(self) -> None:
        """Breaks the connection at once, with a reset, as a failing network would; the
        next call reconnects and resumes. For tests and for a caller that knows the path
        is dead."""
        if self._sock is not None:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self._lost("dropped by the caller")

    def close(self) -> None:
        """Closes the connection for good; later calls raise :class:`ConnectionClosed`."""
        self._closed = True
        if self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                sock.close()
            except OSError:
                pass
            self.session.connection_lost()
            self._frames.clear()

    # -- internals

    def _deadline(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _left_until(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("timed out")
        return left

    def _emit(self, events: List[Event]) -> None:
        for event in events:
            if self.on_event is not None:
                self.on_event(event)
            if isinstance(event, NoResume) and self.on_noresume is not None:
                self.on_noresume(event)
            if isinstance(event, Refused) and self.on_refused is not None:
                self.on_refused(event)
            self._events.append(event)

    def _step(self, deadline: float) -> None:
        """One step towards the next event: take a frame already read, or read more."""
        if self._frames:
            self._emit(self.session.receive(self._frames.popleft()))
            self._flush(deadline)
        else:
            self._pump(deadline)

    def _pump(self, deadline: float) -> None:
        """Connects if needed, else reads what comes (or fails the connection)."""
        if self._closed:
            raise ConnectionClosed("the client is closed")
        if self._sock is None:
            self._connect_before(deadline)
            return
        sock = self._sock
        now = time.monotonic()
        wait = self._left_until(deadline)
        # The resume and idle deadlines end the connection, not the call.
        if self._resume_since is not None:
            wait = min(wait, max(0.0, self._resume_since + self.timeout - now))
        if self.idle_timeout is not None:
            wait = min(wait, max(0.0, self._heard_at + self.idle_timeout - now))
        try:
            sock.settimeout(max(wait, 0.001))
            data = sock.recv(1 << 16)
        except socket.timeout:
            now = time.monotonic()
            if self._resume_since is not None and now >= self._resume_since + self.timeout:
                self._lost(f"no answer to a resume within {self.timeout} s")
            elif self.idle_timeout is not None and now >= self._heard_at + self.idle_timeout:
                self._lost(f"nothing from the hub for {self.idle_timeout} s")
            return
        except OSError as err:
            self._lost(f"read failed: {err}")
            return
        if not data:
            self._lost("the hub closed the connection")
            return
        self._heard_at = time.monotonic()
        self._frames.extend(self._framer.feed(data))

    def _flush(self, deadline: float) -> None:
        """Sends what the session has to say (resumes, joins, heartbeat answers). If the
        connection fails meanwhile, the next one says it again."""
        out = self.session.data_to_send()
        if out and self._sock is not None:
            try:
                self._write(b"".join(self._framer.encode(p) for p in out), deadline)
            except ConnectionClosed:
                pass
        if self.session.is_resuming():
            if self._resume_since is None:
                self._resume_since = time.monotonic()
        else:
            self._resume_since = None

    def _write(self, data: bytes, deadline: float) -> None:
        if self._sock is None:
            raise ConnectionClosed("not connected")
        try:
            self._sock.settimeout(self._left_until(deadline))
            self._sock.sendall(data)
        except socket.timeout:
            self._lost("a write timed out")
            raise Timeout("timed out writing to the hub")
        except OSError as err:
            self._lost(f"write failed: {err}")
            raise ConnectionClosed(f"write failed: {err}") from err

    def _lost(self, reason: str) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                sock.close()
            except OSError:
                pass
        self.session.connection_lost()
        self._framer.reset()
        self._frames.clear()
        self._resume_since = None
        self._emit([Disconnected(reason)])

    def _connect_before(self, deadline: float) -> None:
        """Connects, with backoff between failed attempts, until ``#at`` arrives."""
        if self._closed:
            raise ConnectionClosed("the client is closed")
        if self.session.connections > 0 and not self.reconnect:
            raise ConnectionClosed("the connection failed and reconnecting is off")
        while True:
            self._left_until(deadline)
            if self.session.connections > 0 or self._failures > 0:
                # Full jitter: spreads a crowd of clients that lost the hub at once.
                ceiling = min(self.max_backoff, self.backoff * (2 ** min(self._failures, 30)))
                pause = random.uniform(0, ceiling)
                if time.monotonic() + pause >= deadline:
                    raise Timeout("timed out reconnecting")
                time.sleep(pause)
            try:
                self._open(deadline)
            except (OSError, HubcastError):
                self._discard()
                self._failures += 1
                self._left_until(deadline)
                continue
            self._failures = 0
            return

    def _open(self, deadline: float) -> None:
        """One attempt: connect, authenticate, read ``#at``. Raises on any failure, leaving
        the caller to discard the socket."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = self._sock = socket.socket(family, socket.SOCK_STREAM)
        ends = min(deadline, time.monotonic() + self.connect_timeout)
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.settimeout(self._left_until(ends))
        sock.connect(self.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._framer.reset()
        session = self.session
        reconnect = session.connections > 0
        session.connection_made()
        if self.auth is not None:
            sock.sendall(self._framer.encode(self.auth))
        frames: List[bytes] = []
        while not frames:
            sock.settimeout(self._left_until(ends))
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionClosed("closed before #at (authentication refused?)")
            frames = self._framer.feed(data)
        if not frames[0].startswith(b"#at "):
            raise ProtocolError(f"the first message is not #at: {frames[0][:40]!r}")
        events = session.receive(frames[0])
        self._frames.extend(frames[1:])
        self._heard_at = time.monotonic()
        epoch, seq = session.last_at
        local = sock.getsockname()[:2]
        self._emit([Connected(self.address, local, epoch, seq, reconnect)] + events)
        self._flush(deadline)

    def _discard(self) -> None:
        """Closes a socket that never got as far as ``#at``; nothing to announce."""
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()
        self.session.connection_lost()
        self._framer.reset()
        self._frames.clear()

    def _wait_for(self, match: Callable[[Event], bool], deadline: float) -> Event:
        """Reads until an event matches; returns it and keeps the others, in order."""
        seen = 0
        while True:
            for i in range(seen, len(self._events)):
                if match(self._events[i]):
                    event = self._events[i]
                    del self._events[i]
                    return event
            seen = len(self._events)
            self._step(deadline)
