"""Simple heuristics that turn away low-quality persona text, each with a reason code.

| reason        | rejects                                                               |
|---------------|-----------------------------------------------------------------------|
| too_short     | fewer than `min_words` words or `min_chars` characters                |
| too_long      | more than `max_words` words or `max_chars` characters                 |
| refusal       | refusals and assistant boilerplate ("I'm sorry", "as an AI", "Sure,") |
| placeholder   | template leftovers ("<name>", "one-sentence description", "[role]")   |
| markup        | leftover markup: HTML tags, code fences, JSON keys, markdown headers  |
| not_a_person  | no word that names a person or role, or a bare proper name            |
| repetition    | heavy repetition: few distinct words, or a word repeated in a run     |
| not_text      | mostly digits or symbols                                              |
"""

from __future__ import annotations

import re

from engine.config import Quality

# The patterns run on the lower-cased text (re.IGNORECASE costs several times as much), and the
# placeholder ones only when a cheap substring test says they could match: the gate checks
# every candidate, so this is on the hot path.
_REFUSAL = re.compile(
    r"\b(i'?m sorry|i am sorry|i cannot|i can'?t|as an ai|language model|i'?m not able|i am unable|"
    r"i'?m unable|i don'?t have|cannot assist|here is|here's|sure[,!]|certainly[,!]|of course[,!])")
_BRACKETS = re.compile(r"<[^>]{0,40}>|\[[a-z _-]{2,30}\]")
_PLACEHOLDER = re.compile(
    r"\bone[- ]sentence description\b|\bpersona description\b|"
    r"\bdescription of (?:the|that|this) person\b|\bthe person in question\b|\bjohn doe\b|\bjane doe\b")
_PLACEHOLDER_HINTS = ("description", "in question", " doe")
_MARKUP = re.compile(r"</?[a-z][^>]*>|```|^\s*#{1,6}\s|\"\s*persona\s*\"\s*:|[{}]|\*\*", re.M)
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
# words that name a person or a role; suffixes catch most occupations (baker, biologist, librarian ...)
_PERSON_WORDS = frozenset("""person people someone somebody anyone individual man woman men women boy girl child
children kid kids teen teenager adult parent parents mother father mom dad grandparent grandmother grandfather
family families student students professional expert enthusiast fan fans lover hobbyist beginner novice
amateur veteran retiree citizen resident member owner chef cook nurse doctor surgeon physician lawyer judge
clerk agent analyst scientist engineer artist author writer reader poet critic teacher tutor coach mentor
athlete player manager executive entrepreneur founder officer soldier pilot sailor farmer gardener worker
staff colleague friend neighbor neighbour patient client customer guest traveler traveller tourist hiker
climber parishioner volunteer activist advocate specialist consultant technician mechanic electrician
plumber carpenter architect designer developer programmer researcher academic scholar historian librarian
journalist editor reporter blogger podcaster homeowner landlord tenant buyer seller shopper collector
caregiver therapist pharmacist dentist paramedic firefighter police detective accountant banker investor
trader broker marketer salesperson recruiter administrator official politician diplomat priest pastor
monk nun rabbi imam musician singer dancer actor actress director producer photographer filmmaker
gamer streamer youth elder senior newcomer immigrant expat hunter angler fisherman beekeeper baker""".split())
_ROLE_SUFFIX = re.compile(r"(?:er|or|ist|ian|ant|ent|ee|eer|ess|ive|man|woman|smith|wright|ers|ors|ists|ians)$")


def check(text: str, q: Quality) -> str | None:
    """The reason code that rejects `text`, or None when it passes."""
    t = text.strip()
    words = _WORD.findall(t)
    if len(words) < q.min_words or len(t) < q.min_chars:
        return "too_short"
    if len(words) > q.max_words or len(t) > q.max_chars:
        return "too_long"
    low = t.lower()
    if _REFUSAL.search(low):
        return "refusal"
    if (("<" in low or "[" in low) and _BRACKETS.search(low)) or (
            any(h in low for h in _PLACEHOLDER_HINTS) and _PLACEHOLDER.search(low)):
        return "placeholder"
    if _MARKUP.search(low):
        return "markup"
    letters = sum(map(str.isalpha, t))
    if letters < q.min_letter_share * len(t):
        return "not_text"
    lower = [w.lower() for w in words]
    if len(lower) >= 8 and len(set(lower)) / len(lower) < q.min_distinct_share:
        return "repetition"
    run = 1
    for a, b in zip(lower, lower[1:], strict=False):
        run = run + 1 if a == b else 1
        if run >= 3:
            return "repetition"
    if q.require_person_word and not _names_a_person(words, lower):
        return "not_a_person"
    return None


def _names_a_person(words: list[str], lower: list[str]) -> bool:
    if all(w[:1].isupper() for w in words) and len(words) <= 4:
        return False  # a bare proper name ("Bobby Blair", "Shenzhen China")
    if "who" in lower or "whose" in lower:
        return True  # "a <noun> who ..." describes a person whatever the noun
    return any(w in _PERSON_WORDS or (len(w) > 4 and _ROLE_SUFFIX.search(w)) for w in lower)
