"""The tabular softmax policy for Discrete observations: one row of logits (and of V) per
state, selected automatically, run by row lookup (in torch, or in NumPy by the
accelerator), learning on FrozenLake."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from pgrun.accelerate import attach
from pgrun.algos.base import adam, step
from pgrun.algos.reinforce import reinforce_loss
from pgrun.config import ConfigError
from pgrun.flat import flat_parameters
from pgrun.policies import build_policy
from pgrun.rollout import Actor, rng_for
from pgrun.train import train
from tests.conftest import compose_config
from tests.helpers import evaluate, make_collector

OBS, ACT = gym.spaces.Discrete(16), gym.spaces.Discrete(4)


def _policy(*overrides, with_value=True, seed=0):
    torch.manual_seed(seed)
    return build_policy(compose_config(*overrides).policy, OBS, ACT, with_value=with_value)


def _randomize(policy):
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, 2.0)
    return policy


def test_auto_picks_a_table_for_discrete_observations():
    policy = _policy()
    assert policy.kind == "tabular"
    assert dict((k, tuple(v.shape)) for k, v in policy.state_dict().items()) == {
        "head.out.weight": (16, 4), "v_out.weight": (16, 1)}
    # zero-initialized: uniform policy, V = 0
    logp, entropy, value = evaluate(policy, torch.arange(16), torch.zeros(16, dtype=torch.long))
    torch.testing.assert_close(logp, torch.full((16,), -np.log(4.0)))
    torch.testing.assert_close(entropy, torch.full((16,), np.log(4.0)))
    torch.testing.assert_close(value, torch.zeros(16))
    box = gym.spaces.Box(-1, 1, (4,))
    assert build_policy(compose_config().policy, box, ACT, True).kind == "mlp"
    # policy.kind=mlp on Discrete observations: an MLP on the one-hot code
    mlp = _policy("policy.kind=mlp")
    assert mlp.kind == "mlp" and mlp.pi_body[1][0].in_features == 16


def test_tabular_on_box_observations_is_a_config_error():
    with pytest.raises(ConfigError, match="policy.kind=tabular needs a Discrete observation"):
        build_policy(compose_config("policy.kind=tabular").policy, gym.spaces.Box(-1, 1, (4,)),
                     ACT, with_value=True)


def test_accelerated_row_lookup_matches_torch():
    policy = _randomize(_policy())
    fast = copy.deepcopy(policy)
    assert attach(fast) == "numpy-layers"
    obs = np.random.default_rng(0).integers(0, 16, size=200)
    actors = [Actor(p, OBS, ACT) for p in (policy, fast)]
    (a, logp, value), (a_fast, logp_fast, value_fast) = (
        actor.act(obs, rng_for(0, 0)) for actor in actors)
    np.testing.assert_array_equal(a, a_fast)  # same stream, same logits: same actions
    np.testing.assert_allclose(logp_fast, logp, atol=1e-5)
    np.testing.assert_allclose(value_fast, value, atol=1e-5)
    with torch.no_grad():
        t_logp, _, _ = evaluate(policy, torch.from_numpy(obs), torch.from_numpy(a))
    np.testing.assert_allclose(logp, t_logp.numpy(), atol=1e-6)
    table = policy.head.out.weight.detach().numpy()
    for actor in actors:
        np.testing.assert_array_equal(actor.mode(obs), table[obs].argmax(1))
        np.testing.assert_allclose(actor.value(obs), policy.v_out.weight.detach().numpy()[obs, 0])


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
def test_reinforce_gradient_reaches_only_the_visited_rows(accelerate):
    """Through the update's path (policy forward → reinforce_loss − (c_H/M) Σ H → ``step``
    into the flat gradient buffer): only the visited rows get a gradient, and it is the
    tabular softmax policy gradient."""
    policy = _randomize(_policy(with_value=False))
    assert attach(policy, accelerate) == ("numpy-layers" if accelerate else "autograd")
    visited = [1, 4, 4, 9, 1]
    obs, actions = torch.tensor(visited), torch.tensor([0, 3, 2, 1, 1])
    psi = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0])
    M, c = 2, 0.01
    opt = adam(policy, "policy", lr=0.0)  # the step leaves the table where it is
    table = policy.head.out.weight.detach().clone()
    flat_parameters(policy).grad.fill_(5.0)  # stale gradients in unvisited rows must not survive
    dist, _ = policy(obs)
    step(opt, reinforce_loss(dist.log_prob(actions), psi, n_episodes=M)
         - c * dist.entropy().sum() / M, None)
    torch.testing.assert_close(policy.head.out.weight.detach(), table, rtol=0, atol=0)
    grad = policy.head.out.weight.grad  # a view of the buffer the step wrote
    rows = set(torch.nonzero(grad.abs().sum(1)).flatten().tolist())
    assert rows == {1, 4, 9}
    # and the row gradient is the softmax policy gradient: −Σ_t Ψ_t (onehot(a_t) − π(·|s_t)) / M
    def ent_grad(row):
        return torch.autograd.functional.jacobian(
            lambda z: -(z.softmax(-1) * z.log_softmax(-1)).sum(), table[row])
    pi = table[9].softmax(-1)
    want = -(3.0 * (torch.nn.functional.one_hot(torch.tensor(1), 4) - pi)) / M
    torch.testing.assert_close(grad[9], want - c * ent_grad(9) / M)
    # row 4 was visited twice: the two steps' gradients add up
    pi4 = table[4].softmax(-1)
    eye = torch.eye(4)
    want4 = (2.0 * (eye[3] - pi4) - 0.5 * (eye[2] - pi4)) / M - 2 * c * ent_grad(4) / M
    torch.testing.assert_close(grad[4], want4)
    # a flipped entropy sign would be visible at that tolerance
    assert not torch.allclose(grad[4], want4 + 4 * c * ent_grad(4) / M)


def test_rollout_stores_discrete_observations_as_int64_indices():
    envs = gym.make_vec("FrozenLake-v1", num_envs=3, vectorization_mode="sync")
    policy = _randomize(_policy())
    attach(policy)
    batch = make_collector(envs, policy, seed=0).collect_steps(10)
    assert batch.obs.dtype == np.int64 and batch.obs.shape == (10, 3)
    assert batch.actions.dtype == np.int64 and batch.actions.shape == (10, 3)
    assert (batch.obs[0] == 0).all() and (batch.obs < 16).all()
    policy.accelerator = None
    with torch.no_grad():
        logp, _, _ = evaluate(policy, torch.from_numpy(batch.obs.reshape(-1)),
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
