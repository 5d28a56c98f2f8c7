"""PPO: the clipped surrogate and value loss by hand, and the real update on CartPole.

The losses are torch functions differentiated by autograd; each loss and its autograd
gradient are checked against hand-worked numbers and against central finite differences
of the reference formulas written out here in NumPy float64 (the spec):

  L^CLIP = mean(max(−Â r, −Â clamp(r, 1 − ε, 1 + ε))),  r = exp(log π − log π_old)
  L^V    = ½ mean(max((V − R̂)², (V_old + clamp(V − V_old, −ε, ε) − R̂)²))   (or ½ mean((V − R̂)²))

Deliberately wrong variants (a flipped sign, an unclipped surrogate, old log-probs or
values left attached to the graph) are shown to fail the same comparisons.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pgrun.algos.ppo as ppo_mod
from pgrun.accelerate import attach
from pgrun.algos.base import approx_kl
from pgrun.algos.ppo import PPO, PPOConfig, clipped_surrogate, ratio_stats, value_loss
from pgrun.config import PolicyConfig
from pgrun.envs import make_vec_env
from pgrun.flat import flat_parameters
from pgrun.policies import build_policy
from pgrun.returns import gae, next_values
from tests.helpers import evaluate, flat_grad_of, make_collector

EPS = 0.2


def fd_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar f at x (float64)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        grad.flat[i] = (f(x + e) - f(x - e)) / (2 * h)
    return grad


# ------------------------------------------------------------------- clipped surrogate

def np_surrogate(logp, old_logp, adv, clip_eps):
    """The reference formula in NumPy float64."""
    ratio = np.exp(np.asarray(logp, np.float64) - old_logp)
    return float(np.mean(np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - clip_eps, 1 + clip_eps))))


def surrogate(logp, old_logp, adv, clip_eps=EPS, dtype=torch.float64):
    """(L^CLIP, ∂L^CLIP/∂log π) of pgrun's loss by autograd."""
    t_logp = torch.tensor(logp, dtype=dtype, requires_grad=True)
    loss = clipped_surrogate(t_logp, torch.tensor(old_logp, dtype=dtype),
                             torch.tensor(adv, dtype=dtype), clip_eps)
    (grad,) = torch.autograd.grad(loss, t_logp)
    return float(loss.detach()), grad.numpy()


def reference_surrogate_grad(logp, old_logp, adv, clip_eps=EPS):
    return fd_grad(lambda x: np_surrogate(x, old_logp, adv, clip_eps), logp)


def test_surrogate_at_ratio_one():
    logp = np.array([-0.3, -1.2, -0.7, -2.0], dtype=np.float32)
    old_logp = logp.copy()
    adv = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    loss, dlogp = surrogate(logp, old_logp, adv, dtype=torch.float32)
    assert loss == pytest.approx(-float(adv.mean()))
    t = torch.from_numpy(logp)
    assert ratio_stats(t, t, EPS) == (0.0, 0.0)  # (approx_kl, clip_frac)
    assert all(isinstance(v, float) for v in ratio_stats(t, t, EPS))  # numbers, not tensors
    assert float(approx_kl(t, t)) == 0.0
    # d/dlogp of −A·r/B at r = 1 (both branches of the max agree)
    np.testing.assert_allclose(dlogp, -adv / len(adv), rtol=1e-6)
    assert dlogp.dtype == np.float32  # float32 in, float32 out
    assert loss == pytest.approx(np_surrogate(logp, old_logp, adv, EPS), rel=1e-6)
    np.testing.assert_allclose(dlogp, reference_surrogate_grad(logp, old_logp, adv), rtol=1e-5)
    # the wrong sign is rejected by the same comparison
    assert not np.allclose(-dlogp, reference_surrogate_grad(logp, old_logp, adv), rtol=1e-5)


def surrogate_case():
    """Six samples, one per situation of the min/clip (ε = 0.2)."""
    ratio = np.array([1.5, 0.5, 1.5, 0.5, 1.15, 0.9])
    adv = np.array([2.0, -1.0, -3.0, 1.5, 1.0, -2.0])
    old_logp = np.array([-0.5, -1.0, -0.2, -2.0, -0.7, -1.5])
    logp = old_logp + np.log(ratio)
    return ratio, adv, old_logp, logp


def test_surrogate_value_and_diagnostics():
    ratio, adv, old_logp, logp = surrogate_case()
    loss, _ = surrogate(logp, old_logp, adv)
    # per sample max(−A r, −A clip(r)), worked out by hand
    per_sample = [-2.0 * 1.2, 1.0 * 0.8, 3.0 * 1.5, -1.5 * 0.5, -1.0 * 1.15, 2.0 * 0.9]
    assert loss == pytest.approx(sum(per_sample) / 6)
    assert loss == pytest.approx(np_surrogate(logp, old_logp, adv, EPS), rel=1e-12)
    t_logp, t_old = torch.tensor(logp), torch.tensor(old_logp)
    kl, clip_frac = ratio_stats(t_logp, t_old, EPS)
    assert clip_frac == pytest.approx(4 / 6)  # |r − 1| = 0.5 for the first four
    k3 = [(r - 1.0) - math.log(r) for r in ratio.tolist()]
    assert kl == pytest.approx(sum(k3) / 6)
    assert float(approx_kl(t_logp, t_old)) == pytest.approx(kl)  # one definition
    # k3, not the plain k1 = E[−log r] (they differ here since E[r − 1] ≠ 0)
    assert kl != pytest.approx(-float(np.log(ratio).mean()))
    assert kl > 0


def test_surrogate_gradient_zero_exactly_where_the_clip_binds():
    ratio, adv, old_logp, logp = surrogate_case()
    _, grad = surrogate(logp, old_logp, adv)
    np.testing.assert_allclose(grad, reference_surrogate_grad(logp, old_logp, adv),
                               rtol=1e-6, atol=1e-9)
    # ratio > 1+ε with A > 0 and ratio < 1−ε with A < 0: the clipped term is the min,
    # constant in θ, so no gradient at all
    assert grad[0] == 0.0 and grad[1] == 0.0
    # ratio > 1+ε with A < 0 and ratio < 1−ε with A > 0: the unclipped term is the min
    # and keeps its gradient −A r / B (d r / d logp = r); likewise inside the clip range
    unclipped = -adv * ratio / len(adv)
    for i in (2, 3, 4, 5):
        assert grad[i] != 0.0
        assert float(grad[i]) == pytest.approx(float(unclipped[i]), rel=1e-12)


def test_surrogate_gradient_does_not_depend_on_other_samples_clipping():
    """Clipping one sample does not change another's gradient (per-sample min, not a
    batch-level one)."""
    ratio, adv, old_logp, logp = surrogate_case()
    _, grad_all = surrogate(logp, old_logp, adv)
    for keep in range(6):
        one = slice(keep, keep + 1)
        _, alone = surrogate(logp[one], old_logp[one], adv[one])
        assert float(grad_all[keep]) * 6 == pytest.approx(float(alone[0]), abs=1e-12)


def test_surrogate_matches_reference_on_random_samples():
    """float32 samples across the clip range, both signs of Â: loss, gradient and
    diagnostics as the reference formula; a gradient that ignored the clip (−Â r / B
    everywhere) or had the wrong sign would not be."""
    rng = np.random.default_rng(0)
    n = 500
    old_logp = rng.uniform(-3.0, -0.1, n).astype(np.float32)
    logp = (old_logp + rng.normal(0.0, 0.3, n)).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    loss, dlogp = surrogate(logp, old_logp, adv, dtype=torch.float32)
    ratio = np.exp(logp.astype(np.float64) - old_logp)
    # no sample within 1e-4 of a kink, where finite differences would straddle it
    assert np.min(np.abs(np.abs(ratio - 1) - EPS)) > 1e-4
    ref_grad = reference_surrogate_grad(logp, old_logp.astype(np.float64), adv.astype(np.float64))
    assert loss == pytest.approx(np_surrogate(logp, old_logp, adv, EPS), rel=1e-5)
    np.testing.assert_allclose(dlogp, ref_grad, rtol=1e-4, atol=1e-8)
    t_logp, t_old = torch.from_numpy(logp), torch.from_numpy(old_logp)
    kl, clip_frac = ratio_stats(t_logp, t_old, EPS)
    assert clip_frac == pytest.approx(np.mean(np.abs(ratio - 1) > EPS))
    assert 0.2 < clip_frac < 0.8
    assert kl == pytest.approx(np.mean(ratio - 1 - np.log(ratio)), rel=1e-4)
    no_clip = -adv * ratio / n
    assert np.max(np.abs(no_clip - ref_grad)) > 1e-3
    assert np.max(np.abs(-dlogp - ref_grad)) > 1e-3


# ------------------------------------------------------------------------- value loss

V = [1.0, 2.0, -1.0, 0.0]
V_OLD = [0.5, 2.5, 0.0, 1.0]
RET = [2.0, 0.0, -1.5, 0.5]


def np_value_loss(values, old_values, returns, clip_eps):
    v, v_old, ret = (np.asarray(x, np.float64) for x in (values, old_values, returns))
    if clip_eps is None:
        return float(0.5 * np.mean((v - ret) ** 2))
    v_clip = v_old + np.clip(v - v_old, -clip_eps, clip_eps)
    return float(0.5 * np.mean(np.maximum((v - ret) ** 2, (v_clip - ret) ** 2)))


def vloss(values, old_values, returns, clip_eps, dtype=torch.float64):
    """(L^V, ∂L^V/∂V) of pgrun's loss by autograd."""
    v = torch.tensor(values, dtype=dtype, requires_grad=True)
    loss = value_loss(v, torch.tensor(old_values, dtype=dtype), torch.tensor(returns, dtype=dtype),
                      clip_eps)
    (grad,) = torch.autograd.grad(loss, v)
    return float(loss.detach()), grad.numpy()


def test_value_loss_unclipped_by_hand():
    loss, grad = vloss(V, V_OLD, RET, None, torch.float32)
    # ½ mean of (V − R)² = ½ (1 + 4 + 0.25 + 0.25) / 4
    assert loss == pytest.approx(0.6875)
    np.testing.assert_allclose(grad, [-0.25, 0.5, 0.125, -0.125], rtol=1e-7)
    ref = fd_grad(lambda x: np_value_loss(x, V_OLD, RET, None), V)
    np.testing.assert_allclose(grad, ref, rtol=1e-6)
    assert not np.allclose(2 * grad, ref, rtol=1e-6)  # the ½ matters


def test_value_loss_clipped_by_hand():
    loss, grad = vloss(V, V_OLD, RET, EPS, torch.float32)
    # V_clip = V_old + clip(V − V_old, ±0.2) = [0.7, 2.3, −0.2, 0.8]
    # (V_clip − R)² = [1.69, 5.29, 1.69, 0.09]; (V − R)² = [1, 4, 0.25, 0.25]
    # max = [1.69, 5.29, 1.69, 0.25]: ½ · 8.92 / 4
    assert loss == pytest.approx(1.115)
    # the first three take the clipped (constant) term: no gradient; the last the
    # unclipped one: (V − R) / B
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, -0.125])
    ref = fd_grad(lambda x: np_value_loss(x, V_OLD, RET, EPS), V)
    np.testing.assert_allclose(grad, ref, rtol=1e-6, atol=1e-9)
    # the old values left attached (a V_old that moves with V) would give the clipped
    # samples a gradient
    v = torch.tensor(V, requires_grad=True)
    attached = value_loss(v, v + (torch.tensor(V_OLD) - torch.tensor(V)), torch.tensor(RET), EPS)
    (wrong,) = torch.autograd.grad(attached, v)
    assert not np.allclose(wrong.numpy(), ref, atol=1e-3)


def test_value_loss_clipping_is_a_no_op_inside_the_range():
    values = np.array([0.55, 2.4, -0.1])
    old, ret = np.array([0.5, 2.5, 0.0]), np.array([2.0, 0.0, -1.5])
    clipped, unclipped = vloss(values, old, ret, EPS), vloss(values, old, ret, None)
    assert clipped[0] == pytest.approx(unclipped[0])
    np.testing.assert_allclose(clipped[1], unclipped[1], rtol=1e-12)


def test_value_loss_matches_reference_on_random_samples():
    rng = np.random.default_rng(1)
    n = 400
    old = rng.normal(size=n).astype(np.float32)
    values = (old + rng.normal(0.0, 0.3, n)).astype(np.float32)
    ret = (old + rng.normal(0.0, 1.0, n)).astype(np.float32)
    for clip_eps in (None, EPS):
        loss, grad = vloss(values, old, ret, clip_eps, torch.float32)
        assert loss == pytest.approx(np_value_loss(values, old, ret, clip_eps), rel=1e-5)
        ref = fd_grad(lambda x, c=clip_eps: np_value_loss(x, old, ret, c), values, h=1e-7)
        np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-8)
    # the clip binds on a good share of the samples: the two gradients differ
    assert np.count_nonzero(vloss(values, old, ret, EPS)[1] == 0.0) > n // 10


# ------------------------------------------------------------------ PPO update (CartPole)

ENV_CFG = {"id": "CartPole-v1", "num_envs": 4, "max_episode_steps": None,
           "reward_threshold": None, "vectorization": "auto", "kwargs": {}}
NUM_STEPS = 64


@pytest.fixture(scope="module")
def cartpole():
    """A policy and one batch of 4 × 64 CartPole steps collected with it. The policy
    head's orthogonal init (gain 0.01) is scaled up so that π is far from uniform (where
    the entropy's gradient would vanish and hide the entropy term)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env_cfg = OmegaConf.create(ENV_CFG)
    envs = make_vec_env(env_cfg, env_cfg.num_envs)
    policy = build_policy(OmegaConf.structured(PolicyConfig()), envs.single_observation_space,
                          envs.single_action_space, with_value=PPO.uses_value)
    with torch.no_grad():
        policy.head.out.weight.mul_(100.0)
    algo = PPO(OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS)), policy, env_cfg.num_envs)
    batch = algo.collect(make_collector(envs, policy, seed=0))
    envs.close()
    yield policy, batch
    torch.set_num_threads(threads)


def fresh(cartpole, accelerate=False):
    """A copy of the fixture's policy (its own flat buffers), accelerated or not."""
    policy = copy.deepcopy(cartpole[0])
    attach(policy, accelerate)
    return policy


def run_update(cartpole, accelerate=False, **overrides):
    """(metrics, updated policy, batch) of one PPO.update on a copy of the fixture's policy."""
    _, batch = cartpole
    policy = fresh(cartpole, accelerate)
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, **overrides))
    torch.manual_seed(1)
    out = PPO(cfg, policy, ENV_CFG["num_envs"]).update(batch, progress=0.0)
    return out, policy, batch


def valid_tensors(batch):
    mask = batch.valid
    return torch.from_numpy(batch.obs[mask]), torch.from_numpy(batch.actions[mask])


def kl_after(policy, batch) -> float:
    """k3 estimate of KL[π_old ‖ π_new] over the batch's valid steps, in float64."""
    with torch.no_grad():
        logp, _, _ = evaluate(policy, *valid_tensors(batch))
    log_ratio = logp.double() - torch.from_numpy(batch.logp[batch.valid]).double()
    return float((log_ratio.exp() - 1.0 - log_ratio).mean())


def test_batch_shapes(cartpole):
    _, batch = cartpole
    assert batch.obs.shape == (NUM_STEPS, 4, 4)
    assert batch.values is not None and batch.last_value is not None
    assert 0 < batch.num_steps <= NUM_STEPS * 4


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
def test_rollout_logp_is_the_recomputed_logp(cartpole, accelerate):
    """What the rollout stored is what the update's own forward pass recomputes."""
    policy, batch = cartpole
    policy = fresh(cartpole, accelerate)
    with torch.no_grad():
        logp, _, values = evaluate(policy, *valid_tensors(batch))
    np.testing.assert_allclose(logp.numpy(), batch.logp[batch.valid], atol=1e-6)
    np.testing.assert_allclose(values.numpy(), batch.values[batch.valid], atol=1e-5)


def test_single_step_update_sees_ratio_one(cartpole):
    out, policy, batch = run_update(cartpole, num_epochs=1, num_minibatches=1)
    assert out["grad_steps"] == 1
    assert out["clip_frac"] == 0.0  # measured before the step: ratio 1
    assert np.isfinite(out["policy_loss"]) and out["value_loss"] > 0
    # approx_kl is the k3 KL[π_old‖π_θ] after the update, on the batch
    assert out["approx_kl"] == pytest.approx(kl_after(policy, batch), rel=1e-3, abs=1e-9)
    assert out["approx_kl"] > 0  # the one step did move the policy


def test_many_epochs_move_the_policy(cartpole):
    out, policy, batch = run_update(cartpole, num_epochs=10)
    cfg = PPOConfig()
    assert out["grad_steps"] == 10 * cfg.num_minibatches
    assert out["approx_kl"] == pytest.approx(kl_after(policy, batch), rel=1e-3, abs=1e-9)
    single, _, _ = run_update(cartpole, num_epochs=1, num_minibatches=1)
    assert out["approx_kl"] > 10 * single["approx_kl"] + 1e-5


def test_target_kl_stops_the_update_early(cartpole):
    calls = []
    real_step = ppo_mod.step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return real_step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", counting_step)
        out, policy, batch = run_update(cartpole, num_epochs=10, target_kl=1e-6)
    # the first minibatch has ratio 1 (KL 0) and is stepped; the next one's KL exceeds
    # 1.5e-6 and ends the update before its step
    assert out["grad_steps"] == 1 == len(calls)
    assert out["approx_kl"] == pytest.approx(kl_after(policy, batch), rel=1e-3, abs=1e-9)
    # a loose target does not stop it
    loose, _, _ = run_update(cartpole, num_epochs=10, target_kl=1.0)
    assert loose["grad_steps"] == 10 * PPOConfig().num_minibatches


def recording_step(seen, policy):
    """A ``step`` that records (θ before the step, ∂loss/∂θ) from the flat buffers, then
    steps as the real one does."""
    real_step = ppo_mod.step
    flat = flat_parameters(policy)

    def record_then_step(optimizer, loss, max_grad_norm, active=None):
        theta = flat.data.clone()
        norm = real_step(optimizer, loss, max_grad_norm, active)
        seen.append((theta, flat.grad.clone()))  # unclipped: tests pass max_grad_norm=None
        return norm

    return record_then_step


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
def test_update_loss_gradient_treats_batch_as_constants(cartpole, accelerate):
    """The gradient of the loss PPO.update builds (one epoch, one minibatch: ratio 1)
    equals that of a loss written out here with the advantages, returns, old log-probs
    and old values as constants: −mean(Â ∇log π) + c_V ½ mean((V − R̂)²) − c_H mean(H).
    A target or an advantage that kept a graph into the parameters would add terms: one
    that does (R̂ = Â + V_θ, not detached) is rejected by the same comparison."""
    _, batch = cartpole
    policy = fresh(cartpole, accelerate)
    ent_coef = 0.01
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, num_epochs=1, num_minibatches=1,
                                         ent_coef=ent_coef, max_grad_norm=None))
    # the buffer's order: the policy's parameters, then the value's
    params = [*policy.policy_parameters(), *policy.value_parameters()]
    assert {id(p) for p in params} == {id(p) for p in policy.parameters()}
    algo = PPO(cfg, policy, ENV_CFG["num_envs"])
    flat = flat_parameters(policy)
    # one optimizer over the whole flat buffer
    (opt_param,) = algo.opt.param_groups[0]["params"]
    assert opt_param.data_ptr() == flat.data.data_ptr() and opt_param.numel() == flat.data.numel()
    theta0 = copy.deepcopy(policy)  # the parameters the step sees

    before = {k: v.copy() for k, v in vars(batch).items() if isinstance(v, np.ndarray)}
    flat.grad.fill_(float("nan"))  # every gradient must be written by the update
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", recording_step(seen, policy))
        out = algo.update(batch, progress=0.0)
    # the update left the batch alone (no in-place normalization or reuse of its buffers)
    for key, arr in before.items():
        np.testing.assert_array_equal(getattr(batch, key), arr, err_msg=key)
        assert isinstance(getattr(batch, key), np.ndarray)
    (_, got), = seen
    assert torch.isfinite(got).all()

    ref = theta0
    attach(ref, False)
    ref_params = [*ref.policy_parameters(), *ref.value_parameters()]
    adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                   batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
    mask = batch.valid
    adv_t = torch.from_numpy(adv[mask])
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)  # torch's std: the sample std
    ret_t = torch.from_numpy(ret[mask])
    logp, entropy, values = evaluate(ref, *valid_tensors(batch))
    pg_part = -(adv_t * logp).mean()
    v_part = cfg.vf_coef * 0.5 * (values - ret_t).pow(2).mean()
    ent_part = -ent_coef * entropy.mean()
    want = flat_grad_of(pg_part + v_part + ent_part, ref_params)
    tol = 1e-6 + 1e-4 * want.abs()
    assert bool(((got - want).abs() <= tol).all())
    # the logged losses are the same figures
    assert out["value_loss"] == pytest.approx(float(v_part.detach()) / cfg.vf_coef, rel=1e-5)
    # (at ratio 1 the surrogate is −mean(Â), 0 for normalized advantages)
    assert out["policy_loss"] == pytest.approx(-float(adv_t.mean()), abs=1e-6)
    assert out["entropy"] == pytest.approx(float(entropy.detach().mean()), rel=1e-5)
    # every part is visible at that tolerance: dropping the policy term, flipping the
    # entropy bonus's sign, or a value target attached to the graph (R̂ = Â + V_θ with
    # V_θ not detached) would each change the gradient beyond it
    attached_target = torch.from_numpy(adv[mask]) + values  # Â + V_θ(s): a graph into φ
    wrong_v = cfg.vf_coef * 0.5 * (values - attached_target).pow(2).mean()
    for wrong in (v_part + ent_part, pg_part + v_part - ent_part, pg_part + wrong_v + ent_part):
        assert bool(((flat_grad_of(wrong, ref_params) - want).abs() > 10 * tol).any())


def test_later_epoch_gradient_matches_the_clipped_reference_loss(cartpole):
    """The second epoch's gradient (ratio ≠ 1, clipping binding on some samples, clipped
    value loss) equals float64 autograd of the reference loss
    L^CLIP − c_H mean(H) + c_V L^V_clipped at the parameters that step saw; the unclipped
    loss's gradient and one with the old log-probs left attached to the graph (π_old = π_θ:
    ratio 1 in value but not in gradient) are far from it."""
    _, batch = cartpole
    policy = fresh(cartpole)
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, num_epochs=2, num_minibatches=1,
                                         lr=0.02, clip_vloss=True, ent_coef=0.01,
                                         anneal_lr=False, max_grad_norm=None))
    algo = PPO(cfg, policy, ENV_CFG["num_envs"])
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", recording_step(seen, policy))
        algo.update(batch, progress=0.0)
    assert len(seen) == 2
    theta, got = seen[1]

    ref = copy.deepcopy(policy)
    flat_parameters(ref).data.copy_(theta)
    ref = ref.double()
    params = [*ref.policy_parameters(), *ref.value_parameters()]
    adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                   batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
    mask = batch.valid
    adv_t = torch.from_numpy(adv[mask]).double()
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)
    ret_t = torch.from_numpy(ret[mask]).double()
    old_logp = torch.from_numpy(batch.logp[mask]).double()
    old_v = torch.from_numpy(batch.values[mask]).double()
    obs, actions = valid_tensors(batch)
    logp, entropy, values = evaluate(ref, obs.double(), actions)
    ratio = (logp - old_logp).exp()
    pg = torch.max(-adv_t * ratio, -adv_t * ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)).mean()
    v_clip = old_v + (values - old_v).clamp(-cfg.clip_eps, cfg.clip_eps)
    v_loss = 0.5 * torch.max((values - ret_t) ** 2, (v_clip - ret_t) ** 2).mean()
    ent = -cfg.ent_coef * entropy.mean()
    want = flat_grad_of(pg + ent + cfg.vf_coef * v_loss, params)
    # both clips bind somewhere, so this is not the ratio-1 case again
    assert 0 < int(((ratio - 1).abs() > cfg.clip_eps).sum()) < len(ratio)
    assert 0 < int(((values - old_v).abs() > cfg.clip_eps).sum()) < len(ratio)
    tol = 1e-6 + 1e-4 * want.abs()
    assert bool(((got.double() - want).abs() <= tol).all())
    unclipped = -(adv_t * ratio).mean() + ent + cfg.vf_coef * 0.5 * ((values - ret_t) ** 2).mean()
    assert bool(((flat_grad_of(unclipped, params) - want).abs() > 10 * tol).any())
    # pgrun's own loss functions with π_old not detached (old_logp := logp) differ too
    attached = clipped_surrogate(logp, logp, adv_t, cfg.clip_eps) + ent + cfg.vf_coef * value_loss(
        values, old_v, ret_t, cfg.clip_eps)
    assert bool(((flat_grad_of(attached, params) - want).abs() > 10 * tol).any())
    # and the same functions with constants give the reference's gradient
    right = clipped_surrogate(logp, old_logp, adv_t, cfg.clip_eps) + ent + cfg.vf_coef * value_loss(
        values, old_v, ret_t, cfg.clip_eps)
    torch.testing.assert_close(flat_grad_of(right, params), want)
