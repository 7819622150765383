"""Server-Sent Events without I/O: feed bytes in, get events out; plus OpenAI's stream chunks.

`SSEDecoder` follows the WHATWG event-stream rules: lines end in LF, CRLF or CR (a CRLF
split across two feeds counts once); a blank line dispatches the event; ``data`` lines
join with LF; lines starting with ``:`` are comments; a field without a colon has an
empty value; one leading space after the colon is dropped; an initial BOM is skipped.
OpenAI-compatible servers send ``data: {chunk json}`` events and end with ``data: [DONE]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from engine.client.protocol import Usage

DONE = "[DONE]"


@dataclass(frozen=True)
class Event:
    """One dispatched event."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental event-stream decoder: `feed(chunk)` returns the events completed so far."""

    def __init__(self) -> None:
        self._buf = b""
        self._started = False
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf = self._buf + chunk
        if not self._started and buf:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
            self._started = True
        events: list[Event] = []
        start = 0
        n = len(buf)
        while True:
            cr, lf = buf.find(b"\r", start), buf.find(b"\n", start)
            if cr < 0 and lf < 0:
                break
            if cr >= 0 and (lf < 0 or cr < lf):
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt:nxt + 1] == b"\n":
                    nxt += 1
                elif nxt == n:
                    self._skip_lf = True  # a CRLF may be split across feeds
            else:
                end, nxt = lf, lf + 1
            event = self._line(buf[start:end].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = nxt
        self._buf = buf[start:]
        return events

    def close(self) -> list[Event]:
        """End of stream: an unterminated final event is dropped, as the spec says."""
        self._buf = b""
        self._data = []
        return []

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = ""
            return None
        ev = Event(data="\n".join(self._data), event=self._event or "message", id=self._id, retry=self._retry)
        self._data = []
        self._event = ""
        return ev


# ---- OpenAI chat-completion stream chunks -----------------------------------------------------
class Delta(msgspec.Struct):
    content: str | None = None
    role: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(msgspec.Struct):
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None
    index: int = 0


class ChatChunk(msgspec.Struct):
    """One ``chat.completion.chunk``; the last one carries `usage` when asked with include_usage."""

    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    model: str = ""
    id: str = ""


_CHUNK = msgspec.json.Decoder(ChatChunk)


def decode_chunk(data: str) -> ChatChunk:
    """Decode one event's data; raises `msgspec.DecodeError` (a ValueError) when it is not a chunk."""
    return _CHUNK.decode(data)
