"""pgrun.distributions against torch.distributions, closed forms and Monte-Carlo: log π,
entropy, KL, sampling from a NumPy generator, and the tanh bounds' log-determinant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import (
    AffineTransform,
    Normal,
    TanhTransform,
    TransformedDistribution,
    kl_divergence,
)
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical as TorchCategorical

from pgrun.distributions import (
    ActionBounds,
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
)

LOW, HIGH = np.array([-2.0, 0.5], dtype=np.float32), np.array([2.0, 1.5], dtype=np.float32)


def logits(n=40, k=5, scale=2.0, seed=0):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def gaussian_params(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=torch.float64),
            0.5 * torch.randn(n, d, generator=g, dtype=torch.float64))


# ------------------------------------------------------------------------ Categorical

def test_categorical_log_prob_entropy_mode_against_torch():
    z = logits()
    dist, ref = Categorical(z), TorchCategorical(logits=z)
    actions = torch.arange(40) % 5
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    torch.testing.assert_close(dist.mode(), z.argmax(-1))
    # shift invariance of the logits (log-softmax, not the raw logits)
    torch.testing.assert_close(Categorical(z + 3.0).log_prob(actions), ref.log_prob(actions))


def test_categorical_log_prob_by_hand():
    dist = Categorical(torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64))
    # p = (1/4, 3/4)
    assert float(dist.log_prob(torch.tensor([1]))) == pytest.approx(math.log(0.75))
    assert float(dist.entropy()) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_categorical_kl_against_torch_and_monte_carlo():
    p, q = Categorical(logits(seed=1)), Categorical(logits(seed=2))
    kl = p.kl(q)
    torch.testing.assert_close(kl, kl_divergence(TorchCategorical(logits=logits(seed=1)),
                                                 TorchCategorical(logits=logits(seed=2))))
    assert (kl > 0).all()
    torch.testing.assert_close(p.kl(p), torch.zeros(40, dtype=torch.float64))
    # KL[p‖q] = E_{a~p}[log p(a) − log q(a)], Monte-Carlo from p's own sampler
    rng = np.random.default_rng(0)
    m = 4000
    draws = torch.stack([p.sample(rng) for _ in range(m)])  # (m, 40)
    rows = torch.arange(40)
    per = p.log_p[rows, draws] - q.log_p[rows, draws]  # log p(a) − log q(a) per draw
    est, se = per.mean(0), per.std(0) / math.sqrt(m)
    assert float(((est - kl).abs() / se).max()) < 4.5
    # the reversed KL is another number, beyond that tolerance somewhere
    assert float(((est - q.kl(p)).abs() / se).max()) > 10


def test_categorical_kl_gradient_flows_to_self_only_after_detach_of_other():
    z = logits(n=4).requires_grad_()
    old = Categorical(z).detach()
    kl = Categorical(z).kl(old).sum()
    (grad,) = torch.autograd.grad(kl, z)
    torch.testing.assert_close(grad, torch.zeros_like(z))  # KL's gradient vanishes at π = π_old
    assert not old.log_p.requires_grad


def test_categorical_sampling_frequencies_follow_the_policy():
    z = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    p = z.softmax(-1)[0].double().numpy()
    p /= p.sum()
    rng = np.random.default_rng(3)
    dist = Categorical(z.expand(20_000, 4))
    counts = np.bincount(dist.sample(rng).numpy(), minlength=4)
    chi2 = stats.chisquare(counts, 20_000 * p)
    assert chi2.pvalue > 1e-4
    # a uniform sampler would be rejected by the same test
    assert stats.chisquare(counts, np.full(4, 5000)).pvalue < 1e-10
    # the stream is the generator's: same seed, same draws; another seed, others
    a = dist.sample(np.random.default_rng(7))
    assert torch.equal(a, dist.sample(np.random.default_rng(7)))
    assert not torch.equal(a, dist.sample(np.random.default_rng(8)))


# --------------------------------------------------------------------- DiagGaussian

def test_gaussian_log_prob_entropy_mode_against_torch():
    mean, log_std = gaussian_params()
    dist = DiagGaussian(mean, log_std)
    ref = Normal(mean, log_std.exp())
    actions = mean + 2.0 * torch.randn(40, 3, dtype=torch.float64)
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    torch.testing.assert_close(dist.mode(), mean)
    # a state-independent log σ (one row) broadcasts over the batch
    shared = DiagGaussian(mean, log_std[0])
    ref = Normal(mean, log_std[0].exp().expand_as(mean))
    torch.testing.assert_close(shared.log_prob(actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(shared.entropy(), ref.entropy().sum(-1))


def test_gaussian_kl_against_torch_and_closed_form_by_hand():
    (m1, s1), (m2, s2) = gaussian_params(seed=1), gaussian_params(seed=2)
    kl = DiagGaussian(m1, s1).kl(DiagGaussian(m2, s2))
    ref = kl_divergence(Normal(m1, s1.exp()), Normal(m2, s2.exp())).sum(-1)
    torch.testing.assert_close(kl, ref)
    # by hand, one dimension: N(0, 1) ‖ N(1, 2²): log 2 + (1 + 1)/8 − ½
    one = DiagGaussian(torch.zeros(1, 1), torch.zeros(1, 1)).kl(
        DiagGaussian(torch.ones(1, 1), torch.full((1, 1), math.log(2.0))))
    assert float(one) == pytest.approx(math.log(2.0) + 2.0 / 8.0 - 0.5, rel=1e-6)
    # the reversed KL differs (asymmetry is visible)
    assert not torch.allclose(kl, DiagGaussian(m2, s2).kl(DiagGaussian(m1, s1)))


def test_gaussian_kl_against_monte_carlo():
    (m1, s1), (m2, s2) = gaussian_params(n=10, seed=3), gaussian_params(n=10, seed=4)
    p, q = DiagGaussian(m1, s1), DiagGaussian(m2, s2)
    rng = np.random.default_rng(1)
    m = 20_000
    draws = torch.stack([p.sample(rng) for _ in range(m)])  # float32 noise, (m, 10, 3)
    per = (p.log_prob(draws.double()) - q.log_prob(draws.double()))
    est, se = per.mean(0), per.std(0) / math.sqrt(m)
    assert float(((est - p.kl(q)).abs() / se).max()) < 4.5
    assert float(((est - q.kl(p)).abs() / se).max()) > 10


def test_gaussian_detach_and_kl_gradient_at_equality():
    mean, log_std = (t.clone().requires_grad_() for t in gaussian_params(n=4))
    bounds = ActionBounds(LOW, HIGH, "tanh")
    dist = DiagGaussian(mean, log_std, bounds)
    old = dist.detach()
    assert not old.mean.requires_grad and not old.log_std.requires_grad and old.bounds is bounds
    kl = dist.kl(old).sum()
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-12)
    for grad in torch.autograd.grad(kl, (mean, log_std)):  # a minimum at π = π_old
        torch.testing.assert_close(grad, torch.zeros_like(grad))
    # away from it, the gradient is the closed form's: ∂KL/∂μ_p = (μ_p − μ_q)/σ_q²
    shifted = DiagGaussian(mean + 0.5, log_std, bounds)
    (grad,) = torch.autograd.grad(shifted.kl(old).sum(), mean)
    torch.testing.assert_close(grad, 0.5 * (-2 * log_std.detach()).exp())


def test_gaussian_sampling_moments_follow_the_distribution():
    mean = torch.tensor([[1.0, -2.0]]).expand(50_000, 2)
    log_std = torch.tensor([math.log(0.5), math.log(3.0)])
    dist = DiagGaussian(mean, log_std)
    u = dist.sample(np.random.default_rng(5)).double()
    assert u.shape == (50_000, 2)
    se_mean = torch.tensor([0.5, 3.0]) / math.sqrt(50_000)
    assert bool(((u.mean(0) - torch.tensor([1.0, -2.0])).abs() < 4 * se_mean.double()).all())
    torch.testing.assert_close(u.std(0), torch.tensor([0.5, 3.0], dtype=torch.float64),
                               rtol=0.02, atol=0)
    # each dimension is normal (KS test against its own N(μ, σ))
    for i, (mu, sd) in enumerate(((1.0, 0.5), (-2.0, 3.0))):
        assert stats.kstest(u[:, i].numpy(), "norm", args=(mu, sd)).pvalue > 1e-4
    # swapping σ between the dimensions would be rejected
    assert stats.kstest(u[:, 0].numpy(), "norm", args=(1.0, 3.0)).pvalue < 1e-10
    # the noise is the generator's: same seed, same draws
    a = dist.sample(np.random.default_rng(9))
    assert torch.equal(a, dist.sample(np.random.default_rng(9)))
    assert not torch.equal(a, dist.sample(np.random.default_rng(10)))


def test_gaussian_entropy_reaches_log_std():
    mean = torch.zeros(4, 2)
    log_std = torch.zeros(2, requires_grad=True)
    (grad,) = torch.autograd.grad(DiagGaussian(mean, log_std).entropy().sum(), log_std)
    torch.testing.assert_close(grad, torch.full((2,), 4.0))  # ∂H/∂log σ_i = 1 per state


# --------------------------------------------------------------------------- bounds

def test_tanh_log_det_against_torch_transforms_and_in_the_tails():
    bounds = ActionBounds(LOW, HIGH, "tanh")
    u = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    a = torch.from_numpy(bounds.to_env(u.numpy()))
    assert bool(((a >= torch.from_numpy(LOW)) & (a <= torch.from_numpy(HIGH))).all())
    transform = [TanhTransform(), AffineTransform(torch.from_numpy((HIGH + LOW) / 2),
                                                  torch.from_numpy((HIGH - LOW) / 2))]
    ref = sum(t.log_abs_det_jacobian(x, t(x)) for t, x in
              zip(transform, (u, torch.tanh(u)), strict=True)).sum(-1)
    torch.testing.assert_close(bounds.log_det(u), ref, atol=1e-4, rtol=1e-5)
    # by hand at u = 0: Σ log s_i = log 2 + log 0.5
    assert float(bounds.log_det(torch.zeros(1, 2))) == pytest.approx(0.0, abs=1e-6)
    # finite (and ≈ Σ_i log s_i + 2 log 2 − 2|u_i|) far in the tails, where 1 − tanh² underflows
    far = torch.tensor([[40.0, -40.0]])
    assert torch.isfinite(bounds.log_det(far)).all()
    assert float(bounds.log_det(far)) == pytest.approx(
        math.log(2.0) + math.log(0.5) + 2 * (2 * math.log(2.0) - 2 * 40.0), rel=1e-5)


def test_tanh_log_prob_is_the_density_of_the_env_action():
    bounds = ActionBounds(LOW, HIGH, "tanh")
    mean, log_std = torch.randn(300, 2), torch.full((2,), 0.3)
    dist = DiagGaussian(mean, log_std, bounds)
    u = dist.sample(np.random.default_rng(0))
    a = torch.from_numpy(bounds.to_env(u.numpy()))
    squashed = TransformedDistribution(Normal(mean, log_std.exp()), [
        TanhTransform(), AffineTransform(torch.from_numpy((HIGH + LOW) / 2),
                                         torch.from_numpy((HIGH - LOW) / 2))])
    keep = (torch.tanh(u).abs() < 0.999).all(-1)  # torch's atanh is lossy near ±1
    assert keep.float().mean() > 0.5
    torch.testing.assert_close(dist.log_prob(u)[keep], squashed.log_prob(a).sum(-1)[keep],
                               atol=2e-3, rtol=1e-4)
    # the Gaussian's entropy; the correction does not depend on θ (ratios unchanged)
    plain = DiagGaussian(mean, log_std)
    torch.testing.assert_close(dist.entropy(), plain.entropy())
    torch.testing.assert_close(dist.log_prob(u) - plain.log_prob(u), -bounds.log_det(u))


def test_clip_bounds_clip_and_leave_log_prob_alone():
    bounds = ActionBounds(LOW, HIGH, "clip")
    u = np.array([[-5.0, 1.0], [0.0, 9.0]], dtype=np.float32)
    np.testing.assert_array_equal(bounds.to_env(u), [[-2.0, 1.0], [0.0, 1.5]])
    mean = torch.zeros(2, 2)
    with_b = DiagGaussian(mean, torch.zeros(2), bounds).log_prob(torch.from_numpy(u))
    torch.testing.assert_close(with_b, DiagGaussian(mean, torch.zeros(2)).log_prob(torch.from_numpy(u)))


def test_bounds_errors():
    with pytest.raises(ValueError, match="one of"):
        ActionBounds(LOW, HIGH, "squash")
    with pytest.raises(ValueError, match="finite"):
        ActionBounds(np.full(2, -np.inf), np.full(2, np.inf), "tanh")


# ------------------------------------------------------- MultiCategorical, Bernoulli

NVEC = (3, 2, 4)


def test_multicategorical_against_independent_torch_categoricals():
    z, other = logits(k=sum(NVEC)), logits(k=sum(NVEC), seed=1)
    dist, q = MultiCategorical(z, NVEC), MultiCategorical(other, NVEC)
    refs = [TorchCategorical(logits=part) for part in z.split(NVEC, dim=-1)]
    qrefs = [TorchCategorical(logits=part) for part in other.split(NVEC, dim=-1)]
    actions = torch.stack([r.sample() for r in refs], dim=-1)
    torch.testing.assert_close(dist.log_prob(actions),
                               sum(r.log_prob(actions[:, j]) for j, r in enumerate(refs)))
    torch.testing.assert_close(dist.entropy(), sum(r.entropy() for r in refs))
    torch.testing.assert_close(dist.kl(q), sum(kl_divergence(r, s) for r, s in zip(refs, qrefs, strict=True)))
    assert torch.equal(dist.mode(), torch.stack([r.probs.argmax(-1) for r in refs], dim=-1))
    sample = dist.sample(np.random.default_rng(0))
    assert sample.shape == (40, 3) and (sample < torch.tensor(NVEC)).all() and (sample >= 0).all()
    torch.testing.assert_close(dist[3:5].log_prob(actions[3:5]), dist.log_prob(actions)[3:5])
    assert not dist.detach().log_prob(actions).requires_grad


def test_multicategorical_sampling_frequencies_follow_the_policy():
    z = torch.tensor([[0.0, 1.0, -1.0, 2.0, 0.0]], dtype=torch.float64).expand(20_000, 5)
    dist = MultiCategorical(z, (3, 2))
    a = dist.sample(np.random.default_rng(1)).numpy()
    for j, part in enumerate(z[0].split((3, 2))):
        freq = np.bincount(a[:, j], minlength=len(part)) / len(a)
        np.testing.assert_allclose(freq, part.softmax(-1).numpy(), atol=0.015)


def test_bernoulli_against_torch():
    z, other = logits(k=4), logits(k=4, seed=1)
    dist, ref, qref = Bernoulli(z), TorchBernoulli(logits=z), TorchBernoulli(logits=other)
    actions = ref.sample().long()
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions.double()).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    torch.testing.assert_close(dist.kl(Bernoulli(other)), kl_divergence(ref, qref).sum(-1))
    assert torch.equal(dist.mode(), (ref.probs > 0.5).long())
    torch.testing.assert_close(dist[::2].entropy(), dist.entropy()[::2])
    big = torch.tensor([[60.0, -60.0]], dtype=torch.float64)  # saturated: finite, exact
    assert torch.isfinite(Bernoulli(big).log_prob(torch.tensor([[0, 1]]))).all()


def test_bernoulli_sampling_frequencies_follow_the_policy():
    z = torch.tensor([[-1.0, 0.0, 2.0]], dtype=torch.float64).expand(20_000, 3)
    a = Bernoulli(z).sample(np.random.default_rng(2)).numpy()
    np.testing.assert_allclose(a.mean(0), torch.sigmoid(z[0]).numpy(), atol=0.015)
