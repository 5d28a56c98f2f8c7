"""PPO: the clipped surrogate and value loss by hand, and the real update on CartPole."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pgrun.algos.ppo as ppo_mod
from pgrun.algos.base import normalize
from pgrun.algos.ppo import PPO, clipped_surrogate, value_loss
from pgrun.config import PolicyConfig, PPOConfig
from pgrun.envs import make_vec_env
from pgrun.policies import build_agent
from pgrun.returns import gae, next_values
from pgrun.rollout import Collector

EPS = 0.2

# ------------------------------------------------------------------- clipped surrogate


def test_surrogate_at_ratio_one():
    logp = torch.tensor([-0.3, -1.2, -0.7, -2.0], requires_grad=True)
    old_logp = logp.detach().clone()
    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    loss, info = clipped_surrogate(logp, old_logp, adv, EPS)
    assert loss.item() == pytest.approx(-float(adv.mean()))
    assert float(info["clip_frac"]) == 0.0
    assert float(info["approx_kl"]) == 0.0
    assert not info["approx_kl"].requires_grad and not info["clip_frac"].requires_grad
    loss.backward()
    # d/dlogp of −A·r/B at r = 1 (both branches of the max agree)
    torch.testing.assert_close(logp.grad, -adv / len(adv))


def surrogate_case():
    """Six samples, one per situation of the min/clip (ε = 0.2)."""
    ratio = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.15, 0.9], dtype=torch.float64)
    adv = torch.tensor([2.0, -1.0, -3.0, 1.5, 1.0, -2.0], dtype=torch.float64)
    old_logp = torch.tensor([-0.5, -1.0, -0.2, -2.0, -0.7, -1.5], dtype=torch.float64)
    logp = (old_logp + ratio.log()).requires_grad_()
    return ratio, adv, old_logp, logp


def test_surrogate_value_and_diagnostics():
    ratio, adv, old_logp, logp = surrogate_case()
    loss, info = clipped_surrogate(logp, old_logp, adv, EPS)
    # per sample max(−A r, −A clip(r)), worked out by hand
    per_sample = [-2.0 * 1.2, 1.0 * 0.8, 3.0 * 1.5, -1.5 * 0.5, -1.0 * 1.15, 2.0 * 0.9]
    assert loss.item() == pytest.approx(sum(per_sample) / 6)
    assert float(info["clip_frac"]) == pytest.approx(4 / 6)  # |r − 1| = 0.5 for the first four
    k3 = [(r - 1.0) - math.log(r) for r in ratio.tolist()]
    assert float(info["approx_kl"]) == pytest.approx(sum(k3) / 6)
    # k3, not the plain k1 = E[−log r] (they differ here since E[r − 1] ≠ 0)
    assert float(info["approx_kl"]) != pytest.approx(-float(ratio.log().mean()))
    assert float(info["approx_kl"]) > 0


def test_surrogate_gradient_zero_exactly_where_the_clip_binds():
    ratio, adv, old_logp, logp = surrogate_case()
    loss, _ = clipped_surrogate(logp, old_logp, adv, EPS)
    loss.backward()
    grad = logp.grad
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
    ratio, adv, old_logp, _ = surrogate_case()
    for keep in range(6):
        logp = (old_logp + ratio.log()).requires_grad_()
        clipped_surrogate(logp[keep:keep + 1], old_logp[keep:keep + 1], adv[keep:keep + 1],
                          EPS)[0].backward()
        alone = float(logp.grad[keep])
        logp_all = (old_logp + ratio.log()).requires_grad_()
        clipped_surrogate(logp_all, old_logp, adv, EPS)[0].backward()
        assert float(logp_all.grad[keep]) * 6 == pytest.approx(alone, abs=1e-12)


# ------------------------------------------------------------------------- value loss

V = [1.0, 2.0, -1.0, 0.0]
V_OLD = [0.5, 2.5, 0.0, 1.0]
RET = [2.0, 0.0, -1.5, 0.5]


def test_value_loss_unclipped_by_hand():
    values = torch.tensor(V, requires_grad=True)
    loss = value_loss(values, torch.tensor(V_OLD), torch.tensor(RET), None)
    # ½ mean of (V − R)² = ½ (1 + 4 + 0.25 + 0.25) / 4
    assert loss.item() == pytest.approx(0.6875)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([-0.25, 0.5, 0.125, -0.125]))


def test_value_loss_clipped_by_hand():
    values = torch.tensor(V, requires_grad=True)
    loss = value_loss(values, torch.tensor(V_OLD), torch.tensor(RET), EPS)
    # V_clip = V_old + clip(V − V_old, ±0.2) = [0.7, 2.3, −0.2, 0.8]
    # (V_clip − R)² = [1.69, 5.29, 1.69, 0.09]; (V − R)² = [1, 4, 0.25, 0.25]
    # max = [1.69, 5.29, 1.69, 0.25]: ½ · 8.92 / 4
    assert loss.item() == pytest.approx(1.115)
    loss.backward()
    # the first three take the clipped (constant) term: no gradient; the last the
    # unclipped one: (V − R) / B
    torch.testing.assert_close(values.grad, torch.tensor([0.0, 0.0, 0.0, -0.125]))


def test_value_loss_clipping_is_a_no_op_inside_the_range():
    values = torch.tensor([0.55, 2.4, -0.1])
    old, ret = torch.tensor([0.5, 2.5, 0.0]), torch.tensor([2.0, 0.0, -1.5])
    assert float(value_loss(values, old, ret, EPS)) == pytest.approx(
        float(value_loss(values, old, ret, None)))


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
    params = list(agent.parameters())
    captured = {}

    def record_step(optimizer, loss, params_, max_grad_norm):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        captured["grads"] = [p.grad.clone() for p in params_]
        return float("nan")

    before = {k: v.copy() for k, v in vars(batch).items() if isinstance(v, np.ndarray)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo_mod, "step", record_step)
        PPO(cfg, agent, ENV_CFG["num_envs"]).update(batch, progress=0.0)
    # the update left the batch alone (no in-place normalization or reuse of its buffers)
    for key, arr in before.items():
        np.testing.assert_array_equal(getattr(batch, key), arr, err_msg=key)
        assert isinstance(getattr(batch, key), np.ndarray)

    adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                   batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
    mask = batch.valid
    adv_t = normalize(torch.from_numpy(adv[mask]))
    ret_t = torch.from_numpy(ret[mask])
    obs, actions = torch.from_numpy(batch.obs[mask]), torch.from_numpy(batch.actions[mask])
    logp, entropy, values = agent.evaluate(obs, actions)
    pg_part = -(adv_t * logp).mean()
    v_part = cfg.vf_coef * 0.5 * (values - ret_t).pow(2).mean()
    ent_part = -ent_coef * entropy.mean()
    expected = torch.autograd.grad(pg_part + v_part + ent_part, params, retain_graph=True)
    for got, want in zip(captured["grads"], expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # every part is visible at that tolerance: dropping the policy term or flipping the
    # entropy bonus's sign would change the policy head's gradient beyond it
    head = next(i for i, p in enumerate(params) if p is agent.pi_head.weight)
    tol = 1e-6 + 1e-4 * expected[head].abs()
    for part, factor in ((pg_part, 1.0), (ent_part, 2.0)):
        grad = torch.autograd.grad(part, agent.pi_head.weight, retain_graph=True)[0]
        assert bool((factor * grad.abs() > 10 * tol).any())
