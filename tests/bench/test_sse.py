"""The SSE decoder: any split of the byte stream gives the same events; OpenAI chunks decode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.client.sse import DONE, Event, SSEDecoder, decode_chunk

STREAM = (b"\xef\xbb\xbf: a comment\r\n"
          b"data: {\"a\": 1}\r\n\r\n"
          b"event: note\ndata: line one\ndata: line two\nid: 7\nretry: 250\n\n"
          b"data:no-space\r\r"
          b"data\n\n"
          b"data: [DONE]\n\n"
          b"data: unterminated")
EXPECTED = [Event('{"a": 1}'), Event("line one\nline two", event="note", id="7", retry=250),
            Event("no-space", id="7", retry=250), Event("", id="7", retry=250), Event(DONE, id="7", retry=250)]


def _decode(chunks: list[bytes]) -> list[Event]:
    dec = SSEDecoder()
    out = [ev for c in chunks for ev in dec.feed(c)]
    return out + dec.close()


def test_events_fields_comments_and_line_endings() -> None:
    assert _decode([STREAM]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    assert _decode(chunks) == EXPECTED


def test_crlf_split_between_feeds_is_one_line_end() -> None:
    assert _decode([b"data: x\r", b"\n\r", b"\n"]) == [Event("x")]


def test_openai_chunks() -> None:
    c = decode_chunk('{"id":"1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}')
    assert c.choices[0].delta.content == "Hi" and c.usage is None
    last = decode_chunk('{"id":"1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}')
    assert last.usage is not None and last.usage.completion_tokens == 2
    with pytest.raises(ValueError):
        decode_chunk("{oops")
