"""Dataset variants: each transform does what it says, and loading wires them into provenance."""

from __future__ import annotations

from collections import Counter

import pytest

from latent_traits.data.load import load_examples
from latent_traits.data.spec import TaskSpec
from latent_traits.data.transforms import apply_transforms, class_ratio, label_noise, subsample
from latent_traits.errors import LatentTraitsError

LABELS = ["negative", "neutral", "positive"]


def make_examples(counts: dict[str, int]) -> list[dict]:
    out = []
    for label, k in counts.items():
        out += [{"id": f"{label}-{i}", "input": f"text {label} {i}", "label": label, "target": label}
                for i in range(k)]
    return out


IMBALANCED = make_examples({"negative": 120, "neutral": 40, "positive": 640})


def test_subsample_is_seeded_and_exact():
    a, b = subsample(IMBALANCED, 50, seed=3), subsample(IMBALANCED, 50, seed=3)
    assert [e["id"] for e in a] == [e["id"] for e in b] and len(a) == 50
    assert [e["id"] for e in subsample(IMBALANCED, 50, seed=4)] != [e["id"] for e in a]
    assert len(subsample(IMBALANCED, None, seed=0)) == len(IMBALANCED)


def test_balancing_balances_as_large_as_the_rarest_class_allows():
    balanced = class_ratio(IMBALANCED, LABELS, "balanced", seed=0)
    assert Counter(e["label"] for e in balanced) == {"negative": 40, "neutral": 40, "positive": 40}
    assert len({e["id"] for e in balanced}) == 120


@pytest.mark.parametrize("n", [None, 100, 37])
def test_target_ratio_is_met(n):
    ratio = {"negative": 0.2, "neutral": 0.1, "positive": 0.7}
    chosen = class_ratio(IMBALANCED, LABELS, ratio, seed=1, n=n)
    counts = Counter(e["label"] for e in chosen)
    total = sum(counts.values())
    if n is not None:
        assert total == n
    for label, share in ratio.items():
        assert abs(counts[label] - share * total) < 1.0  # rounded, never off by a whole example


def test_ratio_that_the_data_cannot_meet_is_refused():
    with pytest.raises(LatentTraitsError, match="needs more examples"):
        class_ratio(IMBALANCED, LABELS, {"neutral": 1.0}, seed=0, n=100)
    with pytest.raises(LatentTraitsError, match="outside the label set"):
        class_ratio(IMBALANCED, LABELS, {"bogus": 1.0}, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.35, 1.0])
def test_wrong_mode_flips_exactly_the_stated_fraction(fraction):
    noisy, changed = label_noise(IMBALANCED, LABELS, fraction, "wrong", seed=7)
    flipped = sum(a["label"] != b["label"] for a, b in zip(IMBALANCED, noisy, strict=True))
    assert flipped == changed == round(fraction * len(IMBALANCED))
    assert all(e["target"] == e["label"] and e["label"] in LABELS for e in noisy)
    assert all(("original_label" in e) == (e["label"] != o["label"]) for e, o in zip(noisy, IMBALANCED, strict=True))


def test_shuffle_mode_keeps_the_class_distribution_and_flips_no_more_than_the_fraction():
    noisy, changed = label_noise(IMBALANCED, LABELS, 0.5, "shuffle", seed=2)
    assert Counter(e["label"] for e in noisy) == Counter(e["label"] for e in IMBALANCED)
    assert 0 < changed <= round(0.5 * len(IMBALANCED))


def test_bad_noise_settings_are_refused():
    with pytest.raises(LatentTraitsError, match="mode"):
        label_noise(IMBALANCED, LABELS, 0.2, "flip", seed=0)
    with pytest.raises(LatentTraitsError, match=r"\[0, 1\]"):
        label_noise(IMBALANCED, LABELS, 1.5, "wrong", seed=0)


def test_apply_transforms_orders_ratio_then_subsample_then_noise_and_reports():
    out, report = apply_transforms(
        IMBALANCED, LABELS, {"class_ratio": "balanced", "label_noise": {"fraction": 0.25, "mode": "wrong"}},
        n=60, seed=0)
    assert len(out) == 60
    assert Counter(e.get("original_label", e["label"]) for e in out) == {label: 20 for label in LABELS}
    assert report["label_noise"]["n_changed"] == 15 and report["class_ratio"] == "balanced"
    with pytest.raises(LatentTraitsError, match="unknown transforms"):
        apply_transforms(IMBALANCED, LABELS, {"balance": True}, n=None, seed=0)


def test_loading_records_transforms_and_class_distribution_in_provenance():
    spec = TaskSpec(name="amazon", type="classification", version="1", cue="Rating", scorer="exact_label",
                    labels=("1", "2", "3", "4", "5"), offline={"loader": "vader_amazon"})
    examples, prov = load_examples(spec, "train", n=50, seed=0,
                                   transforms={"label_noise": {"fraction": 1.0, "mode": "wrong"}})
    assert all(e["label"] != e["original_label"] for e in examples)
    assert prov["transforms"]["label_noise"]["n_changed"] == 50
    assert sum(prov["class_distribution"].values()) == 50
    clean, clean_prov = load_examples(spec, "train", n=50, seed=0)
    assert [e["id"] for e in clean] == [e["id"] for e in examples] and clean_prov["hash"] != prov["hash"]


def test_a_class_ratio_from_the_command_line_names_digit_labels_by_number():
    """Hydra reads `class_ratio={1:0.1,5:0.9}` with int keys: they name the labels "1" and "5"."""
    digits = [{"id": str(i), "label": str(1 + i % 5)} for i in range(100)]
    chosen = class_ratio(digits, ["1", "2", "3", "4", "5"], {1: 0.1, 5: 0.9}, seed=0, n=20)
    assert Counter(e["label"] for e in chosen) == {"1": 2, "5": 18}
