"""ConfidenceUnmasking: MaskGIT's published count schedule, carry-over, top-k by confidence, annealing."""

import math

import pytest
import torch

from mixdistill.processes import ArccosSchedule, MaskingProcess, UniformProcess
from mixdistill.sampling.categorical import NEG_INF
from mixdistill.sampling.confidence import ConfidenceUnmasking, maskgit_schedule
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.sampling.step_rule import StepContext

S = 7


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def published_schedule(steps: int, tokens: int) -> list[int]:
    """valeoai/Maskgit-pytorch v1 ``adap_sche(step, "arccos")``, restated with Python floats."""
    r = [1 - i / (steps - 1) for i in range(steps)]  # linspace(1, 0, steps)
    w = [math.acos(v) / (math.pi / 2) for v in r]
    counts = [max(round(x / sum(w) * tokens), 1) for x in w]
    counts[-1] += tokens - sum(counts)
    return counts


def masked_state(B: int, D: int, unmasked: int = 0, seed: int = 0) -> torch.Tensor:
    """``(B, D)`` all masked except ``unmasked`` random positions per row holding random values."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((B, D), S, dtype=torch.long)
    for b in range(B):
        pos = torch.randperm(D, generator=g)[:unmasked]
        x[b, pos] = torch.randint(0, S, (unmasked,), generator=g)
    return x


def constrained_logits(process: MaskingProcess, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return process.constrain_logits(torch.randn(*x.shape, S, generator=g), x)


def test_schedule_matches_published_formula_at_8_steps_for_256_tokens():
    """Invariant: per-step unmasked counts equal MaskGIT's adap_sche (8 steps, 256 tokens), each >= 1,
    summing to 256; here that list is [1, 18, 26, 32, 38, 43, 48, 50]."""
    expected = published_schedule(8, 256)
    assert expected == [1, 18, 26, 32, 38, 43, 48, 50]
    assert list(maskgit_schedule(8, 256)) == expected
    for steps in range(2, 33):
        counts = maskgit_schedule(steps, 256)
        assert list(counts) == published_schedule(steps, 256) and min(counts) >= 1 and sum(counts) == 256


def test_chain_unmasks_the_scheduled_count_each_step_and_carries_tokens_over():
    """Invariant: in an 8-step chain over 256 tokens, step i unmasks exactly schedule[i] new tokens,
    never changes a token unmasked before, and leaves nothing masked at the end."""
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking()
    x = masked_state(3, 256)
    expected = published_schedule(8, 256)
    for i in range(8):
        t, s = torch.full((3,), 1 - i / 8), torch.full((3,), 1 - (i + 1) / 8)
        x_new = rule.step(process, x, constrained_logits(process, x, i), t, s, context=StepContext(i, 8))
        was = x != S
        assert torch.equal(x_new[was], x[was]), "unmasked tokens are carried over"
        assert ((x_new != S) & ~was).sum(1).tolist() == [expected[i]] * 3
        assert int(x_new.max()) < S + 1
        x = x_new
    assert not (x == S).any()


def test_exactly_k_per_row_capped_at_the_masked_count():
    """Invariant: rows with fewer masked tokens than the scheduled k unmask all of them; others exactly k."""
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking()
    x = torch.cat([masked_state(1, 64, unmasked=60), masked_state(1, 64, unmasked=10)])  # 4 and 54 masked
    k = maskgit_schedule(4, 64)[1]
    assert 4 < k < 54
    t, s = torch.full((2,), 0.75), torch.full((2,), 0.5)
    x_new = rule.step(process, x, constrained_logits(process, x), t, s, context=StepContext(1, 4))
    assert ((x_new != S) & (x == S)).sum(1).tolist() == [4, k]


def support_logits(sizes: list[int]) -> torch.Tensor:
    """Position d: uniform over its first sizes[d] values, so p(sampled) = 1/sizes[d] whatever is drawn."""
    logits = torch.full((1, len(sizes), S), NEG_INF)
    for d, c in enumerate(sizes):
        logits[0, d, :c] = 0.0
    return logits


@pytest.mark.parametrize("r_temp, context", [(0.0, StepContext(1, 4)), (4.5, StepContext(3, 4))])
def test_most_confident_tokens_are_chosen_when_noise_is_zero(r_temp, context):
    """Invariant: with no Gumbel noise (r_temp 0, or the last step of a chain, where it anneals to 0)
    the k chosen tokens are those of highest log p(sampled) (the smallest supports here)."""
    sizes = [5, 1, 7, 2, 6, 3, 4, 7]  # confidences log(1/size): positions 1, 3, 5, 6 are the top 4
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking(r_temp=r_temp)
    x = torch.full((1, 8), S)
    k = maskgit_schedule(context.total, 8)[context.index]
    x_new = rule.step(process, x, support_logits(sizes), torch.ones(1), torch.ones(1) * 0.5, context=context)
    chosen = (x_new[0] != S).nonzero().squeeze(1).tolist()
    assert chosen == sorted(sorted(range(8), key=lambda d: sizes[d])[:k])
    assert all(int(x_new[0, d]) < sizes[d] for d in chosen), "values come from each token's distribution"


def test_noise_changes_the_choice_early_in_a_chain():
    """Invariant: early in a chain (noise 4.5 * (1 - 1/3)) the choice is often not the most confident."""
    torch.manual_seed(0)
    sizes = [1, 2, 3, 4, 5, 6, 7, 7]
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking(r_temp=4.5)
    logits = support_logits(sizes).expand(200, -1, -1)
    x = torch.full((200, 8), S)
    x_new = rule.step(process, x, logits, torch.ones(200), torch.ones(200) * 0.5, context=StepContext(1, 4))
    top = torch.zeros(8, dtype=torch.bool)
    top[: maskgit_schedule(4, 8)[1]] = True
    assert ((x_new != S) != top).any(1).float().mean() > 0.3


def test_lone_step_count_follows_the_process_and_is_at_least_one():
    """Invariant: without context, k = round(m (alpha(s) - alpha(t)) / (1 - alpha(t))) for m masked
    tokens, at least 1 while any is masked; a step to s = 0 unmasks all."""
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking()
    x = torch.cat([masked_state(1, 256), masked_state(1, 256, unmasked=100), masked_state(1, 256, 200)])
    t, s = torch.tensor([1.0, 0.6, 0.3]), torch.tensor([0.95, 0.55, 0.3])

    def alpha(v: float) -> float:
        return 1 - math.acos(1 - v) / (math.pi / 2)

    m = [256, 156, 56]
    expected = [
        max(round(mm * (alpha(b) - alpha(a)) / (1 - alpha(a))), 1)
        for mm, a, b in zip(m, t.tolist(), s.tolist(), strict=True)
    ]
    assert expected[2] == 1  # s == t still unmasks one token
    x_new = rule.step(process, x, constrained_logits(process, x), t, s)
    assert ((x_new != S) & (x == S)).sum(1).tolist() == expected
    last = rule.step(process, x, constrained_logits(process, x), t, torch.zeros(3))
    assert not (last == S).any()


def test_lone_step_anneals_noise_by_t():
    """Invariant: without context the noise scale is r_temp * t (progress = 1 - t): at t -> 0 the
    choice is the most confident one even with r_temp 4.5."""
    rule = ConfidenceUnmasking(r_temp=4.5)
    assert torch.allclose(rule.progress(torch.tensor([1.0, 0.25, 0.0]), None), torch.tensor([0.0, 0.75, 1.0]))
    assert rule.progress(torch.tensor([0.3]), StepContext(2, 5)).item() == pytest.approx(0.5)


def test_num_samples_gives_independent_next_states():
    """Invariant: num_samples=n returns (B, n, D) next states, each carrying x_t over and unmasking k."""
    torch.manual_seed(0)
    process, rule = MaskingProcess(S, ArccosSchedule()), ConfidenceUnmasking()
    x = masked_state(2, 32, unmasked=8)
    t, s = torch.full((2,), 0.5), torch.full((2,), 0.4)
    out = rule.step(process, x, constrained_logits(process, x), t, s, num_samples=6)
    assert out.shape == (2, 6, 32)
    was = (x != S).unsqueeze(1).expand_as(out)
    assert torch.equal(out[was], x.unsqueeze(1).expand_as(out)[was])
    new = ((out != S) & ~was).sum(-1)
    k = rule.unmask_counts(process, (x == S).sum(1), t, s, 32, None)
    assert torch.equal(new, k.view(2, 1).expand(2, 6))
    assert len({tuple(r) for r in out[0].tolist()}) > 1, "the n draws differ"


def test_guidance_ramp_matches_maskgit():
    """Invariant: the guidance weight at step i of 8 is w * i / (8 - 1) (MaskGIT's _w), w = 3."""
    cfg = ClassifierFreeGuidance(3.0, ramp=True)
    assert [cfg.weight_at(StepContext(i, 8)) for i in range(8)] == pytest.approx(
        [3 * i / 7 for i in range(8)]
    )


def test_other_processes_are_rejected():
    """Invariant: the rule names the process it needs instead of failing obscurely."""
    x = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="MaskingProcess"):
        ConfidenceUnmasking().step(UniformProcess(S), x, torch.zeros(1, 4, S), torch.ones(1), torch.zeros(1))
