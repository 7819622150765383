"""Quality heuristics: each reason on a table of texts, in any letter case."""

from __future__ import annotations

import pytest

from engine.config import Quality
from engine.dedup.quality import check

CASES = [
    ("A marine biologist who studies coral bleaching.", None),
    ("I'M SORRY, but I cannot describe a teacher for you today.", "refusal"),
    ("As an AI language model, I think the reader is a teacher.", "refusal"),
    ("Sure, the reader is a teacher who loves chemistry.", "refusal"),
    ("A teacher named <NAME> who loves chemistry and tennis.", "placeholder"),
    ("A [ROLE] who works at the city library on weekends.", "placeholder"),
    ("JOHN DOE, a teacher who works at the city library.", "placeholder"),
    ("The Person In Question is a teacher at the city library.", "placeholder"),
    ("A One-Sentence Description of a teacher at the library.", "placeholder"),
    ("A teacher who writes <B>bold</B> notes for the class.", "placeholder"),
    ('{"persona": "a baker who bakes bread at dawn"}', "markup"),
    ("## A baker who bakes bread at dawn every day", "markup"),
    ("A **baker** who bakes bread at dawn every day", "markup"),
    ("A teacher 1234567890 1234567890 1234567890 12345 who", "not_text"),
]


@pytest.mark.parametrize(("text", "reason"), CASES)
def test_reasons(text: str, reason: str | None) -> None:
    assert check(text, Quality()) == reason
