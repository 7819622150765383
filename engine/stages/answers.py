"""Math answers: pull the final answer out of a solution, normalise it, and vote.

Pure functions, no I/O. `normalize` maps equal values to equal strings:

* numbers become their exact value: "1,234" -> "1234", "$12.50" -> "12.5", "\\frac{3}{4}" ->
  "0.75" (a terminating decimal) and "1/3" -> "1/3" (a fraction where the decimal does not end);
* a percentage is a fraction of one: "50%" -> "0.5", so it agrees with "1/2" but not with "50";
* "\\sqrt{..}" and "\\pi" are evaluated to 9 significant digits ("15\\pi" -> "47.1238898");
* LaTeX wrappers ($..$, \\(..\\), \\text{..}, \\left/\\right), a leading "x =", a leading
  "about", trailing units and words ("5.25 minutes per kilometer" -> "5.25") are dropped;
* anything that is not a number (a name, an algebraic expression) is compared as text,
  lower-cased, without spaces or LaTeX markup.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

__all__ = ["Verdict", "extract", "normalize", "vote"]

# ---- extraction ---------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_ANSWER_LINE = re.compile(r"\banswer\s*(?:\*\*)?\s*(?:is|:|=)\s*:?\s*(.+)|^\s*####\s*(.+)", re.I | re.M)


def _braced(text: str, start: int) -> str | None:
    """The content of the {...} group opening at `start` (nested braces kept), or None."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None  # unbalanced: the reply was cut off


def _boxed(solution: str) -> list[str]:
    """Every non-empty \\boxed{} answer, in order."""
    found = []
    for m in _BOXED.finditer(solution):
        inner = _braced(solution, m.end())
        if inner is None and solution[m.end():m.end() + 1] != "{":  # "\boxed 5"; not a cut-off "\boxed{"
            tok = re.match(r"[^\s$.,;]+", solution[m.end():])
            inner = tok.group(0) if tok else None
        if inner is not None and inner.strip():
            found.append(inner.strip())
    return found


PART_SEPARATOR = "; "


def extract_parts(solution: str, parts: int) -> str | None:
    """A multi-part problem's answers: the last ``parts`` \\boxed{} answers joined by "; " (None if fewer)."""
    found = _boxed(solution)
    return PART_SEPARATOR.join(found[-parts:]) if len(found) >= parts else None


def normalize_parts(answer: str | None) -> str | None:
    """`normalize` applied to each part of an `extract_parts` answer (None when any part is empty)."""
    if answer is None:
        return None
    parts = [normalize(a) for a in answer.split(PART_SEPARATOR)]
    return None if any(p is None for p in parts) else PART_SEPARATOR.join(p for p in parts if p is not None)


def extract(solution: str) -> str | None:
    """The final answer a solution states: its last \\boxed{}, else its last "Answer:" line."""
    boxed = _boxed(solution)
    if boxed:
        return boxed[-1]
    found = None
    for m in _ANSWER_LINE.finditer(solution):
        text = (m.group(1) or m.group(2) or "").strip().strip("*_").strip()
        if text:
            found = text
    if found is None:
        return None
    return found.rstrip(" .;!").strip() or None


# ---- normalisation ------------------------------------------------------------------------------

_TEXT_CMDS = re.compile(r"\\(?:text|mathrm|textbf|mathbf|textit|mbox|operatorname|mathit)\s*")
_DROP = re.compile(r"\\(?:left|right|displaystyle|,|;|!|:|quad|qquad)|\\ |\$|\\[()\[\]]")
_SIMPLE = {"\\cdot": "*", "\\times": "*", "×": "*", "·": "*", "\\div": "/", "÷": "/", "−": "-", "–": "-",
           "\\pi": " pi ", "π": " pi ", "\\dfrac": "\\frac", "\\tfrac": "\\frac", "^\\circ": "", "°": "",
           "\\%": "%", "{,}": ",", "\\approx": "=", "≈": "="}
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,]|\.\d*,)")
_LEADING_WORDS = re.compile(r"^(?:approximately|approx\.?|about|around|roughly|exactly|only|~)\s*", re.I)
_NUMERIC = re.compile(r"[-+]?(?:\d|\.\d|pi\b|sqrt\s*\(|\()(?:[\d.\s+\-*/^()]|pi\b|sqrt\b)*")
# directly attached letters count as units only for common unit letters ("5m"), not variables ("2x")
_UNIT_ATTACHED = re.compile(r"(?:[a-zA-Z]{2,}|[mgslhkcMGKL]|[$€£¥%])")


def _latex_args(text: str, cmd: str, nargs: int) -> str:
    """Replace `\\cmd{a}{b}` (nested braces allowed; `\\frac12` shorthand too) by "((a)/(b))"-style text."""
    out = []
    i = 0
    while True:
        j = text.find(cmd, i)
        if j == -1:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k = j + len(cmd)
        args: list[str] = []
        index = None
        if cmd == "\\sqrt" and text[k:k + 1] == "[":  # \sqrt[n]{x}
            end = text.find("]", k)
            if end != -1:
                index, k = text[k + 1 : end], end + 1
        while len(args) < nargs:
            while k < len(text) and text[k] == " ":
                k += 1
            inner = _braced(text, k)
            if inner is not None:
                args.append(_latex_args(inner, cmd, nargs))
                k += len(inner) + 2
            elif k < len(text) and (text[k].isalnum()):
                args.append(text[k])
                k += 1
            else:
                break
        if len(args) < nargs:
            out.append(cmd)
            i = j + len(cmd)
            continue
        if cmd == "\\frac":
            out.append(f"(({args[0]})/({args[1]}))")
        elif index is not None:
            out.append(f"(({args[0]})^(1/({index})))")
        else:
            out.append(f"sqrt({args[0]})")
        i = k


def _unwrap(text: str) -> str:
    """`\\text{5 apples}` -> ` 5 apples `, nested wrappers too."""
    while m := _TEXT_CMDS.search(text):
        inner = _braced(text, m.end())
        if inner is None:
            return text[: m.start()] + " " + text[m.end():]
        text = text[: m.start()] + " " + inner + " " + text[m.end() + len(inner) + 2 :]
    return text


# a mixed number: "2 1/2", "2\\frac{1}{2}", "-3 \\tfrac34", also after "x =" or before units (not "2 x 1/2")
_MIXED = re.compile(r"(?<![\d./])([-+]?)(\d+)(?:\s+(\d+)\s*/\s*(\d+)|\s*\\[dt]?frac\s*(?:\{(\d+)\}|(\d))\s*"
                    r"(?:\{(\d+)\}|(\d)))(?![\d/])")
_SCIENTIFIC = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d{1,3}$")


def _mixed(s: str) -> str:
    """Mixed numbers as one fraction each ("2 1/2" -> "5/2"); a fraction part must be proper."""

    def one(m: re.Match[str]) -> str:
        whole = int(m.group(2))
        num, den = (int(g) for g in (m.group(3) or m.group(5) or m.group(6), m.group(4) or m.group(7) or m.group(8)))
        return f"{m.group(1)}{whole * den + num}/{den}" if 0 < num < den else m.group(0)

    return _MIXED.sub(one, s)


def _clean(text: str) -> str:
    s = _unwrap(text.strip().strip("*_").strip())
    for a, b in _SIMPLE.items():
        s = s.replace(a, b)
    s = _DROP.sub(" ", s)
    s = _mixed(" ".join(s.split()))
    s = _latex_args(s, "\\frac", 2)
    s = _latex_args(s, "\\sqrt", 1)
    s = re.sub(r"√\s*(\d+(?:\.\d+)?|pi\b)", r"sqrt(\1)", s).replace("√", "sqrt")
    s = s.replace("{", "(").replace("}", ")").replace("\\", " ")
    s = " ".join(s.split())
    return s.strip(" ;:!").rstrip(".")  # not a leading ".": ".75"


class _NotNumber(Exception):
    pass


def _eval(node: ast.AST) -> Fraction | float:
    """Evaluate a small arithmetic AST exactly (Fractions) until sqrt or pi makes it a float."""
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(repr(node.value)) if isinstance(node.value, float) else Fraction(node.value)
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt"
            and len(node.args) == 1):
        v = _eval(node.args[0])
        if v < 0:
            raise _NotNumber
        if isinstance(v, Fraction):
            n, d = math.isqrt(v.numerator), math.isqrt(v.denominator)
            if n * n == v.numerator and d * d == v.denominator:
                return Fraction(n, d)
        return math.sqrt(v)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            if b == 0:
                raise _NotNumber
            return a / b
        if isinstance(node.op, ast.Pow):
            if isinstance(b, Fraction) and b.denominator == 1 and abs(b) <= 64:
                if a == 0 and b < 0:
                    raise _NotNumber
                return a ** int(b)
            if a < 0:
                raise _NotNumber
            return float(float(a) ** float(b))
    raise _NotNumber


def _number(expr: str) -> Fraction | float | None:
    e = re.sub(r"(?<![\d.])0+(?=\d)", "", expr.replace("^", "**"))  # "007" is 7 (Python refuses the literal)
    e = re.sub(r"(\d|\))\s*(?=pi\b|sqrt\b|\()", r"\1*", e)  # implicit products: 15pi, 2(3), 2sqrt(3)
    e = re.sub(r"(\bpi|\))\s*(?=\d|\(|pi\b|sqrt\b)", r"\1*", e)
    try:
        value = _eval(ast.parse(e, mode="eval"))
    except (SyntaxError, _NotNumber, ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _canonical(value: Fraction | float) -> str:
    if isinstance(value, float):
        text = format(value, ".9g")
        return "0" if text == "-0" else text
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _as_text(s: str) -> str:
    return re.sub(r"\s+", "", s).lower().strip(".")


def normalize(answer: str | None) -> str | None:
    """A canonical string for an extracted answer (None for an empty one); see the module doc."""
    if answer is None:
        return None
    s = _clean(answer)
    if not s:
        return None
    s = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
    if "=" in s and "," not in s:
        s = s.split("=")[-1].strip()  # "x = 5", "AB = 12 cm"; not "x = 1, y = 2"
    s = _LEADING_WORDS.sub("", s)
    s = re.sub(r"(?<=[\d)])\s*%", "/100", s)
    s = s.lstrip("$€£¥").strip()
    if not s:
        return None
    if _SCIENTIFIC.match(s):  # "1.5e2"
        return _canonical(Fraction(Decimal(s)))
    m = _NUMERIC.match(s)
    if m:
        expr = m.group(0).rstrip(" +-*/^(")
        rest = s[len(expr):]
        attached = rest[:1].isalpha() or rest[:1] in "$€£¥"
        if not rest.strip(" .!") or (
                (rest[:1] == " " or (attached and _UNIT_ATTACHED.match(rest))) and _is_unit(rest)):
            value = _number(expr)
            if value is not None:
                return _canonical(value)
    return _as_text(s)


def _is_unit(rest: str) -> bool:
    """Whether what follows a number is units or words ("km/h", "cm^2", "apples") and not more maths."""
    r = re.sub(r"(?:\^|\*\*)\s*\(?\d\)?|[²³]", "", rest)
    r = r.strip(" .!,")
    return bool(re.fullmatch(r"[^\W\d_][\w\s./'’$€£¥%-]*", r)) and not re.search(r"\d", r)


# ---- voting -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of a vote over k normalised answers."""

    counts: list[tuple[str, int]]  # each distinct answer with its votes, most votes first
    answer: str | None  # the agreed answer, or None
    verified: bool
    agreement: int  # votes for the most common answer


def vote(answers: list[str | None], agree: int) -> Verdict:
    """Keep the answer that at least `agree` solutions share; a tie at the top agrees on nothing."""
    tally = Counter(a for a in answers if a is not None)
    first = {a: i for i, a in reversed(list(enumerate(answers))) if a is not None}
    counts = sorted(tally.items(), key=lambda kv: (-kv[1], first[kv[0]]))
    top = counts[0][1] if counts else 0
    leaders = [a for a, n in counts if n == top]
    if top >= agree and len(leaders) == 1:
        return Verdict(counts, leaders[0], True, top)
    return Verdict(counts, None, False, top)
