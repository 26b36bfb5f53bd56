"""Decoding on the tiny random Llama: label scores, constrained choice and generation against
brute-force computations that run the model on the unpadded sequence with no cache."""

from __future__ import annotations

import random

import pytest
import torch

from latent_traits.eval.decoding import (
    LabelScores,
    Sampling,
    SharedPrefix,
    StopOnText,
    common_prefix_length,
    constrained_choice,
    cut_at_stop,
    generate,
    greedy_decode,
    left_pad,
    loglik_choice,
    score_labels,
    stop_token_ids,
)
from latent_traits.model import transformers_shims
from latent_traits.model.transformers_shims import RoomyLayer

LABEL_SETS = {
    "digits": ["0", "1"],
    "nli_words": ["entailment", "neutral", "contradiction"],
    # "pos" is one token and the first token of both "positively" and "positives"; "positive"
    # is a single token of its own
    "shared_prefix": ["positive", "positively", "positives", "pos"],
    # "1" is the first token of "10", which is the first two tokens of "100"
    "prefix_of_another": ["1", "10", "100"],
}
ATOL = 1e-4


def encode_labels(tokenizer, labels: list[str]) -> list[list[int]]:
    return [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]


def random_prompts(tokenizer, n: int, seed: int, min_len: int = 2, max_len: int = 24) -> list[list[int]]:
    """Random ordinary-token prompts of varied length (no special tokens)."""
    rng = random.Random(seed)
    vocab = len(tokenizer)
    return [[rng.randrange(100, vocab) for _ in range(rng.randint(min_len, max_len))] for _ in range(n)]


def real_prompts(tokenizer) -> list[list[int]]:
    texts = [
        "What is the sentiment of the below sentence?\nA wonderful, moving film.\nSentiment:\n",
        "What is 12345 + 678?\nAnswer:\n",
        "Premise: a man sleeps. Hypothesis: a man is awake.\nAnswer:\n",
    ]
    return [tokenizer(t, add_special_tokens=True)["input_ids"] for t in texts]


@torch.no_grad()
def full_logprobs(model, ids: list[int]) -> torch.Tensor:
    """Log-probs at every position of one unpadded sequence, no cache: (len, vocab)."""
    logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    return torch.log_softmax(logits.float(), dim=-1)


def brute_label_scores(model, prompt: list[int], label_tokens: list[list[int]], eos_id: int) -> LabelScores:
    token_lps, eos_lps = [], []
    n = len(prompt)
    for tokens in label_tokens:
        lps = full_logprobs(model, prompt + tokens)
        token_lps.append([float(lps[n + i - 1, t]) for i, t in enumerate(tokens)])
        eos_lps.append(float(lps[n + len(tokens) - 1, eos_id]))
    return LabelScores(token_lps, eos_lps)


def brute_constrained(model, prompt: list[int], label_tokens: list[list[int]], eos_id: int) -> int:
    """Greedy token-by-token decoding masked to the label trie; eos allowed where a label ends."""
    generated: list[int] = []
    while True:
        allowed = set()
        for tokens in label_tokens:
            if tokens[: len(generated)] == generated:
                allowed.add(eos_id if len(tokens) == len(generated) else tokens[len(generated)])
        logits = full_logprobs(model, prompt + generated)[-1]
        mask = torch.full_like(logits, float("-inf"))
        mask[sorted(allowed)] = 0.0
        token = int((logits + mask).argmax())
        if token == eos_id:
            return label_tokens.index(generated)
        generated.append(token)


def assert_scores_close(got: LabelScores, want: LabelScores, atol: float = ATOL) -> None:
    assert len(got.token_logprobs) == len(want.token_logprobs)
    for g, w in zip(got.token_logprobs, want.token_logprobs, strict=True):
        assert len(g) == len(w)
        assert g == pytest.approx(w, abs=atol)
    for g, w in zip(got.eos_logprobs, want.eos_logprobs, strict=True):
        assert g is None or w is None or g == pytest.approx(w, abs=atol)
    assert got.totals == pytest.approx(want.totals, abs=atol)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok_model(tiny_tokenizer_and_model):
    return tiny_tokenizer_and_model


def test_label_sets_tokenise_as_the_cases_need(tok_model):
    """The trie cases below rely on these tokenisations of SmolLM2's tokenizer."""
    tokenizer, _ = tok_model
    digits = encode_labels(tokenizer, LABEL_SETS["digits"])
    assert all(len(t) == 1 for t in digits)
    nli = encode_labels(tokenizer, LABEL_SETS["nli_words"])
    assert max(len(t) for t in nli) > 1  # multi-token labels
    positive, positively, positives, pos = encode_labels(tokenizer, LABEL_SETS["shared_prefix"])
    assert positively[0] == positives[0] == pos[0] and len(pos) == 1
    assert positively != positives and positive[0] != pos[0]
    one, ten, hundred = encode_labels(tokenizer, LABEL_SETS["prefix_of_another"])
    assert ten[: len(one)] == one and hundred[: len(ten)] == ten and len(one) < len(ten) < len(hundred)


@pytest.mark.parametrize("set_name", sorted(LABEL_SETS))
def test_constrained_choice_always_yields_a_label(tok_model, set_name):
    tokenizer, model = tok_model
    labels = LABEL_SETS[set_name]
    label_tokens = encode_labels(tokenizer, labels)
    prompts = random_prompts(tokenizer, 48, seed=sorted(LABEL_SETS).index(set_name)) + real_prompts(tokenizer)
    chosen = []
    for start in range(0, len(prompts), 16):
        batch = prompts[start:start + 16]
        scores = score_labels(model, batch, label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id)
        assert len(scores) == len(batch)
        for s in scores:
            index = constrained_choice(label_tokens, s)
            assert isinstance(index, int) and 0 <= index < len(labels)
            assert 0 <= loglik_choice(s) < len(labels)
            chosen.append(index)
    # the tiny random model is not degenerate: more than one label gets chosen over the prompts
    assert len(set(chosen)) > 1


@pytest.mark.parametrize("set_name", sorted(LABEL_SETS))
def test_score_labels_matches_brute_force(tok_model, set_name):
    tokenizer, model = tok_model
    eos = tokenizer.eos_token_id
    label_tokens = encode_labels(tokenizer, LABEL_SETS[set_name])
    prompts = random_prompts(tokenizer, 5, seed=7) + real_prompts(tokenizer)[:1]
    scores = score_labels(model, prompts, label_tokens, tokenizer.pad_token_id, eos)
    for prompt, got in zip(prompts, scores, strict=True):
        assert_scores_close(got, brute_label_scores(model, prompt, label_tokens, eos))


@pytest.mark.parametrize("set_name", sorted(LABEL_SETS))
def test_choices_match_brute_force_decoding(tok_model, set_name):
    tokenizer, model = tok_model
    eos = tokenizer.eos_token_id
    label_tokens = encode_labels(tokenizer, LABEL_SETS[set_name])
    prompts = random_prompts(tokenizer, 10, seed=11) + real_prompts(tokenizer)
    scores = score_labels(model, prompts, label_tokens, tokenizer.pad_token_id, eos)
    for prompt, s in zip(prompts, scores, strict=True):
        assert constrained_choice(label_tokens, s) == brute_constrained(model, prompt, label_tokens, eos)
        brute = brute_label_scores(model, prompt, label_tokens, eos)
        assert loglik_choice(s) == max(range(len(label_tokens)), key=brute.totals.__getitem__)


@pytest.mark.parametrize("set_name", sorted(LABEL_SETS))
def test_label_passes_run_only_where_a_decision_needs_them(tok_model, set_name):
    """End-of-text is scored exactly for labels another label starts with; a set of single-token
    labels costs one forward pass, the prompt's."""
    tokenizer, model = tok_model
    label_tokens = encode_labels(tokenizer, LABEL_SETS[set_name])
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        (scores,) = score_labels(model, real_prompts(tokenizer)[:1], label_tokens, tokenizer.pad_token_id,
                                 tokenizer.eos_token_id)
    finally:
        hook.remove()
    prefixes = [any(k != j and o[:len(t)] == t for k, o in enumerate(label_tokens)) for j, t in enumerate(label_tokens)]
    assert [lp is not None for lp in scores.eos_logprobs] == prefixes
    assert len(calls) == 1 + sum(len(t) > 1 or p for t, p in zip(label_tokens, prefixes, strict=True))
    if all(len(t) == 1 for t in label_tokens) and not any(prefixes):
        assert len(calls) == 1


def test_batched_label_scores_equal_batch_of_one(tok_model):
    tokenizer, model = tok_model
    label_tokens = encode_labels(tokenizer, LABEL_SETS["nli_words"] + LABEL_SETS["prefix_of_another"])
    prompts = random_prompts(tokenizer, 6, seed=3, min_len=1, max_len=30) + real_prompts(tokenizer)
    assert len({len(p) for p in prompts}) > 3  # really different lengths, so really padded
    batched = score_labels(model, prompts, label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id)
    for prompt, got in zip(prompts, batched, strict=True):
        (alone,) = score_labels(model, [prompt], label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id)
        assert_scores_close(got, alone, atol=1e-5)


def test_batched_generate_equals_batch_of_one(tok_model):
    tokenizer, model = tok_model
    prompts = random_prompts(tokenizer, 4, seed=5, min_len=2, max_len=20) + real_prompts(tokenizer)
    batched = generate(model, tokenizer, prompts, max_new_tokens=8, stop=[])
    singles = [generate(model, tokenizer, [p], max_new_tokens=8, stop=[])[0] for p in prompts]
    assert batched == singles
    assert any(batched)  # something was generated


@pytest.mark.parametrize("sampling", [None, Sampling(0.7, 0.95, seed=3)], ids=["greedy", "sampled"])
def test_generate_builds_no_autograd_graph(tok_model, sampling):
    """Decoding never records gradients (memory and time), greedy or sampled."""
    tokenizer, model = tok_model
    seen = []
    hook = model.register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    try:
        generate(model, tokenizer, random_prompts(tokenizer, 2, seed=1, min_len=2, max_len=6), max_new_tokens=3,
                 stop=[], sampling=sampling)
    finally:
        hook.remove()
    assert seen and not any(seen)


def test_greedy_decode_writes_what_transformers_generate_writes(tok_model):
    """Rows that stop at different steps are dropped from the batch (and its cache) as they stop;
    every row's text equals transformers' greedy generate on the same padded batch with the same
    stop tokens and stop strings (StopOnText)."""
    from transformers import StoppingCriteriaList

    tokenizer, model = tok_model
    prompts = random_prompts(tokenizer, 5, seed=9, min_len=2, max_len=25) + real_prompts(tokenizer)
    input_ids, attention, _ = left_pad(prompts, tokenizer.pad_token_id)
    width = input_ids.shape[1]
    free = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=10, do_sample=False,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=[tokenizer.eos_token_id])
    free = free[:, width:].tolist()
    # the tiny random model repeats one token per row: stop strings of 3 and 6 repeats, and one
    # row's token as a stop token, end rows at different steps (the rest run to the cap)
    stop = [tokenizer.decode(free[0][:3]), tokenizer.decode(free[1][:6])]
    stop_ids = [tokenizer.eos_token_id, free[-1][0]]
    want = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=10, do_sample=False,
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids,
                          stopping_criteria=StoppingCriteriaList([StopOnText(tokenizer, stop, width)]))
    written = want[:, width:]
    lengths = {int((row != tokenizer.pad_token_id).sum()) for row in written}
    assert len(lengths) > 2, lengths  # really ragged: rows leave the batch at different steps
    assert greedy_decode(model, tokenizer, prompts, 10, stop_ids, stop) == tokenizer.batch_decode(
        written, skip_special_tokens=True)


def test_generate_is_greedy_and_cut_at_stop(tok_model):
    """The greedy continuation is the argmax chain of the unpadded model; stops cut the text."""
    tokenizer, model = tok_model
    prompt = real_prompts(tokenizer)[1]
    ids = list(prompt)
    for _ in range(5):
        ids.append(int(full_logprobs(model, ids)[-1].argmax()))
    expected = tokenizer.decode(ids[len(prompt):], skip_special_tokens=True)
    assert generate(model, tokenizer, [prompt], max_new_tokens=5, stop=[]) == [expected]
    assert cut_at_stop("42\nmore\n\nrest", ["\n\n"]) == "42\nmore"
    assert cut_at_stop("42\nmore\n\nrest", ["\n\n", "\n"]) == "42"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"


def test_stop_on_text_catches_a_stop_spelt_over_several_tokens(tok_model):
    """'\n\n' is one token, but a model may write it as '\n' '\n': that row stops too; a stop in
    the prompt or one not yet complete does not stop a row."""
    tokenizer, _ = tok_model
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    newline, double = enc("\n"), enc("\n\n")
    assert len(newline) == 1 and len(double) == 1  # the case the criterion exists for
    prompt = enc("Q: a\n\nb\nAnswer:\n")
    generated = [enc("42") + newline + newline, enc("42") + newline + enc("7"), enc("42") + double + enc("7"),
                 enc("42") + enc(" x") + enc("7")]
    assert len({len(g) for g in generated}) == 1  # generate() grows every row by one token a step
    ids = torch.tensor([prompt + g for g in generated])
    stop = StopOnText(tokenizer, ["\n\n"], prompt_length=len(prompt))
    assert stop(ids).tolist() == [True, False, True, False]
    # with a prompt-only window nothing stops, though the prompt holds the stop string
    assert StopOnText(tokenizer, ["\n\n"], prompt_length=ids.shape[1])(ids).tolist() == [False] * 4


def test_left_pad_positions():
    input_ids, attention, positions = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions[:, -1].tolist() == [2, 0]
    assert positions[0].tolist() == [0, 1, 2]


# -- constrained_choice on hand-made scores (no model) ---------------------------------------

ONE, TEN, HUNDRED = [33], [33, 32], [33, 32, 32]


@pytest.mark.parametrize(
    ("eos_after_one", "zero_after_one", "expected"),
    [(-0.5, -2.0, 0), (-2.0, -0.5, 1)],
)
def test_constrained_choice_prefix_label_decided_by_eos(eos_after_one, zero_after_one, expected):
    """"1" vs "10": after the shared token, end-of-text against "0" decides."""
    scores = LabelScores(token_logprobs=[[-1.0], [-1.0, zero_after_one]], eos_logprobs=[eos_after_one, -0.1])
    assert constrained_choice([ONE, TEN], scores) == expected
    # the label order does not matter
    swapped = LabelScores([[-1.0, zero_after_one], [-1.0]], [-0.1, eos_after_one])
    assert constrained_choice([TEN, ONE], swapped) == 1 - expected


def test_constrained_choice_three_nested_labels():
    # "1" -> "0" beats eos; then after "10", eos (-0.2) beats another "0" (-3.0): "10"
    scores = LabelScores(
        token_logprobs=[[-1.0], [-1.0, -0.3], [-1.0, -0.3, -3.0]],
        eos_logprobs=[-2.0, -0.2, -0.1],
    )
    assert constrained_choice([ONE, TEN, HUNDRED], scores) == 1
    # now the third token wins over eos after "10": "100"
    scores = LabelScores([[-1.0], [-1.0, -0.3], [-1.0, -0.3, -0.05]], [-2.0, -0.2, -0.1])
    assert constrained_choice([ONE, TEN, HUNDRED], scores) == 2


def test_constrained_choice_is_greedy_not_total_likelihood():
    # the first token decides: label 0 starts more likely although label 1's total is higher
    scores = LabelScores(token_logprobs=[[-0.5, -6.0], [-1.5, -0.1]], eos_logprobs=[-0.1, -0.1])
    assert constrained_choice([[5, 6], [7, 8]], scores) == 0
    assert loglik_choice(scores) == 1


def test_constrained_choice_shared_prefix_then_branch():
    # labels 0 and 1 share token 11; after it, token 13 (label 1) beats 12 (label 0)
    scores = LabelScores(token_logprobs=[[-0.5, -3.0], [-0.5, -2.0], [-0.9]], eos_logprobs=[-9.0, -9.0, -0.1])
    assert constrained_choice([[11, 12], [11, 13], [14]], scores) == 1
    # the single-token label wins when its first token is the most likely
    scores = LabelScores([[-0.9, -3.0], [-0.9, -2.0], [-0.5]], [-9.0, -9.0, -9.0])
    assert constrained_choice([[11, 12], [11, 13], [14]], scores) == 2


def test_constrained_choice_single_label_and_eos_ignored_for_longer_labels():
    assert constrained_choice([[4, 5, 6]], LabelScores([[-9.0, -9.0, -9.0]], [-9.0])) == 0
    # a strong eos after a long label does not matter when a shorter label is not complete there
    scores = LabelScores([[-0.5, -0.4], [-0.5, -0.3]], [0.0, -5.0])
    assert constrained_choice([[1, 2], [1, 3]], scores) == 1


class CountingModel:
    """The model, counting its forward passes and the rows and cache length of each."""

    def __init__(self, model):
        self.model, self.passes = model, []

    def __call__(self, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))  # by the name transformers takes
        self.passes.append((kwargs["input_ids"].shape[0], 0 if cache is None else cache.get_seq_length()))
        return self.model(**kwargs)

    def parameters(self):
        return self.model.parameters()


def ragged_stops(tokenizer, model) -> tuple[list[list[int]], list[int], list[str]]:
    """12 prompts, the stop token ids and stop strings that make their rows stop at different
    steps: the tiny random model repeats one token per row, so stop strings of 2, 4 and 7 of a
    row's repeats stop some rows early and leave others to max_new_tokens."""
    prompts = random_prompts(tokenizer, 9, seed=21, min_len=2, max_len=30) + real_prompts(tokenizer)
    free = [tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in greedy_decode(model, tokenizer, prompts, 12, [tokenizer.eos_token_id], [])]
    stop = [tokenizer.decode(free[0][:2]), tokenizer.decode(free[3][:4]), tokenizer.decode(free[5][:7])]
    return prompts, [tokenizer.eos_token_id], stop


def test_continuous_batching_writes_what_one_batch_writes_in_fewer_passes(tok_model):
    """At most batch_size rows decode together; as rows stop, the next prompts join the running
    batch (their caches left-padded into its cache). Every row's text equals the text it gets in
    one batch of all prompts and alone, and the pool takes no more decoding steps than batches
    run one after another (each as long as its longest row), and fewer over the batch sizes."""
    tokenizer, model = tok_model
    prompts, stop_ids, stop = ragged_stops(tokenizer, model)
    together = greedy_decode(model, tokenizer, prompts, 12, stop_ids, stop)
    alone = [greedy_decode(model, tokenizer, [p], 12, stop_ids, stop)[0] for p in prompts]
    assert together == alone
    assert len({len(t) for t in together}) > 2  # ragged: rows stop at different steps
    steps = {}
    for batch_size in (2, 3, 5):
        pool = CountingModel(model)
        assert greedy_decode(pool, tokenizer, prompts, 12, stop_ids, stop, batch_size=batch_size) == together
        assert max(rows for rows, _ in pool.passes) <= batch_size
        joined = [i for i, (_, cached) in enumerate(pool.passes) if cached == 0][1:]
        # joined mid-run: the step after a later prefill runs its rows and the rows already running
        assert any(i + 1 < len(pool.passes) and pool.passes[i + 1][0] > pool.passes[i][0] for i in joined)
        one_by_one = CountingModel(model)
        for start in range(0, len(prompts), batch_size):  # batches one after another
            greedy_decode(one_by_one, tokenizer, prompts[start:start + batch_size], 12, stop_ids, stop)
        steps[batch_size] = [sum(cached > 0 for _, cached in m.passes) for m in (pool, one_by_one)]
    assert all(mine <= theirs for mine, theirs in steps.values()), steps
    assert sum(mine for mine, _ in steps.values()) < sum(theirs for _, theirs in steps.values()), steps


def test_a_decode_pool_larger_than_a_prompt_pass_writes_the_same_texts(tok_model):
    """Prompt passes (given as batches of prompt indices) fill a pool of max_rows decoding rows:
    passes of a few rows join until the pool is full, a pass larger than the free rows runs in
    parts, and every row writes the text it writes alone."""
    tokenizer, model = tok_model
    prompts, stop_ids, stop = ragged_stops(tokenizer, model)
    alone = [greedy_decode(model, tokenizer, [p], 12, stop_ids, stop)[0] for p in prompts]
    batches = [[4, 0, 9], [1, 2], [11, 3, 5, 6], [8, 7, 10]]
    for max_rows in (7, 2):
        pool = CountingModel(model)
        assert greedy_decode(pool, tokenizer, prompts, 12, stop_ids, stop, passes=batches, max_rows=max_rows) == alone
        prefills = [rows for rows, cached in pool.passes if cached == 0]
        steps = [rows for rows, cached in pool.passes if cached > 0]
        assert sum(prefills) == len(prompts) and max(steps) <= max_rows
        if max_rows == 7:  # the pool holds more rows than any one pass
            assert prefills[:2] == [3, 2] and max(steps) > max(map(len, batches))
        else:  # passes of 3 and 4 rows run 2 rows at a time
            assert max(prefills) == 2 and len(prefills) > len(batches)


def test_rows_keep_their_adapters_through_joins_and_drops(tok_model):
    """Each row's adapter name travels with it as rows join the running batch and leave it: a
    stand-in for routing makes adapter k's rows write token T_k; adapter 0's token is a stop
    token, so its rows leave after one token while the others run on."""
    tokenizer, model = tok_model
    prompts = random_prompts(tokenizer, 8, seed=4, min_len=3, max_len=20)
    names = [f"adapter{i % 3}" for i in range(len(prompts))]
    token_of = {f"adapter{k}": tokenizer(word, add_special_tokens=False)["input_ids"][0]
                for k, word in enumerate(["stop", " yes", " no"])}

    class Routed(CountingModel):
        def __call__(self, adapter_names, **kwargs):
            self.passes.append(list(adapter_names))
            out = self.model(**kwargs)
            for row, name in enumerate(adapter_names):
                out.logits[row, -1, token_of[name]] = 1e4
            return out

    routed = Routed(model)
    texts = greedy_decode(routed, tokenizer, prompts, 5, [tokenizer.eos_token_id, token_of["adapter0"]], [],
                          batch_size=3, adapter_names=names)
    want = {name: tokenizer.decode([t] if name == "adapter0" else [t] * 5, skip_special_tokens=True)
            for name, t in token_of.items()}
    assert texts == [want[n] for n in names]
    assert max(len(p) for p in routed.passes) <= 3 and len(set(map(tuple, routed.passes))) > 2


def test_common_prefix_leaves_each_prompt_a_token_of_its_own():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 1  # the shorter keeps its last token
    assert common_prefix_length([[1, 2, 3]]) == 2
    assert common_prefix_length([[7, 2], [1, 2]]) == 0
    assert common_prefix_length([]) == 0


def instruction_prompts(tokenizer, n: int, seed: int) -> list[list[int]]:
    head = tokenizer("What is the sentiment of the following review? Answer with a rating.\n",
                     add_special_tokens=False)["input_ids"]
    return [head + tail for tail in random_prompts(tokenizer, n, seed=seed, min_len=1, max_len=18)]


def test_a_shared_prefix_run_once_gives_the_whole_prompts_scores(tok_model):
    """Label scores after the instruction's cache (run once) equal those of the whole prompts, for
    single- and multi-token labels, at a fraction of the tokens."""
    tokenizer, model = tok_model
    prompts = instruction_prompts(tokenizer, 6, seed=13)
    shared = common_prefix_length(prompts)
    assert shared >= 10
    for labels in LABEL_SETS.values():
        label_tokens = encode_labels(tokenizer, labels)
        whole, after = CountingTokens(model), CountingTokens(model)
        want = score_labels(whole, prompts, label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id)
        prefix = SharedPrefix(after, prompts[0][:shared], None)
        got = score_labels(after, prompts, label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id,
                           prefix=prefix)
        for g, w in zip(got, want, strict=True):
            assert_scores_close(g, w, atol=1e-5)
            assert constrained_choice(label_tokens, g) == constrained_choice(label_tokens, w)
            assert loglik_choice(g) == loglik_choice(w)
        assert after.tokens < whole.tokens - (len(prompts) - 2) * shared  # the prefix ran once


def test_greedy_decoding_after_a_shared_prefix_writes_the_same_texts(tok_model):
    """Rows after the shared prefix's cache write what whole prompts write, also when rows stop
    at different steps and new rows join the running batch (the prefix columns travel along)."""
    tokenizer, model = tok_model
    prompts = instruction_prompts(tokenizer, 9, seed=3)
    prefix = SharedPrefix(model, prompts[0][:common_prefix_length(prompts)], None)
    stop_ids = [tokenizer.eos_token_id]
    free = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in greedy_decode(model, tokenizer, prompts, 8,
                                                                                      stop_ids, [])]
    stop = [tokenizer.decode(free[0][:2]), tokenizer.decode(free[4][:5])]  # ragged stops
    want = greedy_decode(model, tokenizer, prompts, 8, stop_ids, stop)
    assert len(set(want)) > 1 and len({len(t) for t in want}) > 1
    pool = CountingModel(model)
    assert greedy_decode(pool, tokenizer, prompts, 8, stop_ids, stop, batch_size=3, prefix=prefix) == want
    prefills = [i for i, (_, cached) in enumerate(pool.passes) if cached == prefix.length]
    assert any(i + 1 < len(pool.passes) and pool.passes[i + 1][0] > pool.passes[i][0] for i in prefills[1:])


def test_a_prompt_must_continue_the_shared_prefix(tok_model):
    tokenizer, model = tok_model
    prompts = instruction_prompts(tokenizer, 3, seed=1)
    prefix = SharedPrefix(model, prompts[0][:common_prefix_length(prompts)], None)
    for bad in (prefix.ids, [5, *prompts[0]]):  # the prefix alone; another start
        with pytest.raises(ValueError, match="shared prefix"):
            greedy_decode(model, tokenizer, [*prompts, bad], 4, [tokenizer.eos_token_id], [], prefix=prefix)
    with pytest.raises(ValueError, match="adapter names"):
        prefix.cache_for(["a", "b"], 2)  # run without routing, asked for routed rows


def test_without_joinable_caches_batches_run_one_after_another(tok_model, monkeypatch):
    """Where the cache's layers are not plain dynamic ones (sliding-window, quantized), no row can
    join running rows: a batch runs until its last row stops before the next starts, and after the
    first pass a batch takes up to batch_size rows across the given passes. Same texts."""

    tokenizer, model = tok_model
    prompts = random_prompts(tokenizer, 7, seed=21, min_len=2, max_len=30)
    free = [tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in greedy_decode(model, tokenizer, prompts, 10, [tokenizer.eos_token_id], [])]
    stop = [tokenizer.decode(free[0][:2]), tokenizer.decode(free[3][:5])]
    want = greedy_decode(model, tokenizer, prompts, 10, [tokenizer.eos_token_id], stop)
    monkeypatch.setattr(transformers_shims, "DynamicLayer", type("OtherLayer", (), {}))  # no layer is a plain one
    for passes, expected in ((None, [3, 3, 1]), ([[0, 1], [2], [3, 4, 5], [6]], [2, 3, 2])):
        pool = CountingModel(model)
        assert greedy_decode(pool, tokenizer, prompts, 10, [tokenizer.eos_token_id], stop, batch_size=3,
                             passes=passes, max_rows=8 if passes else None) == want
        prefills = [i for i, (_, cached) in enumerate(pool.passes) if cached == 0]
        assert [pool.passes[i][0] for i in prefills] == expected  # whole batches, each after the last ended
        assert all(pool.passes[i + 1][0] <= pool.passes[i][0] for i in range(len(pool.passes) - 1)
                   if pool.passes[i + 1][1] > 0)  # no step has more rows than the one before: none joined


def test_passes_must_hold_every_prompt_once_and_no_prompts_is_no_work(tok_model):
    tokenizer, model = tok_model
    prompts = random_prompts(tokenizer, 3, seed=1)
    for passes in ([[0, 1]], [[0, 1], [1, 2]], [[0, 1, 2, 3]]):
        with pytest.raises(ValueError, match="every prompt exactly once"):
            greedy_decode(model, tokenizer, prompts, 4, [tokenizer.eos_token_id], [], passes=passes)
    assert greedy_decode(model, tokenizer, [], 4, [tokenizer.eos_token_id], []) == []
    assert greedy_decode(model, tokenizer, [], 4, [tokenizer.eos_token_id], [], passes=[]) == []


@pytest.mark.slow
def test_continuous_batching_on_the_real_model_writes_what_each_prompt_writes_alone():
    """SmolLM2-135M (real weights, so a wrong cache row or position changes the text): a task-like
    instruction shared by every prompt, ragged stops at a blank line, a pool of 3 rows that others
    join. Every text equals the prompt's text decoded alone, whole."""
    from conftest import CACHE_DIR, CONF
    from omegaconf import OmegaConf

    from latent_traits.model.factory import load_tokenizer_and_model

    model_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "smollm2_135m.yaml"))
    tokenizer, model = load_tokenizer_and_model(model_cfg, CACHE_DIR)
    model.eval()
    questions = ["What is 7 + 5?", "Name a colour of the sky.", "Write one word that rhymes with cat.",
                 "How many legs does a spider have? Explain briefly.", "What is the capital of France?",
                 "Give a short greeting.", "What is 12 times 3?", "List two fruits."]
    prompts = [tokenizer(f"Answer the question in one short line.\n{q}\nAnswer:\n")["input_ids"] for q in questions]
    stop, stop_ids = ["\n\n"], stop_token_ids(tokenizer, ["\n\n"])
    alone = [greedy_decode(model, tokenizer, [p], 16, stop_ids, stop)[0] for p in prompts]
    prefix = SharedPrefix(model, prompts[0][:common_prefix_length(prompts)], None)
    assert prefix.length >= 8
    pool = CountingModel(model)
    assert greedy_decode(pool, tokenizer, prompts, 16, stop_ids, stop, batch_size=3, prefix=prefix) == alone
    assert len({len(tokenizer(t)["input_ids"]) for t in alone}) > 2  # rows stop at different steps
    assert max(rows for rows, _ in pool.passes) == 3
    prefills = [i for i, (_, cached) in enumerate(pool.passes) if cached == prefix.length]
    assert any(i + 1 < len(pool.passes) and pool.passes[i + 1][0] > pool.passes[i][0] for i in prefills[1:])


class CountingTokens(CountingModel):
    """The model, counting the tokens it is fed."""

    def __init__(self, model):
        super().__init__(model)
        self.tokens = 0

    def __call__(self, **kwargs):
        self.tokens += kwargs["input_ids"].numel()
        return self.model(**kwargs)


def test_the_cache_goes_by_the_name_the_model_takes(tok_model):
    """transformers renamed forward's `past_key_values` to `cache`: decoding passes the name the
    model's forward has, looking through wrappers; an older model class gets the old name."""
    import inspect

    from transformers import LlamaForCausalLM

    from latent_traits.model.transformers_shims import cache_keyword, returned_cache

    _, model = tok_model
    name = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
    assert cache_keyword(model) == cache_keyword(CountingModel(model)) == name

    class OldStyle(LlamaForCausalLM):
        def forward(self, input_ids=None, past_key_values=None, **kwargs):
            return super().forward(input_ids=input_ids, **kwargs)

    old = OldStyle.__new__(OldStyle)  # the class is all cache_keyword reads
    assert cache_keyword(old) == "past_key_values"
    out = model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=True)
    assert returned_cache(out) is not None and returned_cache(out).get_seq_length() == 3


def test_a_roomy_cache_layer_holds_what_a_dynamic_layer_holds():
    """Token by token, past its first room (it doubles) and through row selections, a RoomyLayer
    returns the keys and values a DynamicLayer returns; within its room it writes in place."""
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    start = torch.randn(4, 2, 5, 3), torch.randn(4, 2, 5, 3)
    plain, roomy = DynamicLayer(), RoomyLayer.holding(*start)
    plain.update(*start)
    buffer = roomy._keys.data_ptr()
    for step in range(RoomyLayer.ROOM + 9):
        new = torch.randn(plain.keys.shape[0], 2, 1 + step % 2, 3), torch.randn(plain.keys.shape[0], 2, 1 + step % 2, 3)
        want, got = plain.update(*new), roomy.update(*new)
        assert all(torch.equal(w, g) for w, g in zip(want, got, strict=True))
        if step == 20:
            assert roomy._keys.data_ptr() == buffer  # written in place: no copy of the cache
            index = torch.tensor([0, 2, 3])
            plain.batch_select_indices(index)
            roomy.batch_select_indices(index)
    assert roomy.get_seq_length() == plain.get_seq_length() > 5 + RoomyLayer.ROOM
    assert torch.equal(roomy.keys, plain.keys) and torch.equal(roomy.values, plain.values)


def test_a_roomy_layer_joins_rows_as_merge_needs_and_keeps_its_buffers_in_step():
    """join: both layers' rows left-padded with zeros to one width, the leading all-padding
    columns dropped; then DynamicLayer's own row and cache operations keep later writes right."""
    torch.manual_seed(1)
    mine = RoomyLayer.holding(torch.randn(2, 1, 4, 2), torch.randn(2, 1, 4, 2), room=3)
    theirs = RoomyLayer.holding(torch.randn(1, 1, 6, 2), torch.randn(1, 1, 6, 2))
    keys_a, keys_b = mine.keys.clone(), theirs.keys.clone()
    mine.join(theirs, width=7, drop=1)  # mine: 3 pad columns then 4; theirs: 1 then 6; the first dropped
    assert mine.keys.shape == (3, 1, 6, 2)
    assert torch.equal(mine.keys[:2, :, :2], torch.zeros(2, 1, 2, 2)) and torch.equal(mine.keys[:2, :, 2:], keys_a)
    assert torch.equal(mine.keys[2:], keys_b)
    for operation in (lambda layer: layer.reorder_cache(torch.tensor([2, 0, 1])),
                      lambda layer: layer.batch_repeat_interleave(2)):
        operation(mine)
        before = mine.keys.clone()
        new = torch.randn(mine.keys.shape[0], 1, 1, 2)
        keys, _ = mine.update(new, new)
        assert torch.equal(keys, torch.cat([before, new], dim=-2))
    mine.reset()
    new = torch.randn(2, 1, 3, 2)
    assert torch.equal(mine.update(new, new)[0], new) and mine.get_seq_length() == 3
