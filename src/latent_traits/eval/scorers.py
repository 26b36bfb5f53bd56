"""Scorers: exact label match, and numeric answers with lm-evaluation-harness's GSM8K filters.

strict-match takes the first ``#### N``; flexible-extract takes the last number in the output.
Before comparing, commas, ``$``, everything up to ``#### `` and a trailing period are removed.
"""

from __future__ import annotations

import re
from decimal import Decimal

STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
PLAIN_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


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


def flexible_extract(output: str) -> str | None:
    matches = FLEXIBLE_PATTERN.findall(output)
    for groups in reversed(matches):
        candidate = normalise_number(groups[0] or groups[1])
        if candidate is not None and any(ch.isdigit() for ch in candidate):
            return candidate
    return None


def reference_answer(example: dict) -> str | None:
    """The reference number: the example's `answer`, else the ``#### N`` of its target."""
    if example.get("answer") not in (None, ""):
        return normalise_number(str(example["answer"]))
    return strict_match(example.get("target", "")) or flexible_extract(example.get("target", ""))


def score_numeric(output: str, reference: str | None) -> dict[str, object]:
    strict, flexible = strict_match(output), flexible_extract(output)
    return {
        "strict": strict, "flexible": flexible,
        "strict_correct": strict is not None and strict == reference,
        "flexible_correct": flexible is not None and flexible == reference,
    }
