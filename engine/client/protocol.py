"""OpenAI-compatible chat-completion messages as msgspec Structs (decoded without dicts)."""

from __future__ import annotations

from typing import Any

import msgspec


class Message(msgspec.Struct, omit_defaults=True):
    role: str
    content: str | None = None


class ChatRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    n: int | None = None
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _ReplyMessage(msgspec.Struct):
    content: str | None = None
    role: str = "assistant"
    reasoning_content: str | None = None


class Choice(msgspec.Struct):
    message: _ReplyMessage
    finish_reason: str | None = None
    index: int = 0


class ChatResponse(msgspec.Struct):
    choices: list[Choice]
    model: str = ""
    usage: Usage | None = None
    id: str = ""


class ChatReply(msgspec.Struct, frozen=True):
    """What a stage gets back: the text, usage (None when the server sent none) and timing."""

    content: str
    model: str
    usage: Usage | None
    finish_reason: str | None
    latency: float


def estimate_tokens(req: ChatRequest) -> int:
    """Tokens a request may cost before it is sent: prompt estimate (chars/4) + max_tokens."""
    chars = sum(len(m.content or "") for m in req.messages)
    return chars // 4 + 4 * len(req.messages) + (req.max_tokens or 256)
