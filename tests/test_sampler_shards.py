"""Under DDP/FSDP each rank takes its own share of the seeded, resumable batch order."""

from __future__ import annotations

from latent_traits.data.datamodule import SeededBatchSampler

LENGTHS = [5, 9, 3, 7, 2, 8, 6, 4, 1, 10, 11]  # 11 examples, batches of 2: 6 batches, the last short


def sampler(rank: int = 0, replicas: int = 1) -> SeededBatchSampler:
    s = SeededBatchSampler(LENGTHS, batch_size=2, seed=3, group_by_length=True)
    s.shard(replicas, rank)
    return s


def test_ranks_split_the_single_process_order_without_overlap():
    whole = list(sampler())
    ranks = [list(sampler(r, 2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(sampler(0, 2)) == 3  # even: ranks stay in step
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]
    flat = [i for batches in ranks for b in batches for i in b]
    assert len(flat) == len(set(flat))


def test_a_remainder_that_would_leave_ranks_uneven_is_dropped():
    ranks = [list(sampler(r, 4)) for r in range(4)]  # 6 batches over 4 ranks: 1 each
    assert [len(b) for b in ranks] == [1, 1, 1, 1]


def test_a_rank_resumes_mid_epoch_at_its_own_next_batch():
    uninterrupted = list(sampler(1, 2))
    first = sampler(1, 2)
    it = iter(first)
    next(it)
    first.consumed = 1  # the LightningModule counts trained batches
    resumed = sampler(1, 2)
    resumed.load_state_dict(first.state_dict())
    assert list(resumed) == uninterrupted[1:]
