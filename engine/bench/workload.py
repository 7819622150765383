"""Benchmark prompts: synthetic ones of a chosen length, or read from a JSONL dataset."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import msgspec

from engine.errors import InputError

# Short, common English words: most byte-pair tokenizers give each (with its leading space) one token,
# so N words make a prompt of about N tokens. The server's usage reports the real count.
_WORDS = ("the of and to in is was for on are with as his they be at one have this from or had by hot word but what "
          "some we can out other were all there when up use your how said an each she which do their time if will "
          "way about many then them write would like so these her long make thing see him two has look more day "
          "could go come did number sound no most people my over know water than call first who may down side been "
          "now find any new work part take get place made live where after back little only round man year came show "
          "every good me give our under name very through just form great think say help low line before turn cause "
          "same mean differ move right boy old too does tell sentence set three want air well also play small end put "
          "home read hand port large spell add even land here must big high such follow act why ask men change went "
          "light kind off need house picture try us again animal point mother world near build self earth "
          "father").split()


@dataclass(frozen=True)
class Prompt:
    """One benchmark request: the chat messages and the completion length asked for."""

    messages: list[dict[str, str]]
    max_tokens: int
    approx_input_tokens: int


def synthetic(n: int, input_len: int, output_len: int, seed: int = 0) -> list[Prompt]:
    """`n` distinct prompts of about `input_len` tokens (distinct, so no prefix cache can serve them)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(max(1, input_len - 8)))
        text = f"Request {i}. Continue this text: {words}"
        out.append(Prompt([{"role": "user", "content": text}], output_len, input_len))
    return out


class _Row(msgspec.Struct):
    prompt: str | None = None
    text: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None
    output_len: int | None = None


def from_jsonl(path: Path, n: int, output_len: int) -> list[Prompt]:
    """`n` prompts from a JSONL file (cycled if it is shorter).

    Each line holds ``prompt`` or ``text`` (a user message) or ``messages`` (a chat), and
    optionally ``max_tokens`` or ``output_len`` (else `output_len`).
    """
    dec = msgspec.json.Decoder(_Row)
    rows: list[Prompt] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise InputError(f"{path}: cannot read the dataset: {e.strerror or e}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = dec.decode(line)
        except msgspec.DecodeError as e:
            raise InputError(f"{path}:{lineno}: not a dataset row: {e}") from None
        text = row.prompt or row.text
        messages = row.messages or ([{"role": "user", "content": text}] if text else None)
        if not messages:
            raise InputError(f"{path}:{lineno}: a row needs 'prompt', 'text' or 'messages'")
        chars = sum(len(m.get("content", "")) for m in messages)
        rows.append(Prompt(messages, row.max_tokens or row.output_len or output_len, chars // 4 + 1))
    if not rows:
        raise InputError(f"{path}: the dataset is empty")
    return [rows[i % len(rows)] for i in range(n)]
