"""Observation normalization and reward scaling (config node ``normalize``), as in
Stable-Baselines3's ``VecNormalize`` and CleanRL's ``NormalizeObservation`` /
``NormalizeReward`` wrappers, applied by the Collector.

* **Observations**: every observation the training envs return updates a running mean
  and variance (over all of training, per dimension); the policy, the value function and
  the stored batch see ô = clip((o − μ) / √(σ² + ε), ±clip). The update trains on exactly
  the normalized observations the rollout acted on (they are what the batch stores).
  Evaluation and ``pgrun eval`` normalize with the statistics as they are, never updating
  them; the checkpoint keeps them (its ``obs_normalizer`` slot).
* **Rewards** (for learning only): a running discounted return per env,
  R_t = γ R_{t−1} + r_t (reset at episode ends), feeds a running variance, and the
  rewards stored for the update are r_t / √(Var[R] + ε), clipped to ±clip. Episode
  returns in metrics.csv and eval.csv stay raw.

``RunningMeanStd`` merges batches with Chan et al.'s parallel update, so feeding data in
any chunks gives the mean and (population) variance of all of it (tested against NumPy).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from pgrun.config import ConfigError


def clip(x: np.ndarray, bound: float) -> np.ndarray:
    """``np.clip(x, -bound, bound)`` (the same values, NaN included) without its Python
    wrapper, which costs more than the clip itself on one env's few numbers."""
    return np.minimum(np.maximum(x, -bound), bound)


class RunningMeanStd:
    """Running mean and population variance (float64) of a stream of batches.

    For a batch of n samples with mean m_b and variance v_b, merged into (μ, σ², N):
      δ = m_b − μ,  N' = N + n,  μ' = μ + δ n / N',
      σ²' = (σ² N + v_b n + δ² N n / N') / N'               (Chan, Golub, LeVeque 1979)
    """

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        """Merge a batch (first axis: samples)."""
        x = np.asarray(x, dtype=np.float64)
        n = len(x)
        if n == 0:
            return
        if n == 1 and self.count > 0:  # one env: m_b = x₀, v_b = 0, the same sums, no reductions
            total = self.count + 1
            delta = x[0] - self.mean
            self.mean = self.mean + delta * (1 / total)
            self.var = (self.var * self.count + delta**2 * (self.count / total)) / total
            self.count = total
            return
        b_mean, b_var = x.mean(axis=0), x.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = b_mean, b_var, n
            return
        total = self.count + n
        delta = b_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.var = (self.var * self.count + b_var * n + delta**2 * (self.count * n / total)) / total
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": int(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.var = np.array(state["var"], dtype=np.float64)
        self.count = int(state["count"])


class ObsNormalizer:
    """ô = clip((o − μ) / √(σ² + ε), ±clip) with running statistics (``update``) that
    evaluation only reads (``normalize``)."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8):
        self.rms = RunningMeanStd(shape)
        self.clip, self.epsilon = float(clip), float(epsilon)

    def update(self, obs: np.ndarray) -> None:
        self.rms.update(obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Normalized float32 observations; never changes the statistics."""
        z = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return clip(z, self.clip).astype(np.float32)


    def state_dict(self) -> dict:
        return {**self.rms.state_dict(), "clip": self.clip, "epsilon": self.epsilon}

    def load_state_dict(self, state: dict) -> None:
        self.rms.load_state_dict(state)
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])

    @classmethod
    def from_state(cls, state: dict) -> ObsNormalizer:
        """A normalizer holding saved statistics (``pgrun eval``)."""
        norm = cls(np.shape(state["mean"]))
        norm.load_state_dict(state)
        return norm


class RewardScaler:
    """r_t / √(Var[R] + ε), clipped to ±clip, with R the running discounted return of each
    env (R_t = γ R_{t−1} + r_t, reset to 0 after an episode ends)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma, self.clip, self.epsilon = float(gamma), float(clip), float(epsilon)

    def scale(self, reward: np.ndarray, valid: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scaled rewards (float32) for one vector step; only ``valid`` steps (real
        transitions) enter the returns and the statistics."""
        self.returns = np.where(valid, self.returns * self.gamma + reward, self.returns)
        self.rms.update(self.returns[valid])
        self.returns[done & valid] = 0.0
        scaled = reward / np.sqrt(self.rms.var + self.epsilon)
        return clip(scaled, self.clip).astype(np.float32)

    def reset(self) -> None:
        """Episodes restart: the running returns start from 0."""
        self.returns[:] = 0.0

    def state_dict(self, with_returns: bool = True) -> dict:
        out = {**self.rms.state_dict(), "gamma": self.gamma, "clip": self.clip,
               "epsilon": self.epsilon}
        if with_returns:
            out["returns"] = self.returns.copy()
        return out

    def load_state_dict(self, state: dict) -> None:
        """Statistics always; the running returns when the state has them (the episodes in
        progress were saved too), else they start from 0."""
        self.rms.load_state_dict(state)
        self.gamma, self.clip, self.epsilon = (float(state[k]) for k in ("gamma", "clip", "epsilon"))
        if "returns" in state:
            self.returns = np.array(state["returns"], dtype=np.float64)
        else:
            self.reset()


def build_normalizers(cfg, obs_space: gym.Space, num_envs: int):
    """(ObsNormalizer | None, RewardScaler | None) as ``cfg.normalize`` asks; the reward
    scaler discounts with ``normalize.gamma``, by default the algorithm's γ."""
    norm = cfg.normalize
    obs_norm = scaler = None
    if norm.obs:
        if not isinstance(obs_space, gym.spaces.Box):
            raise ConfigError(f"normalize.obs=true needs a Box observation space; this "
                              f"environment observes {obs_space} (set normalize.obs=false).")
        obs_norm = ObsNormalizer(obs_space.shape, norm.clip_obs, norm.epsilon)
    if norm.reward:
        gamma = norm.gamma if norm.gamma is not None else cfg.algo.get("gamma", 0.99)
        scaler = RewardScaler(num_envs, gamma, norm.clip_reward, norm.epsilon)
    return obs_norm, scaler
