"""The NumPy rollout actor computes what the torch Agent computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pgrun.numpy_agent import NumpyAgent, rng_for
from pgrun.policies import Agent


def _agent(activation="tanh", hidden=(16, 16), shared=False, n_actions=3, seed=0):
    torch.manual_seed(seed)
    agent = Agent(5, n_actions, list(hidden), activation, with_value=True, shared=shared)
    agent.pi_head.weight.data.mul_(50)  # a far from uniform policy
    return agent


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "gelu"])
@pytest.mark.parametrize(("hidden", "shared"), [((16, 16), False), ((16,), True), ((), False)])
def test_logp_and_value_match_torch(activation, hidden, shared):
    agent = _agent(activation, hidden, shared)
    obs = np.random.default_rng(1).normal(size=(32, 5)).astype(np.float32)
    actions, logp, value = NumpyAgent(agent).act(obs, rng_for(0, 0))
    with torch.no_grad():
        t_logp, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    np.testing.assert_allclose(logp, t_logp.numpy(), atol=1e-5)
    np.testing.assert_allclose(value, t_value.numpy(), atol=1e-5)
    np.testing.assert_allclose(NumpyAgent(agent).value(obs), t_value.numpy(), atol=1e-5)


def test_actor_sees_optimizer_steps_without_copying():
    agent = _agent()
    actor = NumpyAgent(agent)
    obs = np.ones((4, 5), dtype=np.float32)
    before = actor.value(obs).copy()
    opt = torch.optim.Adam(agent.parameters(), lr=0.1)
    agent.value(torch.from_numpy(obs)).sum().backward()
    opt.step()
    after = actor.value(obs)
    assert not np.allclose(before, after)
    with torch.no_grad():
        np.testing.assert_allclose(after, agent.value(torch.from_numpy(obs)).numpy(), atol=1e-5)


def test_sampling_frequencies_follow_the_policy():
    agent = _agent(seed=3)
    obs = np.repeat(np.full((1, 5), 0.3, dtype=np.float32), 30_000, axis=0)
    actions, _, _ = NumpyAgent(agent).act(obs, rng_for(0, 0))
    with torch.no_grad():
        probs = agent.evaluate(torch.from_numpy(obs[:1]).expand(3, 5), torch.arange(3))[0].exp()
    counts = np.bincount(actions, minlength=3)
    assert probs.min() > 0.02  # every action is sampled often enough to test
    _, p_value = stats.chisquare(counts, probs.numpy().astype(np.float64) * len(obs))
    assert p_value > 1e-4, (counts, probs)


def test_deterministic_is_argmax_and_streams_are_reproducible():
    agent = _agent()
    actor = NumpyAgent(agent)
    obs = np.random.default_rng(2).normal(size=(64, 5)).astype(np.float32)
    greedy, _, _ = actor.act(obs, None, deterministic=True)
    with torch.no_grad():
        logits = agent.pi_head(agent.pi_body(torch.from_numpy(obs)))
    np.testing.assert_array_equal(greedy, logits.argmax(-1).numpy())
    a1, _, _ = actor.act(obs, rng_for(7, 0))
    a2, _, _ = actor.act(obs, rng_for(7, 0))
    a3, _, _ = actor.act(obs, rng_for(7, 1))
    np.testing.assert_array_equal(a1, a2)
    assert not np.array_equal(a1, a3)


# ------------------------------------------------------------------ Gaussian head (Box actions)
def _gaussian_agent(bounds="clip", state_dependent=False, hidden=(16, 16), seed=0, act_dim=2):
    from pgrun.distributions import ActionBounds

    torch.manual_seed(seed)
    low, high = np.array([-2.0, 0.0][:act_dim]), np.array([2.0, 1.0][:act_dim])
    agent = Agent(5, act_dim, list(hidden), "tanh", with_value=True,
                  action_bounds=ActionBounds(low, high, bounds), log_std_init=-0.5,
                  state_dependent_std=state_dependent)
    agent.pi_head.weight.data.mul_(30)  # means away from zero
    return agent


GAUSSIAN_CASES = [("clip", False, (16, 16)), ("clip", True, (16,)), ("tanh", False, (16, 16)),
                  ("tanh", True, ())]


@pytest.mark.parametrize(("bounds", "state_dependent", "hidden"), GAUSSIAN_CASES)
def test_gaussian_logp_and_value_match_torch(bounds, state_dependent, hidden):
    agent = _gaussian_agent(bounds, state_dependent, hidden)
    obs = np.random.default_rng(1).normal(size=(64, 5)).astype(np.float32)
    actor = NumpyAgent(agent)
    for deterministic in (False, True):
        actions, logp, value = actor.act(obs, rng_for(0, 0), deterministic)
        assert actions.dtype == np.float32 and actions.shape == (64, 2)
        with torch.no_grad():
            t_logp, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
        np.testing.assert_allclose(logp, t_logp.numpy(), atol=2e-4, rtol=1e-5)
        np.testing.assert_allclose(value, t_value.numpy(), atol=1e-5)
    # deterministic actions are the mean, and the torch agent's own act agrees
    with torch.no_grad():
        t_mean, _, _ = agent.act(torch.from_numpy(obs), deterministic=True)
    np.testing.assert_allclose(actions, t_mean.numpy(), atol=1e-5)
    # env actions: the same mapping into the bounds on both sides
    np.testing.assert_allclose(actor.to_env(actions),
                               agent.env_action(torch.from_numpy(actions)).numpy(), atol=1e-6)


@pytest.mark.parametrize("state_dependent", [False, True])
def test_gaussian_sampling_moments_follow_the_policy(state_dependent):
    agent = _gaussian_agent("clip", state_dependent, seed=3)
    obs = np.repeat(np.full((1, 5), 0.3, dtype=np.float32), 40_000, axis=0)
    actions, _, _ = NumpyAgent(agent).act(obs, rng_for(0, 0))
    with torch.no_grad():
        mean, log_std = agent.gaussian(agent.pi_head(agent.pi_body(torch.from_numpy(obs[:1]))))
        mean, std = mean[0].numpy(), log_std.exp()[0].numpy()
    se = std / np.sqrt(len(obs))
    np.testing.assert_array_less(np.abs(actions.mean(0) - mean), 5 * se)  # ~5 standard errors
    np.testing.assert_allclose(actions.std(0), std, rtol=0.02)
    z = (actions - mean) / std  # standardized samples are N(0, 1): KS test per dimension
    for dim in range(z.shape[1]):
        assert stats.kstest(z[:, dim], "norm").pvalue > 1e-4
    # torch's reference sampler draws from the same distribution
    torch.manual_seed(0)
    with torch.no_grad():
        t_actions, _, _ = agent.act(torch.from_numpy(obs))
    np.testing.assert_allclose(t_actions.numpy().std(0), std, rtol=0.02)
    np.testing.assert_array_less(np.abs(t_actions.numpy().mean(0) - mean), 5 * se)


def test_actor_sees_log_std_steps_without_copying():
    agent = _gaussian_agent()
    actor = NumpyAgent(agent)
    obs = np.ones((4, 5), dtype=np.float32)
    _, before, _ = actor.act(obs, None, deterministic=True)  # −Σ log σ − const
    with torch.no_grad():
        agent.log_std.add_(0.25)  # in place, as optimizers step
    _, after, _ = actor.act(obs, None, deterministic=True)
    np.testing.assert_allclose(before - after, 0.5, atol=1e-5)  # two dimensions × 0.25


def test_one_hot_mlp_and_table_match_torch():
    """Discrete observations: an MLP on the one-hot code, or a table (row lookup)."""
    for kind, hidden in (("mlp", [8]), ("tabular", [])):
        torch.manual_seed(0)
        agent = Agent(6, 3, hidden, with_value=True, kind=kind, discrete_obs=True, obs_start=2)
        with torch.no_grad():
            for p in agent.parameters():
                p.normal_()
        obs = np.random.default_rng(0).integers(2, 8, size=40)
        actions, logp, value = NumpyAgent(agent).act(obs, rng_for(0, 0))
        with torch.no_grad():
            t_logp, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
        np.testing.assert_allclose(logp, t_logp.numpy(), atol=1e-5)
        np.testing.assert_allclose(value, t_value.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["categorical", "gaussian", "gaussian_sd", "shared"])
def test_mode_is_the_deterministic_action(kind):
    """``mode`` (greedy evaluation, policy tower only) returns act(deterministic=True)'s
    actions: the argmax of the logits, or the Gaussian mean."""
    if kind == "categorical":
        agent = _agent()
    elif kind == "shared":
        agent = _agent(hidden=(16,), shared=True)
    else:
        agent = _gaussian_agent(state_dependent=kind == "gaussian_sd", hidden=(16,))
    actor = NumpyAgent(agent)
    obs = np.random.default_rng(4).normal(size=(64, 5)).astype(np.float32)
    expected, _, _ = actor.act(obs, None, deterministic=True)
    greedy = actor.mode(obs)
    assert greedy.dtype == expected.dtype and greedy.shape == expected.shape
    np.testing.assert_array_equal(greedy, expected)
    if kind == "categorical":  # and not a constant: the policy is far from uniform
        assert len(np.unique(greedy)) > 1
