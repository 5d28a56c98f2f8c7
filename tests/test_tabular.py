"""The tabular softmax policy for Discrete observations: one row of logits (and of V) per
state, selected automatically, run in NumPy by row lookup, learning on FrozenLake."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from pgrun.algos.reinforce import reinforce_loss
from pgrun.config import ConfigError
from pgrun.numpy_agent import NumpyAgent, rng_for
from pgrun.policies import build_agent
from pgrun.rollout import Collector
from pgrun.train import train
from tests.conftest import compose_config

OBS, ACT = gym.spaces.Discrete(16), gym.spaces.Discrete(4)


def _agent(*overrides, with_value=True, seed=0):
    torch.manual_seed(seed)
    return build_agent(compose_config(*overrides).policy, OBS, ACT, with_value=with_value)


def _randomize(agent):
    with torch.no_grad():
        for p in agent.parameters():
            p.normal_(0.0, 2.0)
    return agent


def test_auto_picks_a_table_for_discrete_observations():
    agent = _agent()
    assert agent.kind == "tabular"
    assert dict((k, tuple(v.shape)) for k, v in agent.state_dict().items()) == {
        "pi_head.weight": (16, 4), "v_head.weight": (16, 1)}
    # zero-initialized: uniform policy, V = 0
    logp, entropy, value = agent.evaluate(torch.arange(16), torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(logp, torch.full((16,), -np.log(4.0)))
    torch.testing.assert_close(value, torch.zeros(16))
    assert build_agent(compose_config().policy, gym.spaces.Box(-1, 1, (4,)), ACT, True).kind == "mlp"
    # policy.kind=mlp on Discrete observations: an MLP on the one-hot code
    mlp = _agent("policy.kind=mlp")
    assert mlp.kind == "mlp" and mlp.pi_body[1][0].in_features == 16


def test_tabular_on_box_observations_is_a_config_error():
    with pytest.raises(ConfigError, match="policy.kind=tabular needs a Discrete observation"):
        build_agent(compose_config("policy.kind=tabular").policy, gym.spaces.Box(-1, 1, (4,)),
                    ACT, with_value=True)


def test_numpy_row_lookup_matches_torch():
    agent = _randomize(_agent())
    obs = np.random.default_rng(0).integers(0, 16, size=200)
    actor = NumpyAgent(agent)
    for deterministic in (False, True):
        actions, logp, value = actor.act(obs, rng_for(0, 0), deterministic)
        with torch.no_grad():
            t_logp, _, t_value = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
        np.testing.assert_allclose(logp, t_logp.numpy(), atol=1e-5)
        np.testing.assert_allclose(value, t_value.numpy(), atol=1e-5)
    np.testing.assert_array_equal(actions, agent.pi_head.weight.detach().numpy()[obs].argmax(1))
    np.testing.assert_allclose(actor.value(obs), agent.v_head.weight.detach().numpy()[obs, 0])


def test_reinforce_gradient_reaches_only_the_visited_rows():
    """Through the update's path (NumpyAgent.evaluate → reinforce_loss → backward with the
    entropy bonus ∂L/∂H = −c_H/M): only the visited rows get a gradient, and it is the
    tabular softmax policy gradient."""
    agent = _randomize(_agent(with_value=False))
    visited = [1, 4, 4, 9, 1]
    obs, actions = np.array(visited), np.array([0, 3, 2, 1, 1])
    psi = np.array([1.0, -2.0, 0.5, 3.0, 1.0], dtype=np.float32)
    M, c = 2, 0.01
    net = NumpyAgent(agent)
    logp, _, _ = net.evaluate(obs, actions)
    _, dlogp = reinforce_loss(logp, psi, n_episodes=M)
    agent.flat_grad.fill_(5.0)  # stale gradients in unvisited rows must not survive
    net.backward(dlogp, -c / M)
    grad = agent.pi_head.weight.grad  # a view of the buffer backward wrote
    rows = set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())
    assert rows == {1, 4, 9}
    # and the row gradient is the softmax policy gradient: −Σ_t Ψ_t (onehot(a_t) − π(·|s_t)) / M
    pi = agent.pi_head.weight.detach()[9].softmax(-1)
    want = -(3.0 * (torch.nn.functional.one_hot(torch.tensor(1), 4) - pi)) / M
    ent_grad = torch.autograd.functional.jacobian(
        lambda z: -(z.softmax(-1) * z.log_softmax(-1)).sum(), agent.pi_head.weight.detach()[9])
    torch.testing.assert_close(grad[9], want - c * ent_grad / M)
    # row 4 was visited twice: the two steps' gradients add up
    pi4 = agent.pi_head.weight.detach()[4].softmax(-1)
    eye = torch.eye(4)
    ent_grad4 = torch.autograd.functional.jacobian(
        lambda z: -(z.softmax(-1) * z.log_softmax(-1)).sum(), agent.pi_head.weight.detach()[4])
    want4 = (2.0 * (eye[3] - pi4) - 0.5 * (eye[2] - pi4)) / M - 2 * c * ent_grad4 / M
    torch.testing.assert_close(grad[4], want4)
    # the whole table against autograd of the reference loss −(1/M) Σ Ψ log π − (c/M) Σ H
    t_logp, t_ent, _ = agent.evaluate(torch.from_numpy(obs), torch.from_numpy(actions))
    ref_loss = -(t_logp * torch.from_numpy(psi)).sum() / M - c * t_ent.sum() / M
    (ref_grad,) = torch.autograd.grad(ref_loss, agent.pi_head.weight)
    torch.testing.assert_close(grad, ref_grad)


def test_rollout_stores_discrete_observations_as_int64_indices():
    envs = gym.make_vec("FrozenLake-v1", num_envs=3, vectorization_mode="sync")
    agent = _agent()
    batch = Collector(envs, agent, seed=0).collect_steps(10)
    assert batch.obs.dtype == np.int64 and batch.obs.shape == (10, 3)
    assert batch.actions.dtype == np.int64 and batch.actions.shape == (10, 3)
    assert (batch.obs[0] == 0).all() and (batch.obs < 16).all()
    with torch.no_grad():
        logp, _, _ = agent.evaluate(torch.from_numpy(batch.obs.reshape(-1)),
                                    torch.from_numpy(batch.actions.reshape(-1)))
    np.testing.assert_allclose(batch.logp.reshape(-1), logp.numpy(), atol=1e-6)


@pytest.mark.parametrize(("algo", "extra"), [("reinforce", ["algo.lr=0.1"]),
                                             ("ppo", ["algo.lr=0.05", "algo.num_steps=64"])])
def test_tabular_agent_learns_deterministic_frozen_lake(tmp_path, algo, extra):
    cfg = compose_config(f"algo={algo}", *extra, "env.id=FrozenLake-v1", "env.num_envs=8",
                         "env.reward_threshold=null", "+env.kwargs.is_slippery=false",
                         "total_steps=12000", "eval.interval=4000", "progress=none", "seed=0")
    train(cfg, tmp_path)
    evals = pd.read_csv(tmp_path / "eval.csv")
    assert evals["return_mean"].iloc[0] == 0.0  # the uniform policy's greedy action never gets there
    assert evals["return_mean"].iloc[-1] == 1.0, evals
