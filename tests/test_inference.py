"""The NumPy rollout actor computes what the torch Agent computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pgrun.inference import NumpyActor, rng_for
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
    actions, logp, value = NumpyActor(agent).act(obs, rng_for(0, 0))
    with torch.no_grad():
        t_logp, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    np.testing.assert_allclose(logp, t_logp.numpy(), atol=1e-5)
    np.testing.assert_allclose(value, t_value.numpy(), atol=1e-5)
    np.testing.assert_allclose(NumpyActor(agent).value(obs), t_value.numpy(), atol=1e-5)


def test_actor_sees_optimizer_steps_without_copying():
    agent = _agent()
    actor = NumpyActor(agent)
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
    actions, _, _ = NumpyActor(agent).act(obs, rng_for(0, 0))
    with torch.no_grad():
        probs = agent.evaluate(torch.from_numpy(obs[:1]).expand(3, 5), torch.arange(3))[0].exp()
    counts = np.bincount(actions, minlength=3)
    assert probs.min() > 0.02  # every action is sampled often enough to test
    _, p_value = stats.chisquare(counts, probs.numpy().astype(np.float64) * len(obs))
    assert p_value > 1e-4, (counts, probs)


def test_deterministic_is_argmax_and_streams_are_reproducible():
    agent = _agent()
    actor = NumpyActor(agent)
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


def test_numpy_tanh_module_matches_torch_tanh_and_its_gradient():
    from pgrun.policies import Tanh

    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Tanh(), (x,))
    x32 = torch.randn(256, 64) * 3
    torch.testing.assert_close(Tanh()(x32), torch.tanh(x32), atol=2e-7, rtol=0)
    strided = x32.t()  # non-contiguous input takes torch's own path
    torch.testing.assert_close(Tanh()(strided), torch.tanh(strided))
