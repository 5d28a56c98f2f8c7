"""TRPO and PPO with the adaptive KL penalty: the exact KL and Fisher-vector products
against finite differences, the trust region, β's adaptation, and learning CartPole."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pgrun.algos import base
from pgrun.algos.ppo_kl import PPOKL, PPOKLConfig, adapt_beta, kl_penalized_surrogate
from pgrun.algos.trpo import TRPO, TRPOConfig, conjugate_gradient
from pgrun.algos.vpg import VPG
from pgrun.policies import ActorCritic, policy_value
from pgrun.rollout import Actor, Collector

SPACES = {
    "categorical": (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(3)),
    "gaussian": (gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
                 gym.spaces.Box(-1.0, 1.0, (2,), np.float32)),
}


def _policy(kind: str, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    policy = ActorCritic(*SPACES[kind], hidden_sizes=[8], ortho_init=False)
    return policy.double()


def _flat(policy) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in policy.policy_parameters()])


def _set(policy, theta: torch.Tensor) -> None:
    offset = 0
    with torch.no_grad():
        for p in policy.policy_parameters():
            p.copy_(theta[offset:offset + p.numel()].view_as(p))
            offset += p.numel()


@pytest.mark.parametrize("kind", list(SPACES))
def test_kl_is_zero_at_itself_and_matches_its_definition(kind):
    policy = _policy(kind)
    obs = torch.randn(5, SPACES[kind][0].shape[0], dtype=torch.float64)
    p = policy(obs)[0].detach()
    _set(policy, _flat(policy) + 0.3 * torch.randn(_flat(policy).shape, dtype=torch.float64))
    q = policy(obs)[0]
    torch.testing.assert_close(p.kl(p), torch.zeros(5, dtype=torch.float64))
    if kind == "categorical":  # Σ_k p_k (log p_k − log q_k)
        by_def = (p.log_p.exp() * (p.log_p - q.log_p)).sum(-1)
        ref = torch.distributions.kl_divergence(
            torch.distributions.Categorical(logits=p.log_p), torch.distributions.Categorical(logits=q.log_p))
    else:
        by_def = None
        ref = torch.distributions.kl_divergence(
            torch.distributions.Independent(torch.distributions.Normal(p.mean, p.log_std.exp()), 1),
            torch.distributions.Independent(torch.distributions.Normal(q.mean, q.log_std.exp()), 1))
    torch.testing.assert_close(p.kl(q), ref)
    if by_def is not None:
        torch.testing.assert_close(p.kl(q), by_def)
    assert (p.kl(q) > 0).all() and not torch.allclose(p.kl(q), q.kl(p))  # KL is not symmetric


@pytest.mark.parametrize("kind", list(SPACES))
def test_fisher_vector_product_matches_finite_differences_of_the_kl_gradient(kind):
    """Fv = ∇(∇D̄_KL·v) at θ_old, against (∇D̄_KL(θ+εv) − ∇D̄_KL(θ−εv)) / 2ε in float64."""
    policy = _policy(kind)
    cfg = OmegaConf.to_object(OmegaConf.structured(TRPOConfig(cg_damping=0.0)))
    algo = TRPO(cfg, policy, 1)
    obs = torch.randn(16, SPACES[kind][0].shape[0], dtype=torch.float64)
    old = policy(obs)[0].detach()
    theta = _flat(policy)
    v = torch.randn(theta.shape, dtype=torch.float64)
    fv = algo.fisher_product(obs, old)(v)

    def grad_kl(th):
        _set(policy, th)
        kl = old.kl(policy(obs)[0]).mean()
        return algo.flat_grad(kl)

    eps = 1e-5
    fd = (grad_kl(theta + eps * v) - grad_kl(theta - eps * v)) / (2 * eps)
    torch.testing.assert_close(fv, fd, rtol=1e-5, atol=1e-8)
    assert float(v @ fv) > 0  # the Fisher matrix is positive (semi)definite


def test_conjugate_gradient_solves_a_positive_definite_system():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    fisher = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64)
    g = torch.randn(6, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: fisher @ v, g, iters=20)
    torch.testing.assert_close(fisher @ x, g)


def test_conjugate_gradient_solves_each_seeds_row_as_alone():
    """K seeds' rows, each with its own Fisher matrix: row 0's residual falls under the
    tolerance early (its g is small) and its solve must stop there, as alone, while row
    1's goes on."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 6, 6, generator=gen, dtype=torch.float64)
    fishers = a @ a.transpose(1, 2) + 0.5 * torch.eye(6, dtype=torch.float64)
    g = torch.randn(2, 6, generator=gen, dtype=torch.float64) * torch.tensor([[1e-3], [1.0]])
    x = conjugate_gradient(lambda v: torch.einsum("kij,kj->ki", fishers, v), g, 20, tol=1e-7)
    for k in range(2):
        alone = conjugate_gradient(lambda v, f=fishers[k]: f @ v, g[k], 20, tol=1e-7)
        torch.testing.assert_close(x[k], alone, rtol=1e-10, atol=1e-14)
    exact = torch.linalg.solve(fishers[0], g[0])
    assert (x[0] - exact).norm() > 1e-3 * exact.norm()  # row 0 did stop early


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate(env_id):
    torch.manual_seed(0)
    envs = gym.make_vec(env_id, 4, vectorization_mode="sync")
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space)
    collector = Collector(envs, Actor(policy, envs.single_observation_space,
                                      envs.single_action_space), seed=0, with_value=True)
    cfg = OmegaConf.to_object(OmegaConf.structured(TRPOConfig(max_kl=0.005, vf_iters=1)))
    algo = TRPO(cfg, policy, 4)
    for _ in range(3):
        batch = collector.collect_steps(64)
        d = algo.tensors(batch, obs=batch.obs, actions=batch.actions)
        with torch.no_grad():
            before = policy(d["obs"])[0].detach()
        stats = algo.update(batch, 0.0)
        with torch.no_grad():
            kl = float(before.kl(policy(d["obs"])[0]).mean())
        assert stats["step_frac"] > 0  # a step was accepted
        assert kl <= cfg.max_kl * (1 + 1e-4)
        assert kl > 0.1 * cfg.max_kl * stats["step_frac"] ** 2  # and it used the region
        assert stats["kl"] == pytest.approx(kl, rel=1e-4)
    envs.close()


def test_kl_penalized_surrogate_gradient_and_beta_adaptation():
    gen = torch.Generator().manual_seed(1)
    logp = torch.randn(8, generator=gen, dtype=torch.float64, requires_grad=True)
    old = torch.randn(8, generator=gen, dtype=torch.float64)
    adv = torch.randn(8, generator=gen, dtype=torch.float64)
    kl = (logp - old).pow(2)  # any differentiable per-sample KL
    loss = kl_penalized_surrogate(logp, old, adv, kl, beta=0.7)
    (grad,) = torch.autograd.grad(loss, logp)
    # −E[r Â − β KL]: ∂/∂log π_i = −(r_i Â_i − 0.7 · 2 (log π_i − log π_old,i)) / 8
    expected = -((logp - old).exp() * adv - 0.7 * 2 * (logp - old)).detach() / 8
    torch.testing.assert_close(grad, expected)
    assert adapt_beta(1.0, 0.001, 0.01) == 0.5
    assert adapt_beta(1.0, 0.02, 0.01) == 2.0
    assert adapt_beta(1.0, 0.01, 0.01) == 1.0


def test_ppo_kl_beta_is_checkpointed_state():
    envs = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync")
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space)
    algo = PPOKL(OmegaConf.structured(PPOKLConfig()), policy, 2)
    algo.beta = 0.125
    other = PPOKL(OmegaConf.structured(PPOKLConfig()), policy, 2)
    other.load_state_dict(algo.state_dict())
    assert other.beta == 0.125
    envs.close()


@pytest.mark.parametrize("algo, steps", [("trpo", 30_000), ("ppo_kl", 30_000)])
def test_learns_cartpole_at_a_small_budget(cli, tmp_path, algo, steps):
    out = cli("train", f"algo={algo}", f"total_steps={steps}", "eval.interval=10000",
              "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_eval_return"] >= 400, summary
    if algo == "trpo":
        assert summary["update_path"] == "autograd"  # differentiated twice: no accelerator


@pytest.mark.parametrize("algo_cls", [TRPO, VPG])
def test_critic_fits_in_epochs_of_minibatches_that_cover_the_batch(algo_cls, monkeypatch):
    """``algo.vf_minibatches=4, vf_iters=3``: the critic takes 3 epochs × 4 Adam steps, each
    epoch a shuffle of the whole batch in 4 parts; the value loss reported is the whole
    batch's before the first step, and fitting lowers it."""
    torch.manual_seed(0)
    envs = gym.make_vec("Pendulum-v1", 2, vectorization_mode="sync")
    policy = ActorCritic(envs.single_observation_space, envs.single_action_space)
    collector = Collector(envs, Actor(policy, envs.single_observation_space,
                                      envs.single_action_space), seed=0, with_value=True)
    cfg = OmegaConf.to_object(OmegaConf.structured(algo_cls.Config(vf_iters=3, vf_minibatches=4)))
    algo = algo_cls(cfg, policy, 2)
    batch = collector.collect_steps(32)  # 64 samples
    d = algo.gae_tensors(batch)

    def loss() -> float:
        with torch.no_grad():
            return float((policy_value(policy, d["obs"]) - d["ret"]).pow(2).mean())

    before, seen = loss(), []
    monkeypatch.setattr(base, "policy_value", lambda p, obs: (
        seen.append(obs.clone()), policy_value(p, obs))[1])
    stats = algo.update(batch, 0.0)
    assert stats["value_loss"] == pytest.approx(before, rel=1e-6)
    assert torch.equal(seen[0], d["obs"]) and len(seen) == 1 + 3 * 4
    rows = sorted(map(tuple, d["obs"].tolist()))
    for epoch in range(3):
        parts = seen[1 + 4 * epoch: 5 + 4 * epoch]
        assert [len(p) for p in parts] == [16] * 4
        assert sorted(map(tuple, torch.cat(parts).tolist())) == rows  # each sample once
    assert seen[1].tolist() != seen[5].tolist()  # reshuffled each epoch
    assert int(algo.v_opt.state_dict()["state"][0]["step"]) == 12
    assert loss() < before
    envs.close()
