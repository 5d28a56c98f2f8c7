"""pgrun.rollout.Collector on a tiny deterministic scripted env.

The scripted env observes ``[t, episode_id]`` (t = steps taken in the episode,
episode_id = how many resets came before this episode), pays ``1 + t`` for the step
taken at t, terminates after K steps and is truncated by ``TimeLimit`` after L steps.
Vectorized with ``SyncVectorEnv`` (next-step autoreset), its whole stream of rows is
known in advance, so batches are compared row by row with a script.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

from pgrun.returns import next_values
from tests.helpers import make_collector, make_policy

NO_LIMIT = 10_000


class ScriptedEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, K: int):
        self.K = K
        self.episode_id = -1
        self.t = 0

    def _obs(self):
        return np.array([self.t, self.episode_id], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode_id += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action)
        reward = 1.0 + self.t
        self.t += 1
        return self._obs(), reward, self.t >= self.K, False, {}


def make_envs(Ks, Ls=None):
    Ls = Ls or [NO_LIMIT] * len(Ks)
    fns = [lambda K=K, L=L: TimeLimit(ScriptedEnv(K), max_episode_steps=L)
           for K, L in zip(Ks, Ls, strict=True)]
    return gym.vector.SyncVectorEnv(fns)


def make_agent(seed=0):
    return make_policy(2, 2, [8], with_value=True, seed=seed)


def V(agent, obs) -> float:
    with torch.no_grad():
        return float(agent.value(torch.from_numpy(np.asarray([obs], dtype=np.float32)))[0])


def script(K: int, L: int, rows: int, episode_id: int = 0, t: int = 0, pending: bool = False):
    """The rows one sub-env produces under next-step autoreset, from state
    (t, episode_id, reset pending). Each row: obs, reward, terminated, truncated,
    is_reset_step."""
    out = []
    for _ in range(rows):
        if pending:  # reset step: observes the final obs, returns the reset obs
            out.append(((t, episode_id), 0.0, False, False, True))
            episode_id, t, pending = episode_id + 1, 0, False
            continue
        obs = (t, episode_id)
        reward = 1.0 + t
        t += 1
        term, trunc = t >= K, t >= L
        out.append((obs, reward, term, trunc, False))
        pending = term or trunc
    return out, (t, episode_id, pending)


def expected_columns(Ks, Ls, rows, states=None):
    n = len(Ks)
    states = states or [(0, 0, False)] * n
    obs = np.zeros((rows, n, 2), np.float32)
    rew = np.zeros((rows, n), np.float32)
    term = np.zeros((rows, n), bool)
    trunc = np.zeros((rows, n), bool)
    reset = np.zeros((rows, n), bool)
    new_states = []
    for i in range(n):
        t0, ep0, pend0 = states[i]
        col, st = script(Ks[i], Ls[i], rows, episode_id=ep0, t=t0, pending=pend0)
        new_states.append(st)
        for r, (o, rw, te, tr, rs) in enumerate(col):
            obs[r, i], rew[r, i], term[r, i], trunc[r, i], reset[r, i] = o, rw, te, tr, rs
    return dict(obs=obs, rewards=rew, terminated=term, truncated=trunc, reset=reset), new_states


def assert_batch_matches(batch, exp):
    np.testing.assert_array_equal(batch.obs, exp["obs"])
    np.testing.assert_array_equal(batch.rewards, exp["rewards"])
    np.testing.assert_array_equal(batch.terminated, exp["terminated"])
    np.testing.assert_array_equal(batch.truncated, exp["truncated"])


def episodes_of(batch, i):
    """(start, end) row pairs of the valid episodes of env i, scanned step by step."""
    eps, start = [], None
    for t in range(len(batch.valid)):
        if not batch.valid[t, i]:
            assert start is None, f"invalid row {t} inside an episode of env {i}"
            continue
        if start is None:
            start = t
        if batch.terminated[t, i] or batch.truncated[t, i]:
            eps.append((start, t))
            start = None
    if start is not None:
        eps.append((start, None))
    return eps


# --------------------------------------------------------------------------- (a) collect_steps
def test_collect_steps_valid_mask_obs_and_carry_over():
    # env 0 ends episodes on rows 2, 6 (terminates, K=3); env 1 is truncated (L=4) on
    # row 3, 8; env 2 terminates on row 1, 4, 7 — on the last row (7) of batch 1 too.
    Ks, Ls = [3, 100, 2], [NO_LIMIT, 4, NO_LIMIT]
    T = 8
    envs = make_envs(Ks, Ls)
    agent = make_agent()
    col = make_collector(envs, agent, seed=0, capacity=4)  # capacity < T: buffers grow

    b1 = col.collect_steps(T)
    exp1, states = expected_columns(Ks, Ls, T)
    assert_batch_matches(b1, exp1)
    # the step after each episode end is invalid, every other step valid
    np.testing.assert_array_equal(b1.valid, ~exp1["reset"])
    after_end = np.zeros_like(b1.valid)
    after_end[1:] = b1.dones[:-1]
    np.testing.assert_array_equal(b1.valid, ~after_end)
    assert b1.num_steps == int(b1.valid.sum()) == T * 3 - 2 - 1 - 2
    assert b1.terminated[T - 1, 2]  # env 2 ends on the last row
    # valid obs are real episode observations: t < episode length
    lengths = np.minimum(Ks, Ls)
    assert np.all(b1.obs[..., 0][b1.valid] < np.broadcast_to(lengths, (T, 3))[b1.valid])
    # invalid obs are the final observations (t == length) of the previous episode
    inv = ~b1.valid
    assert np.all(b1.obs[..., 0][inv] == np.broadcast_to(lengths, (T, 3))[inv])
    # actions / logp are real samples
    assert set(np.unique(b1.actions)) <= {0, 1}
    assert np.all(b1.logp <= 0) and np.all(np.isfinite(b1.logp))

    rets, lens = col.pop_episodes()
    # (returns, lengths) of the 2 + 1 + 3 episodes that ended in batch 1
    assert sorted(lens.tolist()) == sorted([3, 3, 4, 2, 2, 2])
    assert len(lens) == 6  # env 1's second episode (rows 5-8) is still running
    np.testing.assert_allclose(rets, lens * (lens + 1) / 2)

    b2 = col.collect_steps(T)
    exp2, _ = expected_columns(Ks, Ls, T, states)
    assert_batch_matches(b2, exp2)
    np.testing.assert_array_equal(b2.valid, ~exp2["reset"])
    # the episode that ended on the last row of batch 1 makes row 0 of batch 2 invalid
    assert not b2.valid[0, 2]
    assert b2.valid[0, 0] and b2.valid[0, 1]
    # env 1 continues its episode across the cut: row 0 of batch 2 is its t = 3
    assert b2.obs[0, 1, 0] == 3 and b2.truncated[0, 1]
    assert b2.num_steps == int(b2.valid.sum())
    rets, lens = col.pop_episodes()
    # env 1's episode spanning both batches is counted whole
    assert 4 in lens.tolist()
    np.testing.assert_allclose(rets, lens * (lens + 1) / 2)
    assert col.pop_episodes()[0].size == 0


def test_collect_steps_values_are_agent_values():
    envs = make_envs([3, 4], [NO_LIMIT, 2])
    agent = make_agent(1)
    col = make_collector(envs, agent, seed=0)
    b = col.collect_steps(6)
    with torch.no_grad():
        v = agent.value(torch.from_numpy(b.obs.reshape(-1, 2))).numpy().reshape(6, 2)
    np.testing.assert_allclose(b.values, v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.last_value, [V(agent, o) for o in col.obs], rtol=1e-6)


# --------------------------------------------------------------------------- (b) truncation bootstrap
@pytest.mark.parametrize("T", [7, 9])
def test_truncation_bootstraps_value_of_final_observation(T):
    # env 0: L=3, truncated on rows 2, 6, 10 (row 6 is the last row for T=7)
    # env 1: L=4, truncated on rows 3, 8      (row 8 is the last row for T=9)
    # env 2: terminates (K=2) on rows 1, 4, 7
    Ks, Ls = [100, 100, 2], [3, 4, NO_LIMIT]
    envs = make_envs(Ks, Ls)
    agent = make_agent(2)
    col = make_collector(envs, agent, seed=0)
    b = col.collect_steps(T)
    nv = next_values(b.values, b.last_value)
    checked_last_row = False
    n_trunc = 0
    for t, i in np.argwhere(b.truncated & b.valid):
        ep = int(b.obs[t, i, 1])
        final = [float(Ls[i]), float(ep)]  # the scripted final observation
        want = V(agent, final)
        assert nv[t, i] == pytest.approx(want, rel=1e-5, abs=1e-6)
        # discriminative: the reset obs of the next episode has another value
        assert abs(want - V(agent, [0.0, ep + 1.0])) > 1e-4
        n_trunc += 1
        if t == T - 1:
            np.testing.assert_allclose(b.last_value[i], want, rtol=1e-5, atol=1e-6)
            checked_last_row = True
    assert n_trunc >= 2
    assert checked_last_row


def test_terminated_step_next_value_is_final_obs_too():
    """Not used by gae (no bootstrap on termination), but the row after a terminal step
    still observes the final obs, not the next episode's reset obs."""
    envs = make_envs([2])
    agent = make_agent(3)
    col = make_collector(envs, agent, seed=0)
    b = col.collect_steps(5)
    nv = next_values(b.values, b.last_value)
    assert b.terminated[1, 0] and b.terminated[4, 0]
    assert nv[1, 0] == pytest.approx(V(agent, [2.0, 0.0]), rel=1e-5, abs=1e-6)
    assert b.last_value[0] == pytest.approx(V(agent, [2.0, 1.0]), rel=1e-5, abs=1e-6)


# --------------------------------------------------------------------------- (c, d) collect_episodes
def check_whole_episodes(batch, Ks, Ls, k):
    lengths = np.minimum(Ks, Ls)
    n = len(Ks)
    starts = batch.episode_starts()
    T = len(batch.valid)
    # the batch stops as soon as the slowest env delivered its k episodes
    assert T == int(max(k * lengths + (k - 1)))
    for i in range(n):
        eps = episodes_of(batch, i)
        assert len(eps) == k, f"env {i}"
        assert int(starts[:, i].sum()) == k
        assert int((batch.dones & batch.valid)[:, i].sum()) == k
        for s, e in eps:
            assert e is not None, "an incomplete episode"
            assert batch.obs[s, i, 0] == 0, "an episode not starting at a reset obs"
            assert e - s + 1 == lengths[i]
            assert batch.terminated[e, i] or batch.truncated[e, i]
            assert bool(batch.terminated[e, i]) == (Ks[i] <= Ls[i])
            np.testing.assert_array_equal(batch.obs[s:e + 1, i, 0], np.arange(lengths[i]))
            assert len(set(batch.obs[s:e + 1, i, 1].tolist())) == 1
        # after its k-th episode an env idles: every later step invalid
        last_end = eps[-1][1]
        assert not batch.valid[last_end + 1:, i].any()
        assert batch.valid[:, i].sum() == k * lengths[i]
    assert batch.num_steps == int(k * lengths.sum())


@pytest.mark.parametrize("k", [1, 2, 3])
def test_collect_episodes_whole_episodes_per_env(k):
    # different lengths: env 0 (2 steps) and env 1 (truncated at 3) idle while env 2 runs
    Ks, Ls = [2, 6, 5], [NO_LIMIT, 3, NO_LIMIT]
    envs = make_envs(Ks, Ls)
    agent = make_agent(4)
    col = make_collector(envs, agent, seed=0, capacity=4)
    b = col.collect_episodes(k)
    check_whole_episodes(b, Ks, Ls, k)
    # fresh start: the rows follow the script exactly (idle envs keep stepping)
    exp, _ = expected_columns(Ks, Ls, len(b.valid))
    assert_batch_matches(b, exp)
    assert b.valid[:, 0].sum() < b.valid[:, 2].sum()
    # idle steps exist for the short envs (not only reset steps)
    idle0 = ~b.valid[:, 0] & ~exp["reset"][:, 0]
    assert idle0.any()
    rets, lens = col.pop_episodes()
    want_lens = sorted([int(min(K, L)) for K, L in zip(Ks, Ls, strict=True)] * k)
    assert sorted(lens.tolist()) == want_lens
    assert len(lens) == k * len(Ks)
    np.testing.assert_allclose(np.sort(rets), [n * (n + 1) / 2 for n in want_lens])
    # values are there and the last value belongs to the current observation
    np.testing.assert_allclose(b.last_value, [V(agent, o) for o in col.obs], rtol=1e-5)


def test_collect_episodes_repeated_and_after_collect_steps():
    Ks, Ls = [2, 6, 4], [NO_LIMIT, 3, NO_LIMIT]
    envs = make_envs(Ks, Ls)
    agent = make_agent(5)
    col = make_collector(envs, agent, seed=0)
    # leave every env mid-episode or with a pending autoreset
    col.collect_steps(5)
    col.pop_episodes()
    for _ in range(2):
        b = col.collect_episodes(2)
        check_whole_episodes(b, Ks, Ls, 2)
        assert b.valid[0].all()  # fresh reset: no pending autoreset on row 0
        assert np.all(b.obs[0, :, 0] == 0)
        rets, lens = col.pop_episodes()
        assert sorted(lens.tolist()) == sorted([2, 2, 3, 3, 4, 4])
        np.testing.assert_allclose(np.sort(rets), [3, 3, 6, 6, 10, 10])


def test_collect_episodes_truncation_bootstrap():
    """The last env to finish is truncated on the batch's last row: last_value is V of
    its final observation; earlier truncations bootstrap from the reset row."""
    Ks, Ls = [100, 100], [2, 3]
    envs = make_envs(Ks, Ls)
    agent = make_agent(6)
    col = make_collector(envs, agent, seed=0)
    b = col.collect_episodes(2)
    assert len(b.valid) == 7 and b.truncated[6, 1]
    nv = next_values(b.values, b.last_value)
    for t, i in np.argwhere(b.truncated & b.valid):
        final = [float(Ls[i]), float(b.obs[t, i, 1])]
        assert nv[t, i] == pytest.approx(V(agent, final), rel=1e-5, abs=1e-6)
    assert b.last_value[1] == pytest.approx(V(agent, [3.0, 1.0]), rel=1e-5, abs=1e-6)



def test_collect_steps_after_collect_episodes_starts_fresh_episodes():
    # env 0 (K=2) finishes its episode on row 1 and idles, autoresetting into an episode
    # that no batch counted, while env 1 (K=4) finishes on row 3. A following
    # collect_steps must not continue that uncounted episode: it resets every env.
    envs = make_envs([2, 4])
    col = make_collector(envs, make_agent(7), seed=0)
    b = col.collect_episodes(1)
    assert len(b.valid) == 4
    col.pop_episodes()
    b2 = col.collect_steps(2)
    assert b2.valid.all()
    assert (b2.obs[0, :, 0] == 0).all()  # t = 0: fresh episodes
    assert b2.terminated[1, 0] and not b2.terminated[:, 1].any()
    _, lens = col.pop_episodes()
    assert lens.tolist() == [2]
