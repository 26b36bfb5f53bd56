"""Success-rate ratios of an adapter to the base on the questions that hold each feature (a
dependency relation), with paired bootstrap intervals over questions.

Point estimate: ratio = adapter successes / base successes among the questions holding the
feature (the two rates share their denominator). Interval: questions are resampled with
replacement from all of the task's questions (adapter and base outcomes stay paired, and every
feature sees the same resample); the interval is the (1 - level)/2 and (1 + level)/2 quantiles of
the resampled ratios, taken without interpolation (a resample whose base has no success gives an
infinite ratio; one where neither has a success is left out). `lift` divides the ratio by the
adapter's ratio over all questions, replicate by replicate: above 1, the adapter gains more on
questions with the feature than it does overall.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from latent_traits.errors import LatentTraitsError


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    return np.where((numerator == 0) & (denominator == 0), np.nan, out)


def _quantiles(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - level) / 2.0
    with warnings.catch_warnings():  # an all-NaN column: no success on either side, ever
        warnings.simplefilter("ignore", RuntimeWarning)
        low = np.nanquantile(replicates, tail, axis=0, method="lower")
        high = np.nanquantile(replicates, 1.0 - tail, axis=0, method="higher")
    return low, high


def relation_ratios(adapter: np.ndarray, base: np.ndarray, presence: pd.DataFrame,
                    n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per feature (presence's columns: a boolean question x feature table whose rows
    align with the outcome vectors): n_questions, successes, rates, ratio, lift and intervals."""
    adapter, base = np.asarray(adapter, dtype=float), np.asarray(base, dtype=float)
    held = presence.to_numpy(dtype=float)
    if not (len(adapter) == len(base) == len(held)):
        raise LatentTraitsError(
            f"outcomes and presence table disagree in length: {len(adapter)}, {len(base)}, {len(held)}")
    if not 0.0 < level < 1.0:
        raise LatentTraitsError(f"level={level} must lie in (0, 1)")
    n = held.sum(axis=0)
    successes_a, successes_b = adapter @ held, base @ held
    ratio = _ratio(successes_a, successes_b)
    overall = _ratio(np.array([adapter.sum()]), np.array([base.sum()]))[0]
    frame = pd.DataFrame({
        "n_questions": n.astype(int), "adapter_successes": successes_a.astype(int),
        "base_successes": successes_b.astype(int),
        "adapter_rate": _ratio(successes_a, n), "base_rate": _ratio(successes_b, n),
        "ratio": ratio, "lift": ratio / overall if np.isfinite(overall) and overall else np.nan,
        "overall_ratio": overall,
    }, index=presence.columns)
    if n_resamples > 0 and len(adapter):
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(len(adapter), np.full(len(adapter), 1.0 / len(adapter)),
                                  size=n_resamples).astype(float)
        boot_a, boot_b = weights @ (held * adapter[:, None]), weights @ (held * base[:, None])
        replicates = _ratio(boot_a, boot_b)
        overall_replicates = _ratio(weights @ adapter, weights @ base)[:, None]
        frame["ratio_low"], frame["ratio_high"] = _quantiles(replicates, level)
        with np.errstate(invalid="ignore", divide="ignore"):
            frame["lift_low"], frame["lift_high"] = _quantiles(replicates / overall_replicates, level)
    else:
        for column in ("ratio_low", "ratio_high", "lift_low", "lift_high"):
            frame[column] = np.nan
    frame["excludes_one"] = (frame["ratio_low"] > 1) | (frame["ratio_high"] < 1)
    frame.index.name = "relation"
    return frame
