"""Scorers: exact label match, and numeric answers with lm-evaluation-harness's GSM8K filters.

strict-match takes the first ``#### N``; flexible-extract takes the last number in the output.
Before comparing, commas, ``$``, everything up to ``#### `` and a trailing period are removed.
A task's `answer_forms` add answers that are not one number (Goat's): `remainder` ("q R r", both
parts must match) and `undefined` (a division by zero); flexible-extract then takes the last
number or form, whichever comes last.
"""

from __future__ import annotations

import re
from decimal import Decimal

STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
PLAIN_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
ANSWER_FORMS = {  # name -> (pattern, its canonical text)
    "remainder": (re.compile(r"(-?[0-9][0-9,]*)\s*R\s*([0-9][0-9,]*)"),
                  lambda m: f"{int(m.group(1).replace(',', ''))} R {int(m.group(2).replace(',', ''))}"),
    "undefined": (re.compile(r"\bundefined\b", re.IGNORECASE), lambda m: "undefined"),
}


def normalise_number(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    text = re.sub(r"^.*#### ", "", text, flags=re.DOTALL)
    text = text.replace(",", "").replace("$", "").strip()
    text = text.rstrip(".")
    if not text or text in ("-", "."):
        return None
    if not PLAIN_NUMBER.fullmatch(text):
        return text
    # 18.00 and 18 are the same answer; Decimal keeps integers exact at any size (a float would
    # merge Goat's large numbers beyond 2**53)
    value = Decimal(text)
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def strict_match(output: str) -> str | None:
    found = STRICT_PATTERN.search(output)
    return normalise_number(found.group(1)) if found else None


def last_form(text: str, forms: tuple[str, ...]) -> tuple[int, str] | None:
    """(end position, canonical text) of the last answer form in the text, or None."""
    found = []
    for name in forms:
        pattern, canonical = ANSWER_FORMS[name]
        found += [(m.end(), canonical(m)) for m in pattern.finditer(text)]
    return max(found) if found else None


def flexible_extract(output: str, forms: tuple[str, ...] = ()) -> str | None:
    form = last_form(output, forms)
    for match in reversed(list(FLEXIBLE_PATTERN.finditer(output))):
        candidate = normalise_number(match.group(1) or match.group(2))
        if candidate is not None and any(ch.isdigit() for ch in candidate):
            return form[1] if form and form[0] >= match.end() else candidate
    return form[1] if form else None


def reference_answer(example: dict, forms: tuple[str, ...] = ()) -> str | None:
    """The reference: the example's `answer` (in its canonical form where it is one of `forms`),
    else the ``#### N`` of its target."""
    if example.get("answer") not in (None, ""):
        answer = str(example["answer"]).strip()
        form = last_form(answer, forms)
        return form[1] if form and form[0] == len(answer) else normalise_number(answer)
    return strict_match(example.get("target", "")) or flexible_extract(example.get("target", ""), forms)


def score_numeric(output: str, reference: str | None, forms: tuple[str, ...] = ()) -> dict[str, object]:
    strict, flexible = strict_match(output), flexible_extract(output, forms)
    return {
        "strict": strict, "flexible": flexible,
        "strict_correct": strict is not None and strict == reference,
        "flexible_correct": flexible is not None and flexible == reference,
    }
