"""REINFORCE's score-function estimator against the exact policy gradient.

Two problems small enough that J(θ) is computable exactly (so autograd gives the exact
∇J) and large enough that a Monte-Carlo estimate has a well-defined standard error:

* a 3-arm Bernoulli bandit with a softmax policy (one-step episodes sampled with the
  rollout's ``Actor``, put in a Batch of T = 1 and turned into a gradient by
  ``Reinforce.update``);
* a 3-step MDP with stochastic start and transitions, sampled through pgrun's own path
  (``SyncVectorEnv`` → ``Collector.collect_episodes`` via ``Reinforce.collect``) and
  turned into a gradient by ``Reinforce.update`` itself.

The estimates go through the update's own path (policy forward → ``reinforce_loss`` →
autograd → the flat gradient buffer its optimizer steps on; the optimizer's learning rate
is set to 0 for that step so the parameters stay where the exact ∇J was taken), with the
accelerator on and off. The exact ∇J is torch autograd of J computed exactly.

The tolerance is 4 standard errors per component, the SE computed from the per-episode
gradients (whose mean is checked to be the loss gradient, so the SE is the SE of the very
estimate being compared). Each test also checks that a wrong sign or a wrong scale would
be rejected by the same tolerance, so the comparison has teeth.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import pgrun.algos.reinforce as reinforce_mod
from pgrun.accelerate import attach
from pgrun.algos.reinforce import Reinforce, ReinforceConfig, reinforce_loss
from pgrun.flat import flat_parameters
from pgrun.policies import ActorCritic
from pgrun.returns import episode_total_return, reward_to_go
from pgrun.rollout import Actor, Batch, rng_for
from tests.helpers import box, evaluate, make_collector

Z_TOL = 4.0  # standard errors allowed between estimate and exact gradient
Z_REJECT = 10.0  # a wrong estimator must be at least this far off in some component


def max_z(estimate: np.ndarray, target: np.ndarray, se: np.ndarray) -> float:
    """Largest |estimate − target| in units of the standard error, over components."""
    return float(np.max(np.abs(estimate - target) / se))


def autograd_flat(output: torch.Tensor, params) -> np.ndarray:
    """∂output/∂params by torch autograd, concatenated (float64); ``.grad`` untouched."""
    grads = torch.autograd.grad(output, list(params))
    return torch.cat([g.reshape(-1) for g in grads]).double().numpy()


def linear_policy(obs_dim: int, n_actions: int) -> ActorCritic:
    """A linear softmax policy (logits = W o + b), no critic."""
    return ActorCritic(box(obs_dim), gym.spaces.Discrete(n_actions), hidden_sizes=[],
                       with_value=False, ortho_init=False)


def reinforce_cfg(reward_to_go: bool, episodes: int, ent_coef: float = 0.0):
    return ReinforceConfig(lr=1e-2, gamma=1.0, reward_to_go=reward_to_go,
                           normalize_returns=False, episodes_per_update=episodes,
                           ent_coef=ent_coef, max_grad_norm=None, anneal_lr=False)


_REAL_STEP = reinforce_mod.step


def update_gradient(algo: Reinforce, batch, monkeypatch) -> np.ndarray:
    """The gradient ``Reinforce.update`` computes and hands its optimizer (the step itself
    taken with learning rate 0, so the parameters do not move)."""
    calls = []

    def zero_lr_step(optimizer, loss, max_grad_norm, active=None):
        assert optimizer is algo.opt and max_grad_norm is None and active is None
        calls.append(1)
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        return _REAL_STEP(optimizer, loss, max_grad_norm)

    monkeypatch.setattr(reinforce_mod, "step", zero_lr_step)
    # the optimizer works on the policy's slice of the flat buffers
    flat = flat_parameters(algo.policy)
    (param,) = algo.opt.param_groups[0]["params"]
    policy_slice = flat.parameter("policy")
    assert param is policy_slice and param.data_ptr() == flat.data.data_ptr()
    assert param.numel() == sum(p.numel() for p in algo.policy.policy_parameters())
    flat.grad.fill_(float("nan"))  # whatever was there must be overwritten
    before = flat.data.clone()
    algo.update(batch, progress=0.0)
    assert len(calls) == 1
    assert torch.equal(before, flat.data)
    return policy_slice.grad.double().numpy().copy()


# ------------------------------------------------------------------------ 3-arm bandit

PAYOUT = torch.tensor([0.2, 0.8, 0.5])  # Bernoulli payout probability of each arm


def bandit_policy() -> ActorCritic:
    policy = linear_policy(1, 3)
    with torch.no_grad():
        policy.head.out.weight.copy_(torch.tensor([[0.3], [-0.2], [0.5]]))
        policy.head.out.bias.copy_(torch.tensor([0.2, -0.4, 0.1]))
    return policy


def bandit_exact_grad(policy) -> tuple[np.ndarray, torch.Tensor]:
    """∇J for J = Σ_a π(a) p(a), by autograd on the exact J; also π."""
    logp, _, _ = evaluate(policy, torch.ones(3, 1), torch.arange(3))
    pi = logp.exp()
    return autograd_flat((pi * PAYOUT).sum(), policy.policy_parameters()), pi.detach()


def bandit_batch(policy, M: int, seed: int):
    """M one-step episodes: actions from the rollout's Actor, Bernoulli payouts."""
    actor = Actor(policy, box(1), gym.spaces.Discrete(3))
    obs = np.ones((M, 1), dtype=np.float32)
    actions, logp, _ = actor.act(obs, rng_for(seed, 0))
    rewards = (np.random.default_rng(seed).random(M) < PAYOUT.numpy()[actions]).astype(np.float32)
    done = np.ones((1, M), dtype=bool)
    return Batch(obs=obs[None], actions=actions[None], logp=logp[None], values=None,
                 rewards=rewards[None], terminated=done, truncated=~done, valid=done,
                 last_value=None)


def test_bandit_exact_gradient_matches_closed_form():
    policy = bandit_policy()
    grad, pi = bandit_exact_grad(policy)
    closed = (pi * (PAYOUT - (pi * PAYOUT).sum())).double().numpy()  # π_k (r_k − π·r)
    # logits = w·1 + b: the weight and the bias gradients are both ∂J/∂logits
    np.testing.assert_allclose(grad, np.concatenate([closed, closed]), atol=1e-7)
    assert np.all(np.abs(closed) > 0.02)  # a non-trivial gradient in every component


def test_reinforce_loss_by_hand():
    """L = −(1/M) Σ log π Ψ: its value, and ∂L/∂log π = −Ψ/M by autograd."""
    logp = torch.tensor([-0.5, -1.0, -2.0], dtype=torch.float64, requires_grad=True)
    psi = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    loss = reinforce_loss(logp, psi, n_episodes=2)
    assert float(loss.detach()) == pytest.approx(-(-1.0 + 1.0 - 1.0) / 2)
    (grad,) = torch.autograd.grad(loss, logp)
    np.testing.assert_allclose(grad.numpy(), [-1.0, 0.5, -0.25])


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
def test_bandit_reinforce_update_matches_exact_gradient(accelerate, monkeypatch):
    policy = bandit_policy()
    exact, pi = bandit_exact_grad(policy)
    M = 20_000
    batch = bandit_batch(policy, M, seed=1234)
    actions, rewards = torch.from_numpy(batch.actions[0]), torch.from_numpy(batch.rewards[0])
    with torch.no_grad():  # the rollout's log-prob is the update's
        logp, _, _ = evaluate(policy, torch.from_numpy(batch.obs[0]), actions)
    np.testing.assert_allclose(batch.logp[0], logp.numpy(), atol=1e-6)
    assert attach(policy, accelerate) == ("numpy-layers" if accelerate else "autograd")
    algo = Reinforce(reinforce_cfg(True, M), policy, M)
    estimate = -update_gradient(algo, batch, monkeypatch)  # the loss is −Ĵ

    # per-episode gradients (e_a − π) r of log π(a) r: their mean must be the estimate
    score = torch.nn.functional.one_hot(actions, 3).double() - pi.double()
    per_ep = (score * rewards.double()[:, None]).numpy()
    per_ep = np.concatenate([per_ep, per_ep], axis=1)  # weight and bias components
    np.testing.assert_allclose(per_ep.mean(0), estimate, rtol=1e-4, atol=1e-6)
    se = per_ep.std(0, ddof=1) / np.sqrt(M)

    assert max_z(estimate, exact, se) < Z_TOL
    # the same tolerance rejects a wrong sign and a wrong scale
    assert max_z(estimate, -exact, se) > Z_REJECT
    assert max_z(estimate, 2.0 * exact, se) > Z_REJECT
    assert max_z(estimate, 0.5 * exact, se) > Z_REJECT
    assert max_z(estimate, np.zeros_like(exact), se) > Z_REJECT


def test_bandit_entropy_bonus_gradient_is_exact(monkeypatch):
    """The update's entropy bonus −c_H (1/M) Σ H, H computed exactly per state, adds
    exactly −c_H ∇H(π) to the gradient, with no sampling noise."""
    policy = bandit_policy()
    M, c = 50, 0.3
    batch = bandit_batch(policy, M, seed=0)

    def grad_of(ent_coef: float) -> np.ndarray:
        algo = Reinforce(reinforce_cfg(True, M, ent_coef), copy.deepcopy(policy), M)
        return update_gradient(algo, batch, monkeypatch)

    diff = grad_of(c) - grad_of(0.0)
    logp_all, _, _ = evaluate(policy, torch.ones(3, 1), torch.arange(3))
    grad_h = autograd_flat(-(logp_all.exp() * logp_all).sum(), policy.policy_parameters())  # ∇H(π)
    assert np.max(np.abs(grad_h)) > 0.05
    np.testing.assert_allclose(diff, -c * grad_h, atol=1e-6)
    # the sign and the 1/M are visible at that tolerance
    assert np.max(np.abs(diff - c * grad_h)) > 100 * 1e-6
    assert np.max(np.abs(diff + c * M * grad_h)) > 100 * 1e-6


# ------------------------------------------------------------------------ 3-step MDP

H = 3  # steps per episode (always: terminated at t = H)
P_START1 = 0.4  # P(s_0 = 1)
P_NEXT1 = np.array([[0.2, 0.9], [0.3, 0.7]])  # P(s_{t+1} = 1 | s_t, a_t)
REWARD = np.array([  # r(t, s, a)
    [[1.0, 0.0], [0.5, 2.0]],
    [[0.0, 1.0], [2.0, 0.0]],
    [[1.0, 3.0], [0.0, 1.0]],
])


class ThreeStepMDP(gym.Env):
    """Two states per step, one-hot observation of (t, s) (all zeros once done)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2 * H,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t, self.s = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2 * H, dtype=np.float32)
        if self.t < H:
            obs[2 * self.t + self.s] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.s = int(self.np_random.random() < P_START1)
        return self._obs(), {}

    def step(self, action):
        assert self.t < H, "stepped after the end of the episode"
        reward = float(REWARD[self.t, self.s, int(action)])
        self.s = int(self.np_random.random() < P_NEXT1[self.s, int(action)])
        self.t += 1
        return self._obs(), reward, self.t == H, False, {}


def mdp_policy() -> ActorCritic:
    """A tabular softmax policy (linear on the one-hot observation, plus a shared bias)."""
    gen = torch.Generator().manual_seed(7)
    policy = linear_policy(2 * H, 2)
    with torch.no_grad():
        policy.head.out.weight.copy_(0.8 * torch.randn(2, 2 * H, generator=gen))
        policy.head.out.bias.copy_(torch.tensor([0.3, -0.3]))
    return policy


def mdp_exact_J(policy) -> torch.Tensor:
    """J(θ) = E[Σ_t r_t] (γ = 1) by backward induction over all states and actions,
    differentiable in the policy's parameters."""
    reward, p_next = torch.tensor(REWARD), torch.tensor(P_NEXT1)
    value = torch.zeros(2, dtype=torch.float64)  # V_H
    eye = torch.eye(2 * H)
    for t in reversed(range(H)):
        obs = eye[[2 * t, 2 * t, 2 * t + 1, 2 * t + 1]]  # (s, a) = 00, 01, 10, 11
        logp, _, _ = evaluate(policy, obs, torch.tensor([0, 1, 0, 1]))
        pi = logp.exp().double().reshape(2, 2)
        q = reward[t] + (1.0 - p_next) * value[0] + p_next * value[1]
        value = (pi * q).sum(-1)
    return (1.0 - P_START1) * value[0] + P_START1 * value[1]


def test_mdp_exact_J_matches_trajectory_enumeration():
    """The backward induction agrees with a brute-force sum over all 2^6 trajectories."""
    policy = mdp_policy()
    with torch.no_grad():
        logp_all = torch.stack([evaluate(policy, torch.eye(2 * H), torch.full((2 * H,), a))[0]
                                for a in (0, 1)], dim=-1)  # row 2t+s: log π(·|t, s)
    pi = logp_all.exp().double().numpy()
    total = 0.0
    for code in range(2 ** (2 * H)):
        bits = [(code >> i) & 1 for i in range(2 * H)]
        states, actions = bits[0::2], bits[1::2]
        prob = P_START1 if states[0] else 1.0 - P_START1
        ret = 0.0
        for t in range(H):
            s, a = states[t], actions[t]
            prob *= pi[2 * t + s, a]
            ret += REWARD[t, s, a]
            if t + 1 < H:
                p1 = P_NEXT1[s, a]
                prob *= p1 if states[t + 1] else 1.0 - p1
        total += prob * ret
    with torch.no_grad():
        assert float(mdp_exact_J(policy)) == pytest.approx(total, rel=1e-6)


def per_episode_gradients(policy, batch, psi: np.ndarray) -> np.ndarray:
    """Σ_t ∇ log π(a_t|s_t) Ψ_t for every episode of the batch (rows), in closed form for
    the linear softmax policy: ∇_W = (e_a − π) ⊗ o, ∇_b = e_a − π."""
    # env-major order makes every episode a contiguous run of valid steps
    mask = batch.valid.T
    obs = torch.from_numpy(batch.obs.transpose(1, 0, 2)[mask]).double()
    actions = torch.from_numpy(batch.actions.T[mask])
    weights = torch.from_numpy(psi.T[mask]).double()
    episode = np.cumsum(batch.episode_starts().T[mask]) - 1
    with torch.no_grad():
        logp, _, _ = evaluate(policy, obs.float(), actions)  # only to get π via the policy
        logits = policy.head.out(obs.float()).double()
    torch.testing.assert_close(logits.log_softmax(-1).gather(-1, actions[:, None])[:, 0],
                               logp.double(), rtol=1e-5, atol=1e-6)
    score = torch.nn.functional.one_hot(actions, 2).double() - logits.softmax(-1)
    per_step = torch.cat([(score[:, :, None] * obs[:, None, :]).reshape(len(obs), -1), score],
                         dim=1) * weights[:, None]
    out = np.zeros((episode[-1] + 1, per_step.shape[1]))
    np.add.at(out, episode, per_step.numpy())
    return out


@pytest.fixture(scope="module")
def mdp_batch():
    """20 000 episodes of the MDP through pgrun's rollout path, and the exact ∇J."""
    policy = mdp_policy()
    num_envs, episodes = 16, 20_000
    envs = gym.vector.SyncVectorEnv([ThreeStepMDP for _ in range(num_envs)])
    collector = make_collector(envs, policy, seed=99)
    batch = Reinforce(reinforce_cfg(True, episodes), policy, num_envs).collect(collector)
    envs.close()

    exact = autograd_flat(mdp_exact_J(policy), policy.policy_parameters())
    return SimpleNamespace(policy=policy, batch=batch, exact=exact, num_envs=num_envs,
                           episodes=episodes)


def test_mdp_batch_is_whole_episodes(mdp_batch):
    batch = mdp_batch.batch
    starts = batch.episode_starts()
    assert int(starts.sum()) == mdp_batch.episodes
    assert batch.num_steps == H * mdp_batch.episodes
    assert int(batch.terminated[batch.valid].sum()) == mdp_batch.episodes
    assert not batch.truncated.any()
    # the valid steps' observations say which step of the episode they are
    t_of_step = np.argmax(batch.obs[batch.valid], axis=-1) // 2
    np.testing.assert_array_equal(np.bincount(t_of_step), [mdp_batch.episodes] * H)


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
@pytest.mark.parametrize("reward_to_go_weights", [True, False], ids=["reward_to_go", "total"])
def test_mdp_reinforce_update_gradient_matches_exact(mdp_batch, reward_to_go_weights,
                                                     accelerate, monkeypatch):
    batch, exact = mdp_batch.batch, mdp_batch.exact
    policy = copy.deepcopy(mdp_batch.policy)
    attach(policy, accelerate)
    algo = Reinforce(reinforce_cfg(reward_to_go_weights, mdp_batch.episodes), policy,
                     mdp_batch.num_envs)
    estimate = -update_gradient(algo, batch, monkeypatch)

    psi = algo.psi(batch)
    rtg = reward_to_go(batch.rewards, batch.dones, 1.0)
    expected_psi = rtg if reward_to_go_weights else episode_total_return(
        rtg, batch.episode_starts())
    np.testing.assert_array_equal(psi[batch.valid], expected_psi[batch.valid])

    # the same gradient by torch autograd of the reference loss −(1/M) Σ log π Ψ on the
    # valid steps, written out here in float64 (the update's float32 sums over 60 000
    # steps are themselves off by up to ~5e-5 relative: far below the standard errors)
    mask = batch.valid
    ref = copy.deepcopy(mdp_batch.policy).double()
    logp, _, _ = evaluate(ref, torch.from_numpy(batch.obs[mask]).double(),
                          torch.from_numpy(batch.actions[mask]))
    ref_loss = -(logp * torch.from_numpy(psi[mask]).double()).sum() / mdp_batch.episodes
    np.testing.assert_allclose(-autograd_flat(ref_loss, ref.policy_parameters()), estimate,
                               rtol=2e-4, atol=2e-5)

    per_ep = per_episode_gradients(mdp_batch.policy, batch, psi)
    assert len(per_ep) == mdp_batch.episodes
    np.testing.assert_allclose(per_ep.mean(0), estimate, rtol=1e-4, atol=1e-5)
    se = per_ep.std(0, ddof=1) / np.sqrt(len(per_ep))

    assert max_z(estimate, exact, se) < Z_TOL
    assert max_z(estimate, -exact, se) > Z_REJECT
    assert max_z(estimate, 2.0 * exact, se) > Z_REJECT
    assert max_z(estimate, exact / H, se) > Z_REJECT  # averaging over steps, not episodes


def test_mdp_update_entropy_bonus_is_averaged_over_episodes(mdp_batch, monkeypatch):
    """With ent_coef = c the update's gradient gains exactly that of −(c/M) Σ_t H_t over
    the batch's valid steps (M episodes), checked by float64 autograd; the per-step mean
    −c · mean_t H_t or a flipped sign would be off by far more than the tolerance."""
    batch = mdp_batch.batch
    M, c = mdp_batch.episodes, 0.05

    def grad_with(ent_coef: float) -> np.ndarray:
        algo = Reinforce(reinforce_cfg(True, M, ent_coef), copy.deepcopy(mdp_batch.policy),
                         mdp_batch.num_envs)
        return update_gradient(algo, batch, monkeypatch)

    diff = grad_with(c) - grad_with(0.0)
    mask = batch.valid
    ref = copy.deepcopy(mdp_batch.policy).double()
    _, entropy, _ = evaluate(ref, torch.from_numpy(batch.obs[mask]).double(),
                             torch.from_numpy(batch.actions[mask]))
    want = autograd_flat(-c * entropy.sum() / M, ref.policy_parameters())
    # (a difference of two float32 gradients summed over 60 000 steps: ~1e-5 absolute)
    np.testing.assert_allclose(diff, want, rtol=1e-3, atol=2e-5)
    assert np.max(np.abs(want - want * M / len(entropy))) > 100 * 2e-5  # mean over steps
    assert np.max(np.abs(2 * want)) > 100 * 2e-5  # the opposite sign


def test_mdp_reward_to_go_has_lower_variance(mdp_batch):
    """Both weightings are unbiased; dropping the rewards before t (which are independent
    of a_t) removes noise: smaller total variance of the per-episode gradient."""
    policy, batch = mdp_batch.policy, mdp_batch.batch
    rtg = reward_to_go(batch.rewards, batch.dones, 1.0)
    total = episode_total_return(rtg, batch.episode_starts())
    assert not np.allclose(rtg[batch.valid], total[batch.valid])
    var_rtg = per_episode_gradients(policy, batch, rtg).var(0, ddof=1).sum()
    var_total = per_episode_gradients(policy, batch, total).var(0, ddof=1).sum()
    assert var_rtg < 0.8 * var_total
