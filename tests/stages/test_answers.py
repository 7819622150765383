"""Math answers: extraction from solutions, normalisation to one canonical string, and the vote."""

from __future__ import annotations

import pytest

from engine.stages.answers import extract, normalize, vote


def canon(text: str) -> str | None:
    """What the math stage does with a solution or a bare answer."""
    return normalize(extract(text) or text)


# ---- extraction ---------------------------------------------------------------------------------

EXTRACT = [
    (r"Step 1 ... so the total is 6. Answer: \boxed{6}", "6"),
    (r"\boxed{\frac{3}{4}}", r"\frac{3}{4}"),
    (r"nested \boxed{\frac{\sqrt{2}}{2}} here", r"\frac{\sqrt{2}}{2}"),
    (r"first \boxed{1} then corrected: \boxed{2}", "2"),  # the last box wins
    (r"\boxed 7.", "7"),
    (r"\fbox{12}", "12"),
    ("Working...\nAnswer: $12.50", "$12.50"),
    ("so the answer is 42.", "42"),
    ("The final answer is: 3/4", "3/4"),
    ("**Answer:** 17 apples", "17 apples"),
    ("ANSWER = x = 5", "x = 5"),
    ("#### 72", "72"),
    ("Answer: 1\nLater: the answer is 2", "2"),  # the last answer line wins
    ("I could not solve it.", None),
    (r"cut off \boxed{\frac{1}{", None),  # an unbalanced box is no answer
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract(text: str, expected: str | None) -> None:
    assert extract(text) == expected


def test_boxed_beats_answer_line() -> None:
    assert extract("Answer: 5\n" + r"so \boxed{6}") == "6"


# ---- normalisation ------------------------------------------------------------------------------

# each row: spellings of one value, all normalising to `canonical`
SAME = [
    ("0.75", [r"\boxed{\frac{3}{4}}", "0.75", "3/4", r"\dfrac{3}{4}", r"$\tfrac34$", ".75", "0.750",
              r"\left(\frac{3}{4}\right)", "75%"]),
    ("1234", [r"\boxed{1,234}", "1234", "1,234", "1{,}234", r"\$1,234", "1234 dollars", "1234.00"]),
    ("12.5", ["Answer: $12.50", "12.5", "$12.50", "12.50 USD", r"\text{12.5 meters}", "25/2"]),
    ("-3", ["x = -3", "-3", "−3", "x=-3", r"\boxed{-3}", "(-3)"]),
    ("0.5", ["50%", r"50\%", "1/2", "0.5", r"\frac{1}{2}", r"\frac12"]),
    ("1234567.5", ["1,234,567.5"]),
    ("5", ["5", "5m", "5 km", "5 apples", "about 5", "x = 5", r"\boxed{x = 5}", r"5^\circ", "5.", "**5**"]),
    ("12", ["12 cm^2", "12 m²", r"12 \text{ cm}^2"]),
    ("5.25", ["5.25 minutes per kilometer"]),
    ("1000", [r"10^{3}", "10^3", r"1000"]),
    ("1/3", ["1/3", r"\frac{1}{3}", "2/6"]),
    ("47.1238898", [r"15\pi", r"15 \pi", "15π", r"\boxed{15\pi}", "47.1238898"]),
    ("1.41421356", [r"\sqrt{2}", "√2", r"\sqrt2"]),
    ("3", [r"\sqrt{9}", r"\sqrt[3]{27}"]),
    ("3.46410162", [r"2\sqrt{3}", r"\sqrt{12}"]),
    ("2.5", ["2 1/2", r"2\frac{1}{2}", r"2 \tfrac12", "5/2", "2.5", "x = 2 1/2", r"x = 2\frac12",
             r"2\frac{1}{2} cups", "about 2 1/2 hours"]),  # mixed numbers
    ("-3.5", ["-3 1/2", r"-3\frac{1}{2}"]),
    ("7", ["007", "07 apples", "7"]),
    ("150", ["1.5e2", "1.5E+2", "150"]),
    ("0.015", ["1.5e-2"]),
]


@pytest.mark.parametrize(("canonical", "spellings"), SAME, ids=[c for c, _ in SAME])
def test_spellings_normalise_equal(canonical: str, spellings: list[str]) -> None:
    for s in spellings:
        assert canon(s) == canonical, s


DIFFERENT = [
    ("50%", "50"),  # a percentage is a fraction of one
    ("1/3", "0.333"),
    ("2x + 3", "2"),  # a variable attached to a number is not a unit
    ("3 hours 20 minutes", "3"),
    ("x = 1, y = 2", "2"),
    (r"15\pi", "47.12"),
    ("-3", "3"),
    ("2 x 1/2", "2.5"),  # a product, not a mixed number
    ("1.05", "1.5"),  # leading zeros go, inner ones stay
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_values_stay_apart(a: str, b: str) -> None:
    assert canon(a) != canon(b)


@pytest.mark.parametrize(("text", "expected"), [
    ("Blue on 1, Green on 2", "blueon1,greenon2"),
    ("2x + 3", "2x+3"),
    (r"\text{Paris}", "paris"),
    ("(1, 2)", "(1,2)"),
])
def test_non_numbers_compare_as_text(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_empty_answers_are_none() -> None:
    assert normalize(None) is None
    assert normalize("   ") is None
    assert normalize("$$") is None


# ---- voting -------------------------------------------------------------------------------------


def test_two_of_three_agree() -> None:
    v = vote(["12.5", "12.5", "13"], agree=2)
    assert v.verified and v.answer == "12.5" and v.agreement == 2
    assert v.counts == [("12.5", 2), ("13", 1)]


def test_all_differ_is_unverified() -> None:
    v = vote(["1", "2", "3"], agree=2)
    assert not v.verified and v.answer is None and v.agreement == 1
    assert v.counts == [("1", 1), ("2", 1), ("3", 1)]  # ties keep first-seen order


def test_k5_m3() -> None:
    assert vote(["7", "7", "8", "7", None], agree=3).answer == "7"
    two = vote(["7", "7", "8", "8", "9"], agree=3)
    assert not two.verified and two.answer is None and two.agreement == 2


def test_missing_answers_do_not_vote() -> None:
    v = vote([None, None, "4"], agree=2)
    assert not v.verified and v.counts == [("4", 1)]
    assert vote([None, None, None], agree=2).agreement == 0


def test_a_tie_at_the_top_agrees_on_nothing() -> None:
    v = vote(["1", "1", "2", "2"], agree=2)
    assert not v.verified and v.answer is None and v.agreement == 2


def test_vote_over_spellings() -> None:
    sols = [r"... \boxed{\frac{3}{4}}", "... Answer: 0.75", r"... \boxed{75\%}"]
    assert vote([canon(s) for s in sols], agree=3).answer == "0.75"
