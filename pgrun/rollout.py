"""Rollout collection into preallocated T×N buffers.

gymnasium ≥ 1.0 vector envs autoreset on the *next* step: the step after an episode ends
ignores the action, resets that env and returns the first observation of the next
episode with reward 0. That step is not a transition of any episode, so it is stored
with ``valid = False`` and masked out of every loss and count. The observation returned
by the step that ended the episode is the episode's final observation, so its value is
the time-limit bootstrap (``returns.next_values``).

Two ways to cut a batch:

* ``collect_steps(T)``: T steps of every env, continuing where the last batch stopped
  (VPG, PPO: the cut is bootstrapped by the critic);
* ``collect_episodes(k)``: from a fresh reset, every env runs exactly k whole episodes;
  an env that is done idles (its steps are invalid) until the others finish
  (REINFORCE: Monte-Carlo returns need whole episodes, and waiting for a fixed count per
  env, rather than for the first episodes to finish, does not favour short episodes).

Observations are stored as ``pgrun/obs.py`` encodes them: float32 (T, N, *shape) for Box
spaces, uint8 for images, int64 state indices (T, N) for Discrete ones, and float32
(T, N, width) for a Dict/Tuple (its entries side by side); actions int64 (T, N) for
Discrete spaces, int64 (T, N, k) for MultiDiscrete/MultiBinary, and float32
(T, N, act_dim) for Box ones (the unbounded Gaussian samples that log π scores; the env
gets them mapped into its bounds, see ``distributions.py``).

With ``normalize.obs`` the Collector normalizes observations (``normalize.py``): every
observation the envs return updates the running statistics, and the policy, the value
function and the batch all see the normalized observations, so the update trains on what
the rollout acted on. With ``normalize.reward`` the batch's rewards are scaled for
learning; episode returns (``pop_episodes``, metrics.csv) stay raw.

Two more changes to the learning target only, Atari's usual ones (CleanRL's ppo_atari,
whose ``EpisodicLifeEnv`` and ``ClipRewardEnv`` wrappers do them inside the env):

* ``normalize.reward_sign``: the batch's rewards are sign(r) ∈ {−1, 0, +1} (before any
  ``normalize.reward`` scaling);
* ``env.life_loss_terminal``: a step where the env's ``info["lives"]`` drops (to a count
  above 0) while the game goes on is stored with ``terminated = True``, so returns and GAE do not bootstrap
  across a lost life; the env is not reset (the game continues from the next
  observation), and episodes (``pop_episodes``, metrics.csv's ``episodes``/``return_mean``)
  remain whole games, ended only by the env's own termination or truncation.

Evaluation (``evaluate.py``) never sees either: it plays whole games with raw scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrun.config import ConfigError
from pgrun.normalize import ObsNormalizer, RewardScaler
from pgrun.obs import ObsLayout
from pgrun.policies import policy_value


@dataclass
class Batch:
    """A T×N rollout, time-major. ``values``/``last_value`` are None without a critic."""

    obs: np.ndarray
    actions: np.ndarray
    logp: np.ndarray
    values: np.ndarray | None
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    last_value: np.ndarray | None

    @property
    def num_steps(self) -> int:
        """Real environment transitions in the batch."""
        return int(self.valid.sum())

    @property
    def dones(self) -> np.ndarray:
        return self.terminated | self.truncated

    def episode_starts(self) -> np.ndarray:
        """True at the first step of every episode in the batch (valid steps only)."""
        prev_open = np.zeros_like(self.valid)
        prev_open[1:] = self.valid[:-1] & ~self.dones[:-1]
        return self.valid & ~prev_open


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A generator independent of gymnasium's (which seeds ``default_rng(seed)``) and of
    pgrun's other streams: 0 = training actions, 1 = evaluation actions."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5067_7275, stream]))


class Actor:
    """Acting with a policy module: observations (NumPy) in, actions, log π(a|s) and V(s)
    (NumPy) out, without gradients; actions are sampled with noise from ``rng`` (see
    ``Distribution.sample``) or are the mode. ``to_env`` maps stored actions to what the
    env receives (Box actions into their bounds, ``distributions.ActionBounds``)."""

    def __init__(self, policy: nn.Module, obs_space: gym.Space, act_space: gym.Space,
                 bounds=None, device: torch.device | str = "cpu"):
        self.policy, self.device = policy, torch.device(device)
        self.layout = ObsLayout(obs_space)
        self.obs_dtype = self.layout.dtype
        box = isinstance(act_space, gym.spaces.Box)
        self.action_dtype = np.float32 if box else np.int64
        self.action_shape: tuple[int, ...] = tuple(act_space.shape or ())
        self.bounds = bounds

    def encode(self, obs) -> np.ndarray:
        """The vector env's observations as stored and fed (``pgrun/obs.py``)."""
        return self.layout.encode(obs)

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        obs = torch.from_numpy(obs)
        return obs if self.device.type == "cpu" else obs.to(self.device)

    @staticmethod
    def _array(x: torch.Tensor) -> np.ndarray:
        return x.numpy() if x.device.type == "cpu" else x.cpu().numpy()

    @torch.inference_mode()
    def act(self, obs: np.ndarray, rng: np.random.Generator):
        """(actions, log π(a|s), V(s) or None) for a batch of observations."""
        fast = getattr(self.policy, "accelerator", None)  # NumPy acting (accelerate.py)
        if fast is not None and (out := fast.act(obs, rng)) is not None:
            return out
        dist, value = self.policy(self._tensor(obs))
        actions = dist.sample(rng)
        logp = dist.log_prob(actions)
        return (self._array(actions), self._array(logp),
                None if value is None else self._array(value))

    @torch.inference_mode()
    def mode(self, obs: np.ndarray) -> np.ndarray:
        """The greedy actions (the distribution's mode)."""
        return self._array(self.policy(self._tensor(obs))[0].mode())

    @torch.inference_mode()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self._array(policy_value(self.policy, self._tensor(obs)))

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        return actions if self.bounds is None else self.bounds.to_env(actions)


class Collector:
    """Steps a vector env with an ``Actor`` and fills a Batch; tracks finished episodes.
    ``obs_normalizer`` / ``reward_scaler`` (``normalize.py``) are updated as it goes."""

    def __init__(self, envs, actor: Actor, seed: int, with_value: bool, capacity: int = 256,
                 obs_normalizer: ObsNormalizer | None = None,
                 reward_scaler: RewardScaler | None = None,
                 reward_sign: bool = False, life_loss_terminal: bool = False):
        self.envs = envs
        self.actor = actor
        self.rng = rng_for(seed, 0)
        self.n = envs.num_envs
        self.with_value = with_value
        self.obs_dtype = actor.obs_dtype
        self.obs_normalizer = obs_normalizer
        self.reward_scaler = reward_scaler
        self.reward_sign = reward_sign
        self.lives: np.ndarray | None = None  # each env's lives (env.life_loss_terminal)
        self.life_loss_terminal = life_loss_terminal
        self.autoreset = np.zeros(self.n, dtype=bool)
        self.ep_return = np.zeros(self.n, dtype=np.float64)
        self.ep_length = np.zeros(self.n, dtype=np.int64)
        self._reset(seed)
        self.done_returns: list[np.ndarray] = []
        self.done_lengths: list[np.ndarray] = []
        self._alloc(capacity)

    def _reset(self, seed: int | list[int] | None = None) -> None:
        """Start fresh episodes in every env (seeded on the first call only)."""
        obs, info = self.envs.reset(seed=seed)
        self._observe(obs)
        if self.life_loss_terminal:
            if "lives" not in info:
                raise ConfigError(
                    "env.life_loss_terminal=true treats a lost life as terminal for learning, "
                    "so it needs an env that reports its lives in info['lives'] (ALE's Atari "
                    f"envs do); this env's reset info has {sorted(info) or 'no keys'}. Set "
                    "env.life_loss_terminal=false, or add a wrapper that reports lives.")
            self.lives = self._lives(info, np.zeros(self.n, dtype=np.int64))
        if self.reward_scaler is not None:
            self.reward_scaler.reset()
        self.autoreset[:] = False
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        self.fresh = True  # self.obs comes straight from a reset
        self.stale = False  # envs idled past their episodes: the next batch must reset

    def _observe(self, obs) -> None:
        """Take the envs' observations (raw) and update the normalizer's statistics."""
        self.obs = self.actor.encode(obs)
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(self.obs)

    @staticmethod
    def _lives(info: dict, previous: np.ndarray) -> np.ndarray:
        """Each env's ``info["lives"]`` (a vector env's info; where an env did not report
        it this step, its previous count)."""
        lives = info.get("lives")
        if lives is None:
            return previous
        mask = info.get("_lives")
        lives = np.asarray(lives, dtype=np.int64)
        return lives if mask is None else np.where(mask, lives, previous)

    def policy_obs(self) -> np.ndarray:
        """The current observations as the policy sees them (normalized if configured)."""
        return self.obs if self.obs_normalizer is None else self.obs_normalizer.normalize(self.obs)

    def _alloc(self, capacity: int) -> None:
        n, obs_shape = self.n, self.obs.shape[1:]
        old = getattr(self, "_buf", None)
        buf = {
            "obs": np.zeros((capacity, n, *obs_shape), dtype=np.float32 if
                            self.obs_normalizer is not None else self.obs_dtype),
            "actions": np.zeros((capacity, n, *self.actor.action_shape),
                                dtype=self.actor.action_dtype),
            "logp": np.zeros((capacity, n), dtype=np.float32),
            "values": np.zeros((capacity, n), dtype=np.float32),
            "rewards": np.zeros((capacity, n), dtype=np.float32),
            "terminated": np.zeros((capacity, n), dtype=bool),
            "truncated": np.zeros((capacity, n), dtype=bool),
            "valid": np.zeros((capacity, n), dtype=bool),
        }
        if old is not None:
            used = len(old["obs"])
            for key, arr in buf.items():
                arr[:used] = old[key]
        raw = np.zeros((capacity, n))  # the envs' own rewards, for episode returns
        ended = np.zeros((capacity, n), dtype=bool)  # the envs' own episode ends (games)
        if old is not None:
            raw[:used] = self._raw_rewards
            ended[:used] = self._ended
        self._buf, self._raw_rewards, self._ended = buf, raw, ended
        self.capacity = capacity

    def _step(self, t: int, active: np.ndarray | None) -> np.ndarray:
        """One vector step into row t; returns which envs finished an episode."""
        obs = self.policy_obs()
        return self.advance(t, active, obs, *self.actor.act(obs, self.rng))

    def advance(self, t: int, active: np.ndarray | None, obs: np.ndarray, actions: np.ndarray,
                logp: np.ndarray, value: np.ndarray | None) -> np.ndarray:
        """Step the envs with the actions chosen for ``obs`` (``policy_obs()``), storing the
        step in row t; returns which envs finished an episode. (``batched.py`` chooses the
        actions of K seeds' collectors in one forward pass.)"""
        b = self._buf
        next_obs, reward, terminated, truncated, info = self.envs.step(self.actor.to_env(actions))

        done = terminated | truncated
        valid = ~self.autoreset if active is None else active & ~self.autoreset
        self._ended[t] = done
        if self.lives is not None:  # env.life_loss_terminal: a lost life ends the target
            lives = self._lives(info, self.lives)
            # as CleanRL's EpisodicLifeEnv: a drop to 0 lives waits for the game's own end
            terminated = terminated | (valid & ~done & (lives < self.lives) & (lives > 0))
            self.lives = lives
        b["obs"][t] = obs
        b["actions"][t] = actions
        b["logp"][t] = logp
        if value is not None:
            b["values"][t] = value
        self._raw_rewards[t] = reward
        if self.reward_sign:
            reward = np.sign(reward)
        b["rewards"][t] = reward if self.reward_scaler is None else \
            self.reward_scaler.scale(reward, valid, terminated | truncated)
        b["terminated"][t] = terminated
        b["truncated"][t] = truncated
        b["valid"][t] = valid
        self.autoreset = done
        self._observe(next_obs)
        self.fresh = False
        return done & valid

    def account(self, T: int) -> None:
        """Episode returns and lengths (raw rewards, whole games: the envs' own ends, not
        ``life_loss_terminal``'s) from the batch's first T rows, once
        per batch rather than per step: the episodes that ended go to ``pop_episodes`` in
        the order they ended; the unfinished ones carry over to the next batch.

        With C the per-env running sums of the valid rewards (and step counts), starting
        from the carried-in partial episode, an episode ending at step t after the env's
        previous end at t' has return C[t] − C[t'] (C[t] for its first end)."""
        b = self._buf
        valid = b["valid"][:T]
        sums = np.cumsum(np.where(valid, self._raw_rewards[:T], 0.0), axis=0)
        sums += self.ep_return
        steps = np.cumsum(valid, axis=0)
        steps += self.ep_length
        t_end, n_end = np.nonzero(self._ended[:T] & valid)
        ret_base, len_base = np.zeros(self.n), np.zeros(self.n, dtype=np.int64)
        if len(t_end):
            order = np.lexsort((t_end, n_end))  # by env, then time
            t_e, n_e = t_end[order], n_end[order]
            ret, length = sums[t_e, n_e], steps[t_e, n_e]
            after = np.zeros(len(t_e), dtype=bool)  # the env's earlier episode ended before
            after[1:] = n_e[1:] == n_e[:-1]
            rets, lens = np.empty_like(ret), np.empty_like(length)
            rets[order] = ret - np.where(after, np.roll(ret, 1), 0.0)
            lens[order] = length - np.where(after, np.roll(length, 1), 0)
            self.done_returns.append(rets)
            self.done_lengths.append(lens)
            ret_base[n_e], len_base[n_e] = ret, length  # the last end of each env wins
        self.ep_return = sums[T - 1] - ret_base
        self.ep_length = steps[T - 1] - len_base

    def batch(self, T: int, last_value: np.ndarray | None = None) -> Batch:
        """The first T rows as a Batch (after ``account(T)``); V of the observations that
        follow them is computed unless given."""
        b = {k: v[:T].copy() for k, v in self._buf.items()}
        if not self.with_value:
            b["values"], last_value = None, None
        elif last_value is None:
            last_value = self.actor.value(self.policy_obs())
        return Batch(**b, last_value=last_value)

    def begin_steps(self, num_steps: int) -> None:
        """Before ``num_steps`` steps that continue the running episodes."""
        if self.stale:
            self._reset()
        if num_steps > self.capacity:
            self._alloc(num_steps)

    def collect_steps(self, num_steps: int) -> Batch:
        """num_steps steps of every env, continuing the running episodes."""
        self.begin_steps(num_steps)
        for t in range(num_steps):
            self._step(t, None)
        self.account(num_steps)
        return self.batch(num_steps)

    def collect_episodes(self, per_env: int, reset_seeds: list[int] | None = None) -> Batch:
        """Exactly ``per_env`` whole episodes from every env, starting from a reset
        (with one seed per env when ``reset_seeds`` is given: GRPO's groups)."""
        self.begin_episodes(per_env, reset_seeds)
        while self.collecting():
            obs = self.policy_obs()
            self.advance_episodes(obs, *self.actor.act(obs, self.rng))
        return self.end_episodes()

    def begin_episodes(self, per_env: int, reset_seeds: list[int] | None = None) -> None:
        """Before ``collect_episodes``' steps: reset the envs, count from 0. (``batched.py``
        steps K seeds' collectors through ``collecting``/``advance_episodes`` in lockstep.)"""
        if reset_seeds is not None or not self.fresh:
            self._reset(reset_seeds)
        self._wanted, self._counts, self._t = per_env, np.zeros(self.n, dtype=np.int64), 0

    def collecting(self) -> bool:
        """Whether an env still has episodes to run (after ``begin_episodes``)."""
        return bool((self._counts < self._wanted).any())

    def advance_episodes(self, obs: np.ndarray, actions: np.ndarray, logp: np.ndarray,
                         value: np.ndarray | None) -> None:
        """``advance`` by one step of the episodes in progress; envs that are done idle."""
        if self._t == self.capacity:
            self._alloc(2 * self.capacity)
        self._counts += self.advance(self._t, self._counts < self._wanted, obs, actions, logp,
                                     value)
        self._t += 1

    def end_episodes(self) -> Batch:
        """The whole episodes as a Batch (the envs must reset before the next batch)."""
        self.account(self._t)
        self.stale = True
        return self.batch(self._t)

    def pop_episodes(self) -> tuple[np.ndarray, np.ndarray]:
        """(returns, lengths) of the episodes finished since the last call."""
        rets = np.concatenate(self.done_returns) if self.done_returns else np.zeros(0)
        lens = np.concatenate(self.done_lengths) if self.done_lengths else np.zeros(0, np.int64)
        self.done_returns, self.done_lengths = [], []
        return rets, lens

    # ------------------------------------------------------------ checkpoint state
    _EPISODE_ARRAYS = ("obs", "autoreset", "ep_return", "ep_length")
    _EPISODE_FLAGS = ("fresh", "stale")

    def _generators(self) -> dict[str, np.random.Generator]:
        return {k: v for k, v in vars(self).items() if isinstance(v, np.random.Generator)}

    def _episode_arrays(self) -> tuple[str, ...]:
        return (*self._EPISODE_ARRAYS, "lives") if self.lives is not None else self._EPISODE_ARRAYS

    def state_dict(self, with_episodes: bool) -> dict:
        """What a checkpoint needs, as NumPy arrays and plain containers: the bit-generator
        states of every ``np.random.Generator`` attribute, the reward scaler's statistics,
        and with ``with_episodes`` (the env state is saved too) the episodes in progress:
        raw observations, autoreset flags, running returns and lengths, and with
        ``life_loss_terminal`` each env's lives. (The observation
        normalizer has a slot of its own in the checkpoint: ``obs_normalizer``.)"""
        out: dict = {"generators": {k: g.bit_generator.state for k, g in self._generators().items()}}
        if with_episodes:
            if self.done_returns:
                raise RuntimeError("checkpoint taken with finished episodes not yet popped")
            out["episodes"] = {name: np.array(getattr(self, name))
                               for name in self._episode_arrays()}
            out["episodes"].update({name: bool(getattr(self, name)) for name in self._EPISODE_FLAGS})
        if self.reward_scaler is not None:
            out["reward_scaler"] = self.reward_scaler.state_dict(with_returns=with_episodes)
        return out

    def load_state_dict(self, state: dict, with_episodes: bool) -> None:
        """Put back a ``state_dict`` (after construction; episodes only ``with_episodes``,
        else the freshly reset episodes stay)."""
        gens = self._generators()
        for name, gen_state in state.get("generators", {}).items():
            if name in gens:
                gens[name].bit_generator.state = gen_state
        if with_episodes:
            for name, value in state["episodes"].items():
                setattr(self, name, value)
        if self.reward_scaler is not None and state.get("reward_scaler") is not None:
            scaler_state = dict(state["reward_scaler"])
            if not with_episodes:
                scaler_state.pop("returns", None)
            self.reward_scaler.load_state_dict(scaler_state)
