"""Stylometric features of a sample of texts, and a style similarity between samples.

Plain-Python definitions, so each value can be checked by hand:
  words      runs of letters/digits, apostrophes inside a word kept ("don't" is one word)
  sentences  pieces of a text ended by . ! ? (or a line break, or the text's end) that hold a word
  syllables  vowel groups (a e i o u y) of a word, a final silent "e" dropped, at least 1;
             a word without letters (a number) counts 1
Corpus features are ratios of totals over the sample (so long texts weigh more), except the
type-token ratio, which is the mean over texts (a corpus-wide ratio would fall with sample size).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

FUNCTION_WORDS = (
    "the", "a", "an", "and", "or", "but", "if", "of", "in", "on", "at", "to", "for", "with", "by",
    "from", "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "these",
    "those", "i", "you", "he", "she", "we", "they", "not", "no", "so", "than", "then", "what",
    "which", "who", "how", "many", "much", "each", "all", "some", "there",
)
SCALAR_FEATURES = ("sentence_length", "word_length", "type_token_ratio", "punctuation_rate",
                   "digit_rate", "flesch_reading_ease")
PUNCTUATION = frozenset(string.punctuation)
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    return [piece for piece in _SENTENCE_END.split(text) if words(piece)]


def syllables(word: str) -> int:
    word = word.lower()
    if not any(c.isalpha() for c in word):
        return 1
    count = len(_VOWEL_GROUP.findall(word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and count > 1:
        count -= 1
    return max(count, 1)


def flesch_reading_ease(n_words: int, n_sentences: int, n_syllables: int) -> float:
    """Flesch (1948): 206.835 - 1.015 words/sentence - 84.6 syllables/word."""
    if not n_words or not n_sentences:
        return float("nan")
    return 206.835 - 1.015 * n_words / n_sentences - 84.6 * n_syllables / n_words


def corpus_features(texts: Sequence[str]) -> dict[str, float]:
    """The scalar features and the function-word profile (share of all words, `fw_<word>`)."""
    n_words = n_sentences = n_syllables = word_chars = 0
    punctuation = digits = visible = 0
    ratios, counts = [], Counter()
    for text in texts:
        tokens = words(text)
        n_words += len(tokens)
        n_sentences += len(sentences(text))
        n_syllables += sum(syllables(w) for w in tokens)
        word_chars += sum(len(w) for w in tokens)
        lowered = [w.lower() for w in tokens]
        counts.update(lowered)
        if tokens:
            ratios.append(len(set(lowered)) / len(tokens))
        for c in text:
            if not c.isspace():
                visible += 1
                punctuation += c in PUNCTUATION
                digits += c.isdigit()
    nan = float("nan")
    features = {
        "sentence_length": n_words / n_sentences if n_sentences else nan,
        "word_length": word_chars / n_words if n_words else nan,
        "type_token_ratio": float(np.mean(ratios)) if ratios else nan,
        "punctuation_rate": punctuation / visible if visible else nan,
        "digit_rate": digits / visible if visible else nan,
        "flesch_reading_ease": flesch_reading_ease(n_words, n_sentences, n_syllables),
    }
    for word in FUNCTION_WORDS:
        features[f"fw_{word}"] = counts[word] / n_words if n_words else nan
    return features


def feature_table(samples: dict[str, Sequence[str]]) -> pd.DataFrame:
    """One row of corpus features per named sample of texts."""
    return pd.DataFrame({name: corpus_features(texts) for name, texts in samples.items()}).T


def style_distances(features: pd.DataFrame, function_word_weight: float = 1.0) -> pd.DataFrame:
    """Euclidean distances between the rows of a feature table after z-scoring each feature over
    the rows (a feature constant over all rows counts 0). The function-word profile is one block
    scaled so that it weighs `function_word_weight` times one scalar feature: without that its
    ~50 columns would drown the 6 scalar ones. A feature missing for a row (no words) counts 0."""
    spread = features.std(axis=0, ddof=0).replace(0.0, np.nan)
    z = ((features - features.mean(axis=0)) / spread).fillna(0.0)
    fw_columns = [c for c in z.columns if c.startswith("fw_")]
    if fw_columns:
        z[fw_columns] *= np.sqrt(function_word_weight / len(fw_columns))
    values = z.to_numpy(float)
    distances = np.sqrt(((values[:, None, :] - values[None, :, :]) ** 2).sum(axis=-1))
    return pd.DataFrame(distances, index=features.index, columns=features.index)


def style_similarity(rows: dict[str, Sequence[str]], columns: dict[str, Sequence[str]],
                     function_word_weight: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Similarity 1 / (1 + distance) between each row sample and each column sample (features
    z-scored over all samples together), and the feature table (rows `<name> (source)` /
    `<name> (target)`)."""
    table = feature_table({**{f"{k} (source)": v for k, v in rows.items()},
                           **{f"{k} (target)": v for k, v in columns.items()}})
    distances = style_distances(table, function_word_weight)
    block = distances.loc[[f"{k} (source)" for k in rows], [f"{k} (target)" for k in columns]]
    similarity = pd.DataFrame(1.0 / (1.0 + block.to_numpy()), index=list(rows),
                              columns=list(columns))
    return similarity, table
