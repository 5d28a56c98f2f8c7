"""GRPO for control: groups from one reset seed, group-standardized returns, the loss."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import pgrun.algos.grpo as grpo_mod
from pgrun.algos.grpo import GRPO, GRPOConfig, group_advantages, kl_penalty
from pgrun.config import ConfigError
from pgrun.flat import flat_parameters
from pgrun.train import train
from tests.conftest import compose_config
from tests.helpers import evaluate, flat_grad_of, make_collector, make_policy


def _grpo(num_envs=8, group_size=4, vectorization="sync", **cfg):
    envs = gym.make_vec("CartPole-v1", num_envs, vectorization_mode=vectorization)
    policy = make_policy(4, 2, [16], with_value=False, seed=0)
    algo = GRPO(OmegaConf.structured(GRPOConfig(group_size=group_size, **cfg)), policy, num_envs)
    return algo, make_collector(envs, policy, seed=0)


def test_group_advantages_standardize_within_each_group():
    adv = group_advantages(np.array([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0]), 4)
    z = (np.array([1, 2, 3, 4]) - 2.5) / np.std([1, 2, 3, 4])
    np.testing.assert_allclose(adv[:4], z, rtol=1e-6)
    np.testing.assert_array_equal(adv[4:], 0.0)  # all equal: no signal


def test_groups_start_from_one_seed_and_steps_carry_their_episode_advantage():
    algo, collector = _grpo()
    batch = algo.collect(collector)
    first = batch.obs[0]
    assert (first[1:4] == first[0]).all()  # group 0: one initial state
    assert (first[5:8] == first[4]).all()  # group 1
    assert not np.array_equal(first[0], first[4])
    assert (batch.dones & batch.valid).sum(axis=0).tolist() == [1] * 8  # one episode each

    returns = (batch.rewards * batch.valid).sum(axis=0)  # gamma = 1
    expected = group_advantages(returns, 4)
    adv = algo.step_advantages(batch)
    for env in range(8):
        steps = batch.valid[:, env]
        np.testing.assert_allclose(adv[steps, env], expected[env], rtol=1e-6)

    seeds_next = algo.collect(collector).obs[0]
    assert not np.array_equal(seeds_next[0], first[0])  # a new seed per update


def test_update_moves_towards_high_advantage_episodes_and_kl_starts_at_zero():
    algo, collector = _grpo(num_epochs=1, num_minibatches=1, kl_coef=1.0, lr=1e-2,
                            anneal_lr=False)
    batch = algo.collect(collector)
    adv = algo.step_advantages(batch)
    obs = torch.from_numpy(batch.obs[batch.valid])
    actions = torch.from_numpy(batch.actions[batch.valid])
    weights = torch.from_numpy(adv[batch.valid])
    with torch.no_grad():
        before = (evaluate(algo.policy, obs, actions)[0] * weights).sum()
    stats = algo.update(batch, 0.0)
    assert stats["clip_frac"] == 0  # the only minibatch: ratio 1 before its step
    with torch.no_grad():
        logp = evaluate(algo.policy, obs, actions)[0]
        after = (logp * weights).sum()
    assert after > before  # log-probs of above-average episodes went up
    # approx_kl: the k3 estimate of KL[π_old‖π_θ] after the update, on the batch
    log_ratio = logp.double() - torch.from_numpy(batch.logp[batch.valid]).double()
    k3 = float((log_ratio.exp() - 1 - log_ratio).mean())
    assert stats["approx_kl"] == pytest.approx(k3, rel=1e-3) and k3 > 0


def penalty(logp, old_logp, dtype=torch.float64):
    """(k3, ∂k3/∂log π) of pgrun's ``kl_penalty`` by autograd."""
    t_logp = torch.tensor(logp, dtype=dtype, requires_grad=True)
    k3 = kl_penalty(t_logp, torch.tensor(old_logp, dtype=dtype))
    (grad,) = torch.autograd.grad(k3, t_logp)
    return float(k3.detach()), grad.numpy()


def np_k3(logp, old_logp):
    """The reference E[π_old/π − log(π_old/π) − 1] in NumPy float64."""
    x = np.asarray(old_logp, np.float64) - np.asarray(logp, np.float64)
    return float(np.mean(np.exp(x) - x - 1.0))


def fd_grad(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def test_kl_penalty_by_hand_and_against_finite_differences():
    old_logp = np.array([-1.0, -0.5, -2.0], dtype=np.float32)
    logp = old_logp + np.log(np.array([2.0, 0.5, 1.0], dtype=np.float32))  # π/π_old
    k3, grad = penalty(logp, old_logp, torch.float32)
    # per sample (x = log π_old/π): eˣ − x − 1 = 0.5 + ln 2 − 1, 2 − ln 2 − 1, 0
    assert k3 == pytest.approx(((0.5 + math.log(2) - 1) + (1 - math.log(2))) / 3, rel=1e-6)
    # ∂/∂log π = (1 − eˣ)/B: (1 − ½)/3, (1 − 2)/3, 0
    np.testing.assert_allclose(grad, [0.5 / 3, -1 / 3, 0.0], rtol=1e-6, atol=1e-7)
    assert grad.dtype == np.float32
    ref_grad = fd_grad(lambda x: np_k3(x, old_logp), logp)
    assert k3 == pytest.approx(np_k3(logp, old_logp), rel=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    # the arguments swapped (k3 of the other direction) or the sign flipped: rejected
    assert not np.allclose(penalty(old_logp, logp, torch.float32)[1], ref_grad, atol=1e-3)
    assert not np.allclose(-grad, ref_grad, atol=1e-3)
    # non-negative, zero exactly at π = π_old, where its gradient vanishes too
    zero, zero_grad = penalty(old_logp, old_logp)
    assert zero == 0.0 and not zero_grad.any()
    rng = np.random.default_rng(0)
    old = rng.uniform(-3, 0, 200)
    new = old + rng.normal(0, 0.5, 200)
    k3, grad = penalty(new, old)
    assert k3 > 0 and k3 == pytest.approx(np_k3(new, old), rel=1e-12)
    np.testing.assert_allclose(grad, fd_grad(lambda x: np_k3(x, old), new), rtol=1e-6, atol=1e-9)


def test_later_epoch_gradient_matches_the_reference_loss_with_kl():
    """The second epoch's gradient (π ≠ π_old: the KL term and the clip are live) equals
    float64 autograd of the reference loss
    mean(max(−Â r, −Â clamp(r, 1±ε))) + β mean(π_old/π − log(π_old/π) − 1) − c_H mean(H)
    at the parameters that step saw; without the KL term it would not."""
    algo, collector = _grpo(num_epochs=2, num_minibatches=1, kl_coef=0.5, ent_coef=0.01,
                            lr=0.03, anneal_lr=False, max_grad_norm=None)
    batch = algo.collect(collector)
    policy, cfg = algo.policy, algo.cfg
    flat = flat_parameters(policy)
    real_step = grpo_mod.step
    seen = []

    def record_then_step(optimizer, loss, max_grad_norm, active=None):
        assert optimizer is algo.opt and max_grad_norm is None and active is None
        theta = flat.data.clone()
        norm = real_step(optimizer, loss, max_grad_norm)
        seen.append((theta, flat.grad.clone()))
        return norm

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grpo_mod, "step", record_then_step)
        algo.update(batch, 0.0)
    assert len(seen) == 2
    theta, got = seen[1]

    ref = copy.deepcopy(policy)
    flat_parameters(ref).data.copy_(theta)
    ref = ref.double()
    params = ref.policy_parameters()
    assert len(got) == sum(p.numel() for p in params)  # GRPO has no critic
    mask = batch.valid
    adv = torch.from_numpy(algo.step_advantages(batch)[mask]).double()
    old_logp = torch.from_numpy(batch.logp[mask]).double()
    logp, entropy, _ = evaluate(ref, torch.from_numpy(batch.obs[mask]).double(),
                                torch.from_numpy(batch.actions[mask]))
    ratio = (logp - old_logp).exp()
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)).mean()
    x = old_logp - logp
    kl = (x.exp() - x - 1.0).mean()
    ent = -cfg.ent_coef * entropy.mean()
    want = flat_grad_of(pg + cfg.kl_coef * kl + ent, params)
    tol = 1e-6 + 1e-4 * want.abs()
    assert bool(((got.double() - want).abs() <= tol).all())
    assert 0 < int(((ratio - 1).abs() > cfg.clip_eps).sum()) < len(ratio)
    kl_grad = flat_grad_of(cfg.kl_coef * kl, params)
    assert bool((kl_grad.abs() > 10 * tol).any())  # the KL term is visible at the tolerance
    # π_old left attached to the graph (the penalty's reference = π_θ): its gradient is
    # lost, which the same tolerance rejects
    attached = pg + cfg.kl_coef * kl_penalty(logp, logp) + ent
    assert bool(((flat_grad_of(attached, params) - want).abs() > 10 * tol).any())


def test_native_vector_env_is_refused_with_a_clear_message():
    algo, collector = _grpo(vectorization="vector_entry_point")
    with pytest.raises(ConfigError, match="env.vectorization=sync"):
        algo.collect(collector)


def test_num_envs_must_split_into_groups(cli, tmp_path):
    out = cli("train", "algo=grpo", "env.num_envs=12", "algo.group_size=8",
              f"hydra.run.dir={tmp_path}", "progress=none")
    assert out.returncode == 2 and "env.num_envs=12" in out.stderr
    assert "Traceback" not in out.stderr


def test_grpo_learns_cartpole_quickly(tmp_path):
    cfg = compose_config("algo=grpo", "total_steps=30000", "eval.interval=10000",
                         "progress=none", "seed=1")
    summary = train(cfg, tmp_path)
    assert summary["final_eval_return"] > 200, summary
