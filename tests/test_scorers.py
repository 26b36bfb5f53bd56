"""Numeric answer extraction: lm-evaluation-harness's GSM8K filters (strict-match: the first
``#### N``; flexible-extract: the last number), then our normalisation."""

from __future__ import annotations

import re

import pytest

from latent_traits.eval.scorers import (
    FLEXIBLE_PATTERN,
    STRICT_PATTERN,
    flexible_extract,
    normalise_number,
    reference_answer,
    score_numeric,
    strict_match,
)

# (output, strict-match, flexible-extract)
CASES = [
    ("The answer is 1,234", None, "1234"),
    ("#### 1,234", "1234", "1234"),
    ("It costs $18.00.", None, "18"),
    ("#### $18", None, "18"),                        # strict's pattern has no "$"
    ("She has -5 apples left", None, "-5"),
    ("The change is -12 degrees.", None, "-12"),
    ("#### -7", "-7", "-7"),
    ("It weighs 3.5 kg", None, "3.5"),
    ("0.25 of the cake", None, "0.25"),
    ("So the total is 42.", None, "42"),
    ("#### 42.", "42", "42"),
    ("#### 18.00", "18", "18"),
    ("First #### 5 then #### 6", "5", "6"),           # strict: first; flexible: last
    ("#### 72\nThe answer is 72 because 3 and 4", "72", "4"),  # text after the answer
    ("3 apples and 4 pears make 7", None, "7"),
    ("He paid $1,250.50 for 2 bikes", None, "2"),
    ("He paid 2 bikes for $1,250.50", None, "1250.5"),
    ("No number here.", None, None),
    ("", None, None),
    ("####42", None, "42"),                           # strict needs "#### " with a space
    ("12 + 30 = 42", None, "42"),
    ("So 42, and that's it...", None, "42"),          # a trailing "..." is not a number
    ("Answer: 7\n\nQuestion: what is 8 + 9?", None, "9"),
]


@pytest.mark.parametrize(("output", "strict", "flexible"), CASES)
def test_extraction_table(output, strict, flexible):
    assert strict_match(output) == strict
    assert flexible_extract(output) == flexible


def test_patterns_are_lm_eval_harness_gsm8k_filters():
    assert STRICT_PATTERN.pattern == r"#### (\-?[0-9\.\,]+)"
    assert FLEXIBLE_PATTERN.pattern == r"(-?[$0-9.,]{2,})|(-?[0-9]+)"


def harness_flexible(output: str) -> str | None:
    """lm-eval-harness flexible-extract as written: last match, first non-empty group, then the
    regexes_to_ignore ``,`` ``$`` ``(?s).*#### `` ``\\.$`` (no numeric normalisation)."""
    matches = FLEXIBLE_PATTERN.findall(output)
    if not matches:
        return None
    text = next(g for g in matches[-1] if g)
    for pattern in [",", r"\$", r"(?s).*#### ", r"\.$"]:
        text = re.sub(pattern, "", text)
    return text.strip()


@pytest.mark.parametrize(
    "output",
    ["The answer is 1,234", "It costs $18.", "She has -5 apples", "#### 72", "3 and 4 make 7",
     "pi is 3.14", "A total of 1,000,000."],
)
def test_flexible_agrees_with_the_harness_where_no_normalisation_applies(output):
    assert flexible_extract(output) == harness_flexible(output)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18", "18"), ("18.00", "18"), ("18.0", "18"), ("18.50", "18.5"), ("-3", "-3"),
        ("-0", "0"), ("-0.50", "-0.5"), (".5", "0.5"), ("1,234", "1234"), ("$1,234.00.", "1234"),
        ("#### 7", "7"), ("The answer\n#### 1,000", "1000"), ("  42  ", "42"), ("42.", "42"),
        ("007", "7"), (None, None), ("", None), ("$", None), (".", None), ("-", None),
        ("1.2.3", "1.2.3"), ("abc", "abc"),
        # integers stay exact at any size (Goat's large-number arithmetic): no float rounding
        ("12345678901234567890", "12345678901234567890"), ("9007199254740993", "9007199254740993"),
        ("-98,765,432,109,876,543,210", "-98765432109876543210"),
        ("123456789012345678.50", "123456789012345678.5"),
        # words that float() would read are not numbers
        ("nan", "nan"), ("inf", "inf"), ("Infinity", "Infinity"),
    ],
)
def test_normalise_number(text, expected):
    """Documented deviation from the harness: numerically equal answers compare equal ("18.00" ==
    "18"); integers stay exact."""
    assert normalise_number(text) == expected


def test_large_numbers_that_differ_do_not_compare_equal():
    assert normalise_number("12345678901234567890") != normalise_number("12345678901234567891")
    assert not score_numeric("= 12345678901234567891", "12345678901234567890")["flexible_correct"]


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ({"answer": "1,234", "target": "#### 99"}, "1234"),      # answer wins over the target
        ({"answer": 42}, "42"),
        ({"answer": 0, "target": "#### 5"}, "0"),
        ({"answer": "18.00"}, "18"),
        ({"answer": None, "target": "Step 1 ... 3 * 4 = 12\n#### 12"}, "12"),
        ({"answer": "", "target": "3 + 4 = 7"}, "7"),              # Goat: a op b = c
        ({"target": "#### 5 and later 9"}, "5"),                   # strict first
        ({"target": "no number"}, None),
        ({}, None),
    ],
)
def test_reference_answer(example, expected):
    assert reference_answer(example) == expected


def test_score_numeric():
    out = score_numeric("3 + 4 = 7\n#### 7", "7")
    assert out == {"strict": "7", "flexible": "7", "strict_correct": True, "flexible_correct": True}
    out = score_numeric("It is 8.", "7")
    assert out["strict"] is None and not out["strict_correct"]
    assert out["flexible"] == "8" and not out["flexible_correct"]
    out = score_numeric("no idea", None)  # no reference: never correct
    assert not out["strict_correct"] and not out["flexible_correct"]
    assert score_numeric("$18.00.", "18")["flexible_correct"]
