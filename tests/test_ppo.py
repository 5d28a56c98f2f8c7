"""PPO: the clipped surrogate and value loss by hand, and the real update on CartPole.

The losses are NumPy functions returning their derivative w.r.t. log π or V; each
derivative is checked against the hand-worked numbers and against torch autograd of the
reference formulas written out here (the spec):

  L^CLIP = mean(max(−Â r, −Â clamp(r, 1 − ε, 1 + ε))),  r = exp(log π − log π_old)
  L^V    = ½ mean(max((V − R̂)², (V_old + clamp(V − V_old, −ε, ε) − R̂)²))   (or ½ mean((V − R̂)²))
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pgrun.algos.ppo as ppo_mod
from pgrun.algos.ppo import PPO, clipped_surrogate, value_loss
from pgrun.config import PolicyConfig, PPOConfig
from pgrun.envs import make_vec_env
from pgrun.numpy_agent import NumpyAgent
from pgrun.policies import build_agent
from pgrun.returns import gae, next_values
from pgrun.rollout import Collector

EPS = 0.2

# ------------------------------------------------------------------- clipped surrogate


def torch_surrogate(logp, old_logp, adv, clip_eps):
    """(loss, ∂loss/∂log π) of the reference formula, by torch autograd in float64."""
    t_logp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    ratio = (t_logp - torch.tensor(old_logp, dtype=torch.float64)).exp()
    t_adv = torch.tensor(adv, dtype=torch.float64)
    loss = torch.max(-t_adv * ratio, -t_adv * ratio.clamp(1 - clip_eps, 1 + clip_eps)).mean()
    loss.backward()
    return float(loss.detach()), t_logp.grad.numpy()


def test_surrogate_at_ratio_one():
    logp = np.array([-0.3, -1.2, -0.7, -2.0], dtype=np.float32)
    old_logp = logp.copy()
    adv = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    loss, dlogp, info = clipped_surrogate(logp, old_logp, adv, EPS)
    assert loss == pytest.approx(-float(adv.mean()))
    assert info == {"approx_kl": 0.0, "clip_frac": 0.0}
    assert all(isinstance(v, float) for v in info.values())  # numbers, not arrays
    # d/dlogp of −A·r/B at r = 1 (both branches of the max agree)
    np.testing.assert_allclose(dlogp, -adv / len(adv), rtol=1e-7)
    assert dlogp.dtype == np.float32  # float32 in, float32 out: backward's dtype
    ref_loss, ref_grad = torch_surrogate(logp, old_logp, adv, EPS)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(dlogp, ref_grad, rtol=1e-6)


def surrogate_case():
    """Six samples, one per situation of the min/clip (ε = 0.2)."""
    ratio = np.array([1.5, 0.5, 1.5, 0.5, 1.15, 0.9])
    adv = np.array([2.0, -1.0, -3.0, 1.5, 1.0, -2.0])
    old_logp = np.array([-0.5, -1.0, -0.2, -2.0, -0.7, -1.5])
    logp = old_logp + np.log(ratio)
    return ratio, adv, old_logp, logp


def test_surrogate_value_and_diagnostics():
    ratio, adv, old_logp, logp = surrogate_case()
    loss, _, info = clipped_surrogate(logp, old_logp, adv, EPS)
    # per sample max(−A r, −A clip(r)), worked out by hand
    per_sample = [-2.0 * 1.2, 1.0 * 0.8, 3.0 * 1.5, -1.5 * 0.5, -1.0 * 1.15, 2.0 * 0.9]
    assert loss == pytest.approx(sum(per_sample) / 6)
    assert loss == pytest.approx(torch_surrogate(logp, old_logp, adv, EPS)[0], rel=1e-12)
    assert info["clip_frac"] == pytest.approx(4 / 6)  # |r − 1| = 0.5 for the first four
    k3 = [(r - 1.0) - math.log(r) for r in ratio.tolist()]
    assert info["approx_kl"] == pytest.approx(sum(k3) / 6)
    # k3, not the plain k1 = E[−log r] (they differ here since E[r − 1] ≠ 0)
    assert info["approx_kl"] != pytest.approx(-float(np.log(ratio).mean()))
    assert info["approx_kl"] > 0


def test_surrogate_gradient_zero_exactly_where_the_clip_binds():
    ratio, adv, old_logp, logp = surrogate_case()
    _, grad, _ = clipped_surrogate(logp, old_logp, adv, EPS)
    np.testing.assert_allclose(grad, torch_surrogate(logp, old_logp, adv, EPS)[1], rtol=1e-12)
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
    _, grad_all, _ = clipped_surrogate(logp, old_logp, adv, EPS)
    for keep in range(6):
        one = slice(keep, keep + 1)
        _, alone, _ = clipped_surrogate(logp[one], old_logp[one], adv[one], EPS)
        assert float(grad_all[keep]) * 6 == pytest.approx(float(alone[0]), abs=1e-12)


def test_surrogate_matches_torch_reference_on_random_samples():
    """float32 samples across the clip range, both signs of Â: loss, derivative and
    diagnostics as the reference formula; a derivative that ignored the clip (−Â r / B
    everywhere) would not be."""
    rng = np.random.default_rng(0)
    n = 500
    old_logp = rng.uniform(-3.0, -0.1, n).astype(np.float32)
    logp = (old_logp + rng.normal(0.0, 0.3, n)).astype(np.float32)
    adv = rng.normal(size=n).astype(np.float32)
    loss, dlogp, info = clipped_surrogate(logp, old_logp, adv, EPS)
    ref_loss, ref_grad = torch_surrogate(logp, old_logp, adv, EPS)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(dlogp, ref_grad, rtol=1e-5, atol=1e-9)
    ratio = np.exp(logp.astype(np.float64) - old_logp)
    assert info["clip_frac"] == pytest.approx(np.mean(np.abs(ratio - 1) > EPS))
    assert 0.2 < info["clip_frac"] < 0.8
    assert info["approx_kl"] == pytest.approx(np.mean(ratio - 1 - np.log(ratio)), rel=1e-4)
    no_clip = -adv * ratio / n
    assert np.max(np.abs(no_clip - ref_grad)) > 1e-3


# ------------------------------------------------------------------------- value loss

V = [1.0, 2.0, -1.0, 0.0]
V_OLD = [0.5, 2.5, 0.0, 1.0]
RET = [2.0, 0.0, -1.5, 0.5]


def torch_value_loss(values, old_values, returns, clip_eps):
    """(loss, ∂loss/∂V) of the reference formula, by torch autograd in float64."""
    v = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    v_old, ret = (torch.tensor(x, dtype=torch.float64) for x in (old_values, returns))
    if clip_eps is None:
        loss = 0.5 * ((v - ret) ** 2).mean()
    else:
        v_clip = v_old + (v - v_old).clamp(-clip_eps, clip_eps)
        loss = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2).mean()
    loss.backward()
    return float(loss.detach()), v.grad.numpy()


def test_value_loss_unclipped_by_hand():
    values = np.array(V, dtype=np.float32)
    loss, grad = value_loss(values, np.array(V_OLD, dtype=np.float32),
                            np.array(RET, dtype=np.float32), None)
    # ½ mean of (V − R)² = ½ (1 + 4 + 0.25 + 0.25) / 4
    assert loss == pytest.approx(0.6875)
    np.testing.assert_allclose(grad, [-0.25, 0.5, 0.125, -0.125], rtol=1e-7)
    ref_loss, ref_grad = torch_value_loss(V, V_OLD, RET, None)
    assert loss == pytest.approx(ref_loss, rel=1e-7)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7)


def test_value_loss_clipped_by_hand():
    values = np.array(V, dtype=np.float32)
    loss, grad = value_loss(values, np.array(V_OLD, dtype=np.float32),
                            np.array(RET, dtype=np.float32), EPS)
    # V_clip = V_old + clip(V − V_old, ±0.2) = [0.7, 2.3, −0.2, 0.8]
    # (V_clip − R)² = [1.69, 5.29, 1.69, 0.09]; (V − R)² = [1, 4, 0.25, 0.25]
    # max = [1.69, 5.29, 1.69, 0.25]: ½ · 8.92 / 4
    assert loss == pytest.approx(1.115)
    # the first three take the clipped (constant) term: no gradient; the last the
    # unclipped one: (V − R) / B
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, -0.125])
    ref_loss, ref_grad = torch_value_loss(V, V_OLD, RET, EPS)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-7)


def test_value_loss_clipping_is_a_no_op_inside_the_range():
    values = np.array([0.55, 2.4, -0.1])
    old, ret = np.array([0.5, 2.5, 0.0]), np.array([2.0, 0.0, -1.5])
    clipped, unclipped = value_loss(values, old, ret, EPS), value_loss(values, old, ret, None)
    assert clipped[0] == pytest.approx(unclipped[0])
    np.testing.assert_allclose(clipped[1], unclipped[1], rtol=1e-12)


def test_value_loss_matches_torch_reference_on_random_samples():
    rng = np.random.default_rng(1)
    n = 400
    old = rng.normal(size=n).astype(np.float32)
    values = (old + rng.normal(0.0, 0.3, n)).astype(np.float32)
    ret = (old + rng.normal(0.0, 1.0, n)).astype(np.float32)
    for clip_eps in (None, EPS):
        loss, grad = value_loss(values, old, ret, clip_eps)
        ref_loss, ref_grad = torch_value_loss(values, old, ret, clip_eps)
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-9)
    # the clip binds on a good share of the samples: the two gradients differ
    assert np.count_nonzero(value_loss(values, old, ret, EPS)[1] == 0.0) > n // 10


# ------------------------------------------------------------------ PPO update (CartPole)

ENV_CFG = {"id": "CartPole-v1", "num_envs": 4, "max_episode_steps": None,
           "reward_threshold": None, "vectorization": "auto", "kwargs": {}}
NUM_STEPS = 64


@pytest.fixture(scope="module")
def cartpole():
    """An agent and one batch of 4 × 64 CartPole steps collected with it. The policy
    head's orthogonal init (gain 0.01) is scaled up so that π is far from uniform (where
    the entropy's gradient would vanish and hide the entropy term)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env_cfg = OmegaConf.create(ENV_CFG)
    envs = make_vec_env(env_cfg, env_cfg.num_envs)
    agent = build_agent(OmegaConf.structured(PolicyConfig()), envs.single_observation_space,
                        envs.single_action_space, with_value=PPO.uses_value)
    with torch.no_grad():
        agent.pi_head.weight.mul_(100.0)
    algo = PPO(OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS)), agent, env_cfg.num_envs)
    batch = algo.collect(Collector(envs, agent, seed=0))
    envs.close()
    yield agent, batch
    torch.set_num_threads(threads)


def run_update(cartpole, **overrides):
    """(metrics, updated agent, batch) of one PPO.update on a copy of the fixture's agent."""
    agent, batch = cartpole
    agent = copy.deepcopy(agent)
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, **overrides))
    torch.manual_seed(1)
    out = PPO(cfg, agent, ENV_CFG["num_envs"]).update(batch, progress=0.0)
    return out, agent, batch


def kl_after(agent, batch) -> float:
    """k3 estimate of KL[π_old ‖ π_new] over the batch's valid steps."""
    with torch.no_grad():
        logp, _, _ = agent.evaluate(torch.from_numpy(batch.obs[batch.valid]),
                                    torch.from_numpy(batch.actions[batch.valid]))
    log_ratio = logp.double() - torch.from_numpy(batch.logp[batch.valid]).double()
    return float((log_ratio.exp() - 1.0 - log_ratio).mean())


def test_batch_shapes(cartpole):
    _, batch = cartpole
    assert batch.obs.shape == (NUM_STEPS, 4, 4)
    assert batch.values is not None and batch.last_value is not None
    assert 0 < batch.num_steps <= NUM_STEPS * 4


def test_rollout_logp_is_the_recomputed_logp(cartpole):
    agent, batch = cartpole
    with torch.no_grad():
        logp, _, values = agent.evaluate(torch.from_numpy(batch.obs[batch.valid]),
                                         torch.from_numpy(batch.actions[batch.valid]))
    np.testing.assert_allclose(logp.numpy(), batch.logp[batch.valid], atol=1e-6)
    np.testing.assert_allclose(values.numpy(), batch.values[batch.valid], atol=1e-5)
    # and so does the update's own forward pass
    np_logp, _, np_values = NumpyAgent(agent).evaluate(batch.obs[batch.valid],
                                                       batch.actions[batch.valid])
    np.testing.assert_allclose(np_logp, batch.logp[batch.valid], atol=1e-6)
    np.testing.assert_allclose(np_values, batch.values[batch.valid], atol=1e-5)


def test_single_step_update_sees_ratio_one(cartpole):
    out, agent, batch = run_update(cartpole, num_epochs=1, num_minibatches=1)
    assert out["grad_steps"] == 1
    assert out["clip_frac"] == 0.0
    assert abs(out["approx_kl"]) < 1e-7
    assert np.isfinite(out["policy_loss"]) and out["value_loss"] > 0
    assert kl_after(agent, batch) > 0  # the one step did move the policy


def test_many_epochs_move_the_policy(cartpole):
    out, agent, batch = run_update(cartpole, num_epochs=10)
    cfg = PPOConfig()
    assert out["grad_steps"] == 10 * cfg.num_minibatches
    assert out["approx_kl"] > 1e-5
    single, _, _ = run_update(cartpole, num_epochs=1, num_minibatches=1)
    assert kl_after(agent, batch) > 10 * abs(single["approx_kl"]) + 1e-4


def test_target_kl_stops_the_update_early(cartpole):
    calls = []
    real_step = ppo_mod.step

    def counting_step(*args, **kwargs):
        calls.append(1)
        return real_step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", counting_step)
        out, agent, batch = run_update(cartpole, num_epochs=10, target_kl=1e-6)
    # the first minibatch has ratio 1 (KL 0) and is stepped; the next one's KL exceeds
    # 1.5e-6 and ends the update before its step
    assert out["grad_steps"] == 1 == len(calls)
    assert out["approx_kl"] <= 1.5e-6
    # a loose target does not stop it
    loose, _, _ = run_update(cartpole, num_epochs=10, target_kl=1.0)
    assert loose["grad_steps"] == 10 * PPOConfig().num_minibatches


def test_update_loss_gradient_treats_batch_as_constants(cartpole):
    """The gradient of the loss PPO.update builds (one epoch, one minibatch: ratio 1)
    equals that of a loss written out here with the advantages, returns, old log-probs
    and old values as constants: −mean(Â ∇log π) + c_V ½ mean((V − R̂)²) − c_H mean(H).
    A target or an advantage that kept a graph into the parameters would add terms."""
    agent, batch = cartpole
    agent = copy.deepcopy(agent)
    ent_coef = 0.01
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, num_epochs=1, num_minibatches=1,
                                         ent_coef=ent_coef, max_grad_norm=None))
    # the buffer's order: the policy's parameters, then the value's
    params = [*agent.policy_parameters(), *agent.value_parameters()]
    assert {id(p) for p in params} == {id(p) for p in agent.parameters()}
    captured = {}
    algo = PPO(cfg, agent, ENV_CFG["num_envs"])

    def record_step(optimizer, max_grad_norm):
        assert optimizer is algo.opt and max_grad_norm is None
        # one optimizer over the whole flat buffer
        assert np.shares_memory(optimizer.grad, agent.flat_grad.numpy())
        assert optimizer.grad.size == agent.flat_grad.numel()
        captured["grads"] = [g.clone() for g in torch.from_numpy(optimizer.grad.copy()).split(
            [p.numel() for p in params])]
        return float("nan")

    before = {k: v.copy() for k, v in vars(batch).items() if isinstance(v, np.ndarray)}
    agent.flat_grad.fill_(float("nan"))  # every gradient must be written by the update
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", record_step)
        out = algo.update(batch, progress=0.0)
    # the update left the batch alone (no in-place normalization or reuse of its buffers)
    for key, arr in before.items():
        np.testing.assert_array_equal(getattr(batch, key), arr, err_msg=key)
        assert isinstance(getattr(batch, key), np.ndarray)

    adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                   batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
    mask = batch.valid
    adv_t = torch.from_numpy(adv[mask])
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)  # torch's std: the sample std
    ret_t = torch.from_numpy(ret[mask])
    obs, actions = torch.from_numpy(batch.obs[mask]), torch.from_numpy(batch.actions[mask])
    logp, entropy, values = agent.evaluate(obs, actions)
    pg_part = -(adv_t * logp).mean()
    v_part = cfg.vf_coef * 0.5 * (values - ret_t).pow(2).mean()
    ent_part = -ent_coef * entropy.mean()
    expected = torch.autograd.grad(pg_part + v_part + ent_part, params, retain_graph=True)
    for got, want in zip(captured["grads"], expected, strict=True):
        torch.testing.assert_close(got.view_as(want), want, rtol=1e-4, atol=1e-6)
    # the logged losses are the same figures
    assert out["value_loss"] == pytest.approx(float(v_part.detach()) / cfg.vf_coef, rel=1e-5)
    # (at ratio 1 the surrogate is −mean(Â), 0 for normalized advantages)
    assert out["policy_loss"] == pytest.approx(-float(adv_t.mean()), abs=1e-6)
    assert out["entropy"] == pytest.approx(float(entropy.detach().mean()), rel=1e-5)
    # every part is visible at that tolerance: dropping the policy term or flipping the
    # entropy bonus's sign would change the policy head's gradient beyond it
    head = next(i for i, p in enumerate(params) if p is agent.pi_head.weight)
    tol = 1e-6 + 1e-4 * expected[head].abs()
    for part, factor in ((pg_part, 1.0), (ent_part, 2.0)):
        grad = torch.autograd.grad(part, agent.pi_head.weight, retain_graph=True)[0]
        assert bool((factor * grad.abs() > 10 * tol).any())


def test_later_epoch_gradient_matches_the_clipped_reference_loss(cartpole):
    """The second epoch's gradient (ratio ≠ 1, clipping binding on some samples, clipped
    value loss) equals torch autograd of the reference loss
    L^CLIP − c_H mean(H) + c_V L^V_clipped at the parameters that step saw, in float64;
    the unclipped loss's gradient is far from it."""
    agent, batch = cartpole
    agent = copy.deepcopy(agent)
    cfg = OmegaConf.structured(PPOConfig(num_steps=NUM_STEPS, num_epochs=2, num_minibatches=1,
                                         lr=0.02, clip_vloss=True, ent_coef=0.01,
                                         anneal_lr=False))
    algo = PPO(cfg, agent, ENV_CFG["num_envs"])
    real_step = ppo_mod.step
    seen = []

    def record_then_step(optimizer, max_grad_norm):
        seen.append((agent.flat_data.clone(), torch.from_numpy(optimizer.grad.copy())))
        return real_step(optimizer, max_grad_norm)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", record_then_step)
        algo.update(batch, progress=0.0)
    assert len(seen) == 2
    theta, got = seen[1]

    ref = copy.deepcopy(agent)
    ref.flat_data.copy_(theta)
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
    logp, entropy, values = ref.evaluate(torch.from_numpy(batch.obs[mask]).double(),
                                         torch.from_numpy(batch.actions[mask]))
    ratio = (logp - old_logp).exp()
    pg = torch.max(-adv_t * ratio, -adv_t * ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)).mean()
    v_clip = old_v + (values - old_v).clamp(-cfg.clip_eps, cfg.clip_eps)
    v_loss = 0.5 * torch.max((values - ret_t) ** 2, (v_clip - ret_t) ** 2).mean()
    ent = -cfg.ent_coef * entropy.mean()
    want = torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        pg + ent + cfg.vf_coef * v_loss, params, retain_graph=True)])
    # both clips bind somewhere, so this is not the ratio-1 case again
    assert 0 < int(((ratio - 1).abs() > cfg.clip_eps).sum()) < len(ratio)
    assert 0 < int(((values - old_v).abs() > cfg.clip_eps).sum()) < len(ratio)
    tol = 1e-6 + 1e-4 * want.abs()
    assert bool(((got.double() - want).abs() <= tol).all())
    unclipped = -(adv_t * ratio).mean() + ent + cfg.vf_coef * 0.5 * ((values - ret_t) ** 2).mean()
    wrong = torch.cat([g.reshape(-1) for g in torch.autograd.grad(unclipped, params)])
    assert bool(((wrong - want).abs() > 10 * tol).any())
