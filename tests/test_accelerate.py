"""The NumPy-layers accelerator (pgrun/accelerate.py) against plain autograd.

One generic test: for every first-order algorithm in the registry × head × body the
accelerator claims, one ``update`` on the same small hand-made batch, from identical
initial weights and the same torch seed (minibatch shuffles), with the accelerator on and
off; the resulting parameters and the reported stats must agree to float32 tolerance.
Negative controls show that the comparison catches a broken layer backward. Then: what
``attach`` does not claim runs on autograd.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import pgrun.accelerate as acc_mod
from pgrun.accelerate import attach
from pgrun.algos import ALGORITHMS
from pgrun.algos.ppo import PPO
from pgrun.algos.vpg import VPG
from pgrun.distributions import LOG_STD_MAX, ActionBounds
from pgrun.flat import flat_parameters
from pgrun.policies import ActorCritic, CategoricalHead
from pgrun.rollout import Batch
from pgrun.train import train
from tests.conftest import compose_config

T, N = 6, 4  # a batch of 6 steps of 4 envs (two groups of 2 for GRPO)
FIRST_ORDER = sorted(name for name, cls in ALGORITHMS.items() if not cls.second_order)

# algorithm settings for a small, fast, but non-trivial update: several steps so the
# parameters the later steps see are the accelerated path's own, every loss term live
OVERRIDES = {"lr": 0.01, "vf_lr": 0.01, "anneal_lr": False, "num_epochs": 2,
             "num_minibatches": 2, "vf_iters": 3, "group_size": 2, "ent_coef": 0.01,
             "clip_vloss": True, "kl_coef": 0.1, "max_grad_norm": 0.5, "num_steps": T,
             "episodes_per_update": N}

BOX_ACT = gym.spaces.Box(np.array([-1.0, 0.5], np.float32), np.array([1.0, 2.0], np.float32))
HEADS = {
    "categorical": dict(act=gym.spaces.Discrete(3)),
    "gauss-clip": dict(act=BOX_ACT, bounds="clip"),
    "gauss-tanh": dict(act=BOX_ACT, bounds="tanh"),
    # log σ starts near the clamp's upper end (2): the perturbation pushes some past it
    "gauss-state-std": dict(act=BOX_ACT, bounds="clip", state_dependent_std=True,
                            log_std_init=1.9),
}
BOX_OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
DISCRETE_OBS = gym.spaces.Discrete(5, start=2)  # a start ≠ 0: indices are obs − start
BODIES = {
    **{f"mlp-{a}": dict(obs=BOX_OBS, kind="mlp", hidden_sizes=[8, 8], activation=a)
       for a in ("tanh", "relu", "elu", "gelu")},
    "mlp-tanh-shared": dict(obs=BOX_OBS, kind="mlp", hidden_sizes=[8, 8], shared=True),
    "mlp-relu-shared": dict(obs=BOX_OBS, kind="mlp", hidden_sizes=[8], activation="relu",
                            shared=True),
    "linear": dict(obs=BOX_OBS, kind="mlp", hidden_sizes=[]),
    "mlp-onehot": dict(obs=DISCRETE_OBS, kind="mlp", hidden_sizes=[8], activation="elu"),
    "tabular": dict(obs=DISCRETE_OBS, kind="tabular", hidden_sizes=[]),
}


def build(algo_cls, head: str, body: str, seed: int = 0) -> ActorCritic:
    """The policy for a case, its parameters perturbed away from the init (a zero table,
    a near-uniform head) so every layer carries gradient."""
    h, b = dict(HEADS[head]), dict(BODIES[body])
    act, obs = h.pop("act"), b.pop("obs")
    bounds = h.pop("bounds", None)
    torch.manual_seed(seed)
    policy = ActorCritic(obs, act, with_value=algo_cls.uses_value,
                         bounds=None if bounds is None else ActionBounds(act.low, act.high, bounds),
                         **h, **b)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def make_batch(policy: ActorCritic, with_value: bool, body: str, seed: int = 0) -> Batch:
    """T×N steps on random observations, actions sampled from ``policy``; the stored
    log-probs and values are the policy's plus noise (ratios ≠ 1 from the first step, so
    the clips bind); one termination, one truncation, each followed by an autoreset step."""
    rng = np.random.default_rng(seed)
    if BODIES[body]["obs"] is DISCRETE_OBS:
        obs = rng.integers(DISCRETE_OBS.start, DISCRETE_OBS.start + DISCRETE_OBS.n, (T, N))
    else:
        obs = rng.normal(size=(T, N, 3)).astype(np.float32)
    with torch.no_grad():
        dist, value = policy(torch.from_numpy(obs.reshape(T * N, *obs.shape[2:])))
        actions = dist.sample(rng)
        logp = dist.log_prob(actions).numpy() + rng.normal(0.0, 0.3, T * N)
    terminated, truncated = np.zeros((T, N), bool), np.zeros((T, N), bool)
    valid = np.ones((T, N), bool)
    terminated[2, 0], valid[3, 0] = True, False
    truncated[3, 1], valid[4, 1] = True, False
    values = last_value = None
    if with_value:
        values = (value.numpy() + rng.normal(0.0, 0.5, T * N)).reshape(T, N).astype(np.float32)
        last_value = rng.normal(size=N).astype(np.float32)
    return Batch(obs=obs, actions=actions.numpy().reshape(T, N, *actions.shape[1:]),
                 logp=logp.reshape(T, N).astype(np.float32), values=values,
                 rewards=rng.normal(1.0, 1.0, (T, N)).astype(np.float32),
                 terminated=terminated, truncated=truncated, valid=valid,
                 last_value=last_value)


def algo_config(algo_cls):
    names = {f.name for f in dataclasses.fields(algo_cls.Config)}
    return algo_cls.Config(**{k: v for k, v in OVERRIDES.items() if k in names})


def run_update(algo_cls, policy, batch, accelerate: bool):
    """(stats, final flat parameters, update path) of one update of a copy of ``policy``."""
    policy = copy.deepcopy(policy)
    path = attach(policy, accelerate)
    algo = algo_cls(algo_config(algo_cls), policy, N)
    torch.manual_seed(123)
    stats = algo.update(batch, progress=0.25)
    return stats, flat_parameters(policy).data.clone(), path


def assert_same(a, b):
    (stats_a, theta_a, _), (stats_b, theta_b, _) = a, b
    assert set(stats_a) == set(stats_b)
    for key in stats_a:
        x, y = float(stats_a[key]), float(stats_b[key])
        assert (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-4, abs=1e-5), key
    torch.testing.assert_close(theta_a, theta_b, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("algo", FIRST_ORDER)
def test_accelerated_update_equals_autograd(algo, head, body):
    algo_cls = ALGORITHMS[algo]
    policy = build(algo_cls, head, body)
    batch = make_batch(policy, algo_cls.uses_value, body)
    fast = run_update(algo_cls, policy, batch, accelerate=True)
    plain = run_update(algo_cls, policy, batch, accelerate=False)
    assert fast[2] == "numpy-layers" and plain[2] == "autograd"  # both paths really ran
    unknown = set(fast[0]) - set(algo_cls.stat_keys())
    assert not unknown, f"{algo} reports stats no metrics.csv column takes: {unknown}"
    theta0 = flat_parameters(copy.deepcopy(policy)).data
    assert float((plain[1] - theta0).abs().max()) > 1e-3  # the update moved the weights
    assert_same(fast, plain)


@pytest.mark.parametrize("body", ["mlp-gelu", "mlp-tanh-shared", "mlp-onehot", "tabular"])
def test_accelerated_forward_equals_torch(body):
    """The accelerated outputs (with and without gradients) are the torch layers'."""
    policy = build(PPO, "gauss-state-std", body)
    batch = make_batch(policy, True, body)
    obs = torch.from_numpy(batch.obs.reshape(T * N, *batch.obs.shape[2:]))
    z_ref, v_ref = policy.outputs(obs)
    fast = copy.deepcopy(policy)
    assert attach(fast) == "numpy-layers"
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            z, v = fast.outputs(obs)
            torch.testing.assert_close(z, z_ref.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(v, v_ref.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(fast.value(obs), v_ref.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act_dim, n", [(1, 1), (3, 1), (6, 8), (17, 1), (17, 5)])
def test_accelerated_acting_is_the_distributions_bit_for_bit(act_dim, n):
    """``Accelerator.act`` (NumPy acting for a Gaussian with a free log σ) returns the same
    actions, log-probs and values, bit for bit, as ``DiagGaussian.sample``/``.log_prob``
    on the same layers' outputs, for the same generator state; other heads fall back."""
    from pgrun.rollout import Actor

    act = gym.spaces.Box(-np.ones(act_dim, np.float32), np.ones(act_dim, np.float32))
    bounds = ActionBounds(act.low, act.high, "clip")
    torch.manual_seed(act_dim)
    policy = ActorCritic(BOX_OBS, act, hidden_sizes=[16, 16], bounds=bounds)
    with torch.no_grad():
        policy.head.log_std.normal_(0.0, 1.5)
        policy.head.out.weight.normal_()
    assert attach(policy) == "numpy-layers" and policy.accelerator.log_std is not None
    actor, obs_rng = Actor(policy, BOX_OBS, act, bounds), np.random.default_rng(0)
    for k in range(50):
        obs = obs_rng.normal(0.0, 3.0, (n, 3)).astype(np.float32)
        fast = actor.act(obs, np.random.default_rng(k))
        log_std, policy.accelerator.log_std = policy.accelerator.log_std, None  # the torch path
        plain = actor.act(obs, np.random.default_rng(k))
        policy.accelerator.log_std = log_std
        for a, b in zip(fast, plain, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        if k % 10 == 9:  # an update moves log σ in place: acting follows it (σ is cached)
            with torch.no_grad():
                policy.head.log_std.add_(0.1)
    for head in ("gauss-tanh", "gauss-state-std", "categorical"):
        other = build(PPO, head, "mlp-tanh")
        attach(other)
        assert other.accelerator.act(np.zeros((2, 3), np.float32), np.random.default_rng()) is None


def test_state_dependent_std_case_has_the_clamp_binding_on_some_samples():
    """In the ``gauss-state-std`` head the clamp of log σ to LOG_STD_MAX binds on some
    samples and not on others, so both sides of it are compared above."""
    for body in ("mlp-tanh", "tabular"):
        policy = build(PPO, "gauss-state-std", body)
        batch = make_batch(policy, True, body)
        with torch.no_grad():
            z, _ = policy.outputs(torch.from_numpy(batch.obs.reshape(T * N, *batch.obs.shape[2:])))
        raw_log_std = z[:, 2:]
        assert 0 < int((raw_log_std > LOG_STD_MAX).sum()) < raw_log_std.numel(), body


def test_accelerator_sees_optimizer_steps_without_copying():
    """The layers read the parameters' storage: after an optimizer step (or a load), the
    next accelerated forward is the torch forward of the new weights."""
    policy = build(PPO, "categorical", "mlp-tanh")
    assert attach(policy) == "numpy-layers"
    obs = torch.randn(7, 3)
    before = policy.outputs(obs)[0].detach().clone()
    algo = PPO(algo_config(PPO), policy, N)
    algo.update(make_batch(policy, True, "mlp-tanh"), progress=0.0)
    after = policy.outputs(obs)[0].detach()
    assert not torch.allclose(before, after)
    policy.accelerator = None
    torch.testing.assert_close(after, policy.outputs(obs)[0].detach(), rtol=1e-5, atol=1e-6)


# ------------------------------------------- transparency to algorithms' torch idioms

def test_autograd_grad_with_respect_to_the_module_parameters():
    """An algorithm may take ∂L/∂θ with ``torch.autograd.grad(loss, policy.parameters())``
    (per-loss gradient norms, penalties); with the accelerator on, as without it."""
    policy = build(PPO, "categorical", "mlp-tanh")
    obs = torch.randn(8, 3)

    def grads(p):
        dist, value = p(obs)
        loss = dist.entropy().mean() + value.pow(2).mean()
        return torch.autograd.grad(loss, list(p.parameters()))

    want = grads(copy.deepcopy(policy))
    fast = copy.deepcopy(policy)
    assert attach(fast) == "numpy-layers"
    for g, w in zip(grads(fast), want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_backward_twice_through_a_retained_graph():
    """``loss.backward(retain_graph=True)`` then another backward (two losses sharing one
    forward) accumulates the gradient twice, with the accelerator as without it."""
    policy = build(PPO, "categorical", "mlp-tanh")
    obs = torch.randn(8, 3)

    def twice(p):
        flat = flat_parameters(p)
        flat.grad.zero_()
        dist, value = p(obs)
        loss = dist.entropy().mean() + value.pow(2).mean()
        loss.backward(retain_graph=True)
        loss.backward()
        return flat.grad.clone()

    want = twice(copy.deepcopy(policy))
    fast = copy.deepcopy(policy)
    assert attach(fast) == "numpy-layers"
    torch.testing.assert_close(twice(fast), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- negative controls

def _broken_tanh_backward(self, dy, cache, need_dx):
    """A tanh layer that forgets its derivative (1 − y²)."""
    if self.kind is nn.Tanh:
        return dy, []
    return _REAL_ACTIVATION_BACKWARD(self, dy, cache, need_dx)


def _broken_dense_backward(self, dy, x, need_dx):
    """A dense layer whose bias gradient has the wrong sign."""
    dx, (dw, db) = _REAL_DENSE_BACKWARD(self, dy, x, need_dx)
    return dx, [dw, -db]


_REAL_ACTIVATION_BACKWARD = acc_mod.Activation.backward
_REAL_DENSE_BACKWARD = acc_mod.Dense.backward


@pytest.mark.parametrize(("layer", "broken", "algo", "head"), [
    ("Activation", _broken_tanh_backward, "ppo", "categorical"),
    ("Dense", _broken_dense_backward, "vpg", "gauss-tanh"),
    ("Dense", _broken_dense_backward, "reinforce", "gauss-state-std"),
], ids=["no-tanh-derivative", "bias-sign-vpg", "bias-sign-reinforce"])
def test_the_comparison_rejects_a_broken_layer_backward(monkeypatch, layer, broken, algo, head):
    algo_cls = ALGORITHMS[algo]
    policy = build(algo_cls, head, "mlp-tanh")
    batch = make_batch(policy, algo_cls.uses_value, "mlp-tanh")
    plain = run_update(algo_cls, policy, batch, accelerate=False)
    monkeypatch.setattr(getattr(acc_mod, layer), "backward", broken)
    fast = run_update(algo_cls, policy, batch, accelerate=True)
    with pytest.raises(AssertionError):
        assert_same(fast, plain)


# --------------------------------------------------------------- what it does not claim

class UserNet(nn.Module):
    """A user's module: an MLP of its own with pgrun's Categorical head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh())
        self.head = CategoricalHead(nn.Linear(8, 2))
        self.v = nn.Linear(8, 1)

    def forward(self, obs):
        h = self.body(obs)
        return self.head(h), self.v(h).squeeze(-1)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_attach_falls_back_to_autograd_where_it_is_not_exact():
    image = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    cnn = ActorCritic(image, gym.spaces.Discrete(2), kind="cnn")
    assert attach(cnn) == "autograd" and cnn.accelerator is None
    assert attach(UserNet()) == "autograd"
    mlp = ActorCritic(BOX_OBS, gym.spaces.Discrete(2), hidden_sizes=[8])
    assert attach(mlp, enabled=False) == "autograd" and mlp.accelerator is None
    assert attach(mlp.double()) == "autograd"  # float64 parameters: not its layers' dtype
    odd = ActorCritic(BOX_OBS, gym.spaces.Discrete(2), hidden_sizes=[8])
    odd.pi_body[0][1] = Swish()  # a layer it has no backward for
    assert attach(odd) == "autograd"
    assert attach(ActorCritic(BOX_OBS, gym.spaces.Discrete(2), hidden_sizes=[8])) == "numpy-layers"


def _small_run(tmp_path, *overrides):
    cfg = compose_config("algo=vpg", "algo.num_steps=32", "algo.vf_iters=2", "env.num_envs=2",
                         "total_steps=64", "eval.interval=0", "progress=none",
                         "checkpoint.enabled=false", *overrides)
    return train(cfg, tmp_path)


def test_summary_records_the_path_and_second_order_algorithms_run_on_autograd(tmp_path,
                                                                             monkeypatch):
    assert _small_run(tmp_path / "a")["update_path"] == "numpy-layers"
    assert _small_run(tmp_path / "b", "accelerate=false")["update_path"] == "autograd"

    class SecondOrderVPG(VPG):
        second_order = True

    import pgrun.train

    monkeypatch.setitem(pgrun.train.ALGORITHMS, "vpg", SecondOrderVPG)
    assert _small_run(tmp_path / "c")["update_path"] == "autograd"
