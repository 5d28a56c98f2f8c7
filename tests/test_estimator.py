"""REINFORCE's score-function estimator against the exact policy gradient.

Two problems small enough that J(θ) is computable exactly (so autograd gives the exact
∇J) and large enough that a Monte-Carlo estimate has a well-defined standard error:

* a 3-arm Bernoulli bandit with a softmax policy (one-step episodes, ``reinforce_loss``
  on samples drawn with ``Agent.act``, carried to the parameters by ``NumpyAgent``);
* a 3-step MDP with stochastic start and transitions, sampled through pgrun's own path
  (``SyncVectorEnv`` → ``Collector.collect_episodes`` via ``Reinforce.collect``) and
  turned into a gradient by ``Reinforce.update`` itself (its optimizer step is replaced
  by one that records the gradient).

The exact ∇J is torch autograd through the reference ``Agent.evaluate``; the estimates
go through the update's own path (``NumpyAgent.evaluate`` → ``reinforce_loss`` →
``NumpyAgent.backward`` → the Agent's gradient buffer).

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
from pgrun.algos.base import valid_arrays
from pgrun.algos.reinforce import Reinforce, reinforce_loss
from pgrun.numpy_agent import NumpyAgent
from pgrun.policies import Agent
from pgrun.returns import episode_total_return, reward_to_go
from pgrun.rollout import Collector

Z_TOL = 4.0  # standard errors allowed between estimate and exact gradient
Z_REJECT = 10.0  # a wrong estimator must be at least this far off in some component


def max_z(estimate: np.ndarray, target: np.ndarray, se: np.ndarray) -> float:
    """Largest |estimate − target| in units of the standard error, over components."""
    return float(np.max(np.abs(estimate - target) / se))


def autograd_flat(output: torch.Tensor, params) -> np.ndarray:
    """∂output/∂params by torch autograd, concatenated (float64); ``.grad`` untouched."""
    grads = torch.autograd.grad(output, params)
    return torch.cat([g.reshape(-1) for g in grads]).double().numpy()


def policy_grad(agent: Agent) -> np.ndarray:
    """The policy's slice of the Agent's gradient buffer (what its optimizer steps on)."""
    return agent.flat_parameter("policy").grad.double().numpy().copy()


def numpy_agent_grad(agent: Agent, obs: np.ndarray, actions: np.ndarray, psi: np.ndarray,
                     n_episodes: int, ent_coef: float = 0.0) -> tuple[float, np.ndarray]:
    """(policy loss, ∂L/∂θ) of reinforce_loss (+ the entropy bonus −c_H/M Σ H) through the
    update's path: NumpyAgent.evaluate → reinforce_loss → NumpyAgent.backward."""
    net = NumpyAgent(agent)
    logp, _, _ = net.evaluate(obs, actions)
    loss, dlogp = reinforce_loss(logp, psi, n_episodes)
    net.backward(dlogp, -ent_coef / n_episodes)
    return loss, policy_grad(agent)


# ------------------------------------------------------------------------ 3-arm bandit

PAYOUT = torch.tensor([0.2, 0.8, 0.5])  # Bernoulli payout probability of each arm


def bandit_agent() -> Agent:
    agent = Agent(obs_dim=1, n_actions=3, hidden_sizes=[], with_value=False, ortho_init=False)
    with torch.no_grad():
        agent.pi_head.weight.copy_(torch.tensor([[0.3], [-0.2], [0.5]]))
        agent.pi_head.bias.copy_(torch.tensor([0.2, -0.4, 0.1]))
    return agent


def bandit_exact_grad(agent: Agent) -> tuple[np.ndarray, torch.Tensor]:
    """∇J for J = Σ_a π(a) p(a), by autograd on the exact J; also π."""
    logp, _, _ = agent.evaluate(torch.ones(3, 1), torch.arange(3))
    pi = logp.exp()
    return autograd_flat((pi * PAYOUT).sum(), agent.policy_parameters()), pi.detach()


def test_bandit_exact_gradient_matches_closed_form():
    agent = bandit_agent()
    grad, pi = bandit_exact_grad(agent)
    closed = (pi * (PAYOUT - (pi * PAYOUT).sum())).double().numpy()  # π_k (r_k − π·r)
    # logits = w·1 + b: the weight and the bias gradients are both ∂J/∂logits
    np.testing.assert_allclose(grad, np.concatenate([closed, closed]), atol=1e-7)
    assert np.all(np.abs(closed) > 0.02)  # a non-trivial gradient in every component


def test_bandit_reinforce_loss_matches_exact_gradient():
    torch.manual_seed(1234)
    agent = bandit_agent()
    exact, pi = bandit_exact_grad(agent)
    M = 20_000
    obs = torch.ones(M, 1)
    actions, act_logp, _ = agent.act(obs)
    rewards = (torch.rand(M) < PAYOUT[actions]).float()

    obs_np, actions_np, rewards_np = obs.numpy(), actions.numpy(), rewards.numpy()
    logp, _, _ = NumpyAgent(agent).evaluate(obs_np, actions_np)
    np.testing.assert_allclose(logp, act_logp.numpy(), atol=1e-6)  # act's log-prob is evaluate's
    loss, dlogp = reinforce_loss(logp, rewards_np, n_episodes=M)
    # the returned derivative is that of the reference formula −(1/M) Σ log π Ψ
    t_logp = torch.from_numpy(logp.astype(np.float64)).requires_grad_()
    t_loss = -(t_logp * rewards.double()).sum() / M
    assert loss == pytest.approx(float(t_loss.detach()), rel=1e-6)
    t_loss.backward()
    np.testing.assert_allclose(dlogp, t_logp.grad.numpy(), rtol=1e-6)
    _, grad = numpy_agent_grad(agent, obs_np, actions_np, rewards_np, M)
    estimate = -grad  # the loss is −Ĵ

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


def test_bandit_entropy_bonus_gradient_is_exact():
    """The entropy bonus −c_H (1/M) Σ H (∂L/∂H = −c_H/M, passed to NumpyAgent.backward),
    H computed exactly per state, so its gradient is exactly −c_H ∇H(π) with no sampling
    noise."""
    torch.manual_seed(0)
    agent = bandit_agent()
    M, c = 50, 0.3
    obs = torch.ones(M, 1)
    actions, _, _ = agent.act(obs)
    psi = torch.randn(M).numpy()

    def grad_of(ent_coef: float) -> np.ndarray:
        return numpy_agent_grad(agent, obs.numpy(), actions.numpy(), psi, M, ent_coef)[1]

    diff = grad_of(c) - grad_of(0.0)
    logp_all, _, _ = agent.evaluate(torch.ones(3, 1), torch.arange(3))
    grad_h = autograd_flat(-(logp_all.exp() * logp_all).sum(), agent.policy_parameters())  # ∇H(π)
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


def mdp_agent() -> Agent:
    """A tabular softmax policy (linear on the one-hot observation, plus a shared bias)."""
    gen = torch.Generator().manual_seed(7)
    agent = Agent(obs_dim=2 * H, n_actions=2, hidden_sizes=[], with_value=False,
                  ortho_init=False)
    with torch.no_grad():
        agent.pi_head.weight.copy_(0.8 * torch.randn(2, 2 * H, generator=gen))
        agent.pi_head.bias.copy_(torch.tensor([0.3, -0.3]))
    return agent


def mdp_exact_J(agent: Agent) -> torch.Tensor:
    """J(θ) = E[Σ_t r_t] (γ = 1) by backward induction over all states and actions,
    differentiable in the agent's parameters."""
    reward, p_next = torch.tensor(REWARD), torch.tensor(P_NEXT1)
    value = torch.zeros(2, dtype=torch.float64)  # V_H
    eye = torch.eye(2 * H)
    for t in reversed(range(H)):
        obs = eye[[2 * t, 2 * t, 2 * t + 1, 2 * t + 1]]  # (s, a) = 00, 01, 10, 11
        logp, _, _ = agent.evaluate(obs, torch.tensor([0, 1, 0, 1]))
        pi = logp.exp().double().reshape(2, 2)
        q = reward[t] + (1.0 - p_next) * value[0] + p_next * value[1]
        value = (pi * q).sum(-1)
    return (1.0 - P_START1) * value[0] + P_START1 * value[1]


def test_mdp_exact_J_matches_trajectory_enumeration():
    """The backward induction agrees with a brute-force sum over all 2^6 trajectories."""
    agent = mdp_agent()
    with torch.no_grad():
        logp_all = torch.stack([agent.evaluate(torch.eye(2 * H), torch.full((2 * H,), a))[0]
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
        assert float(mdp_exact_J(agent)) == pytest.approx(total, rel=1e-6)


def reinforce_cfg(reward_to_go: bool, episodes: int, ent_coef: float = 0.0):
    return SimpleNamespace(lr=1e-2, gamma=1.0, reward_to_go=reward_to_go,
                           normalize_returns=False, episodes_per_update=episodes,
                           ent_coef=ent_coef, max_grad_norm=None, anneal_lr=False)


def update_gradient(algo: Reinforce, batch, monkeypatch) -> np.ndarray:
    """The gradient ``Reinforce.update`` hands its optimizer, the step itself skipped."""
    captured = {}

    def record_step(optimizer, max_grad_norm):
        assert optimizer is algo.opt and max_grad_norm is None
        captured["grad"] = optimizer.grad.astype(np.float64)
        return float("nan")

    monkeypatch.setattr(reinforce_mod, "step", record_step)
    # the optimizer works on the policy's slice of the Agent's flat buffers
    policy = algo.agent.flat_parameter("policy")
    assert np.shares_memory(algo.opt.param, policy.detach().numpy())
    assert np.shares_memory(algo.opt.grad, policy.grad.numpy())
    assert algo.opt.param.size == sum(p.numel() for p in algo.agent.policy_parameters())
    algo.agent.flat_grad.fill_(np.nan)  # whatever was there must be overwritten
    before = algo.agent.flat_data.clone()
    algo.update(batch, progress=0.0)
    assert torch.equal(before, algo.agent.flat_data)
    np.testing.assert_array_equal(captured["grad"], policy_grad(algo.agent))
    return captured["grad"]


def per_episode_gradients(agent: Agent, batch, psi: np.ndarray) -> np.ndarray:
    """Σ_t ∇ log π(a_t|s_t) Ψ_t for every episode of the batch (rows), in closed form for
    the linear softmax policy: ∇_W = (e_a − π) ⊗ o, ∇_b = e_a − π."""
    # env-major order makes every episode a contiguous run of valid steps
    mask = batch.valid.T
    obs = torch.from_numpy(batch.obs.transpose(1, 0, 2)[mask]).double()
    actions = torch.from_numpy(batch.actions.T[mask])
    weights = torch.from_numpy(psi.T[mask]).double()
    episode = np.cumsum(batch.episode_starts().T[mask]) - 1
    with torch.no_grad():
        logp, _, _ = agent.evaluate(obs.float(), actions)  # only to get π via the agent
        logits = agent.pi_head(obs.float()).double()
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
    torch.manual_seed(2024)
    agent = mdp_agent()
    num_envs, episodes = 16, 20_000
    envs = gym.vector.SyncVectorEnv([ThreeStepMDP for _ in range(num_envs)])
    collector = Collector(envs, agent, seed=99)
    batch = Reinforce(reinforce_cfg(True, episodes), agent, num_envs).collect(collector)
    envs.close()

    exact = autograd_flat(mdp_exact_J(agent), agent.policy_parameters())
    return SimpleNamespace(agent=agent, batch=batch, exact=exact, num_envs=num_envs,
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


@pytest.mark.parametrize("reward_to_go_weights", [True, False], ids=["reward_to_go", "total"])
def test_mdp_reinforce_update_gradient_matches_exact(mdp_batch, reward_to_go_weights,
                                                     monkeypatch):
    agent, batch, exact = mdp_batch.agent, mdp_batch.batch, mdp_batch.exact
    algo = Reinforce(reinforce_cfg(reward_to_go_weights, mdp_batch.episodes), agent,
                     mdp_batch.num_envs)
    estimate = -update_gradient(algo, batch, monkeypatch)

    psi = algo.psi(batch)
    rtg = reward_to_go(batch.rewards, batch.dones, 1.0)
    expected_psi = rtg if reward_to_go_weights else episode_total_return(
        rtg, batch.episode_starts())
    np.testing.assert_array_equal(psi[batch.valid], expected_psi[batch.valid])

    # the same gradient by torch autograd of the reference loss −(1/M) Σ log π Ψ on the
    # valid steps, written out here (in float64: a float32 sum over 60 000 steps in torch
    # is itself off by ~1e-5 relative)
    data = valid_arrays(batch, obs=batch.obs, actions=batch.actions, psi=psi)
    ref = copy.deepcopy(agent).double()
    logp, _, _ = ref.evaluate(torch.from_numpy(data["obs"]).double(),
                              torch.from_numpy(data["actions"]))
    ref_loss = -(logp * torch.from_numpy(data["psi"]).double()).sum() / mdp_batch.episodes
    np.testing.assert_allclose(-autograd_flat(ref_loss, ref.policy_parameters()), estimate,
                               rtol=1e-5, atol=1e-6)

    per_ep = per_episode_gradients(agent, batch, psi)
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
    agent, batch = mdp_batch.agent, mdp_batch.batch
    M, c = mdp_batch.episodes, 0.05

    def grad_with(ent_coef: float) -> np.ndarray:
        algo = Reinforce(reinforce_cfg(True, M, ent_coef), agent, mdp_batch.num_envs)
        return update_gradient(algo, batch, monkeypatch)

    diff = grad_with(c) - grad_with(0.0)
    data = valid_arrays(batch, obs=batch.obs, actions=batch.actions)
    ref = copy.deepcopy(agent).double()
    _, entropy, _ = ref.evaluate(torch.from_numpy(data["obs"]).double(),
                                 torch.from_numpy(data["actions"]))
    want = autograd_flat(-c * entropy.sum() / M, ref.policy_parameters())
    np.testing.assert_allclose(diff, want, rtol=1e-4, atol=1e-6)
    assert np.max(np.abs(want - want * M / len(entropy))) > 100 * 1e-6  # mean over steps
    assert np.max(np.abs(2 * want)) > 100 * 1e-6  # the opposite sign


def test_mdp_reward_to_go_has_lower_variance(mdp_batch):
    """Both weightings are unbiased; dropping the rewards before t (which are independent
    of a_t) removes noise: smaller total variance of the per-episode gradient."""
    agent, batch = mdp_batch.agent, mdp_batch.batch
    rtg = reward_to_go(batch.rewards, batch.dones, 1.0)
    total = episode_total_return(rtg, batch.episode_starts())
    assert not np.allclose(rtg[batch.valid], total[batch.valid])
    var_rtg = per_episode_gradients(agent, batch, rtg).var(0, ddof=1).sum()
    var_total = per_episode_gradients(agent, batch, total).var(0, ddof=1).sum()
    assert var_rtg < 0.8 * var_total
