"""Persona-like texts made from templates: calibration data for quantisation and bench corpora.

Texts come in families (a base persona and rewordings of it) so that pairwise
cosines cover the whole range that dedup thresholds (0.5, 0.9) care about.
Deterministic for a seed; no data set is downloaded.
"""

from __future__ import annotations

import random

__all__ = ["persona_texts"]

_ROLES = (
    "nurse",
    "high school chemistry teacher",
    "software engineer",
    "organic farmer",
    "jazz pianist",
    "marine biologist",
    "bakery owner",
    "medieval historian",
    "firefighter",
    "tax accountant",
    "civil engineer",
    "pediatrician",
    "data scientist",
    "librarian",
    "truck driver",
    "sommelier",
    "wildlife photographer",
    "union organiser",
    "pharmacist",
    "urban planner",
    "game designer",
    "kindergarten teacher",
    "archaeologist",
    "paramedic",
    "patent attorney",
    "beekeeper",
    "structural biologist",
    "sports journalist",
    "chef",
    "social worker",
    "airline pilot",
    "electrician",
    "museum curator",
    "veterinarian",
    "climate scientist",
    "tailor",
    "bus driver",
    "investment banker",
    "poet",
    "plumber",
    "robotics researcher",
    "midwife",
    "translator",
    "carpenter",
    "ship captain",
    "astrophysicist",
    "dental hygienist",
    "stand-up comedian",
    "hospice chaplain",
    "cybersecurity analyst",
    "violin maker",
    "football coach",
    "real estate agent",
    "emergency room physician",
    "textile artist",
    "police detective",
    "seismologist",
    "hotel concierge",
    "speech therapist",
    "compiler engineer",
    "mountain guide",
    "community college math instructor",
    "open-source maintainer",
    "fishmonger",
)
_AGES = (
    "young",
    "retired",
    "mid-career",
    "newly qualified",
    "veteran",
    "semi-retired",
    "aspiring",
    "self-taught",
    "part-time",
    "award-winning",
)
_PLACES = (
    "in rural Vermont",
    "in Lagos",
    "in a small town in Kerala",
    "in Berlin",
    "on the outskirts of Melbourne",
    "in Montreal",
    "in a fishing village in Norway",
    "in downtown Chicago",
    "in Nairobi",
    "in Osaka",
    "in the Scottish Highlands",
    "in São Paulo",
    "in a suburb of Dallas",
    "in Kraków",
    "in Hanoi",
    "in Lima",
)
_FOCI = (
    "who specialises in {t}",
    "with a passion for {t}",
    "who writes a blog about {t}",
    "who volunteers teaching {t} on weekends",
    "researching {t}",
    "who mentors students interested in {t}",
    "known locally for work on {t}",
)
_TOPICS = (
    "coral reef restoration",
    "GPU compilers",
    "medieval manuscripts",
    "sourdough baking",
    "youth mental health",
    "renewable energy policy",
    "birdwatching",
    "chess openings",
    "accessible web design",
    "fermentation",
    "Byzantine coins",
    "urban cycling",
    "early childhood literacy",
    "pension reform",
    "wildfire prevention",
    "quantum computing",
    "folk music",
    "vintage motorcycles",
    "refugee resettlement",
    "soil microbiology",
    "marathon training",
    "board game design",
    "antibiotic resistance",
    "tiny houses",
)
_EXTRAS = (
    "and loves hiking",
    "and raises two children alone",
    "and is learning Japanese",
    "and plays in a local band",
    "and cares for an elderly parent",
    "and runs marathons",
    "and distrusts social media",
    "and collects rare books",
    "",
)
_SWAPS = {
    "who specialises in": ("specialising in", "focused on", "who focuses on"),
    "with a passion for": ("passionate about", "who loves", "with a love of"),
    "who writes a blog about": ("blogging about", "who runs a blog on", "writing online about"),
    "retired": ("former", "now-retired"),
    "young": ("early-career", "twenty-something"),
    "loves": ("enjoys", "is fond of"),
    "A ": ("An experienced ", "One "),
}


def _base(rng: random.Random) -> str:
    role = rng.choice(_ROLES)
    age = rng.choice(_AGES) + " " if rng.random() < 0.6 else ""
    text = f"A {age}{role} {rng.choice(_PLACES)} " + rng.choice(_FOCI).format(t=rng.choice(_TOPICS))
    extra = rng.choice(_EXTRAS)
    return f"{text} {extra}".strip() + "."


def _variant(text: str, rng: random.Random) -> str:
    """A rewording: a synonym swap, a dropped clause, or an added detail."""
    choice = rng.random()
    if choice < 0.5:
        keys = [k for k in _SWAPS if k in text]
        if keys:
            key = rng.choice(keys)
            return text.replace(key, rng.choice(_SWAPS[key]), 1)
    if choice < 0.75 and " and " in text:
        return text[: text.rindex(" and ")] + "."
    return text[:-1] + " " + rng.choice([e for e in _EXTRAS if e]) + "."


def persona_texts(n: int, seed: int = 0, family: int = 4) -> list[str]:
    """``n`` persona-like texts: families of up to ``family`` rewordings, shuffled."""
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < n:
        base = _base(rng)
        texts.append(base)
        current = base
        for _ in range(rng.randrange(family)):
            current = _variant(current if rng.random() < 0.5 else base, rng)
            texts.append(current)
    texts = texts[:n]
    rng.shuffle(texts)
    return texts
