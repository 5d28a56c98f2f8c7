"""GridWorld: walk from the top-left corner of an n×n grid to the bottom-right one.

The tutorial environment (registered as ``pgrun/GridWorld-v0``):

* the agent starts at (row, col) = (0, 0); the goal is (n−1, n−1);
* actions: 0 = up (row − 1), 1 = right (col + 1), 2 = down (row + 1), 3 = left (col − 1);
  a move off the grid leaves the agent where it is (the step still costs);
* reward −10 for every step that does not end in the goal, +1 for the step that reaches
  it, which terminates the episode. A shortest path takes 2(n−1) steps, so the best return
  is −10·(2n−3) + 1 (−69 on the 5×5 grid);
* the time limit is the registration's TimeLimit (100 steps; ``max_episode_steps=`` in
  ``gym.make``, ``env.max_episode_steps`` in pgrun), which truncates the episode.

Observation (``obs_mode``):

* ``coords`` (default): (row, col) / (n − 1) as a float32 Box(2) in [0, 1];
* ``onehot``: a float32 Box(n·n) with a 1 at index row·n + col;
* ``index``: the cell index row·n + col as a Discrete(n·n) (for a tabular policy).

The dynamics are deterministic; ``reset(seed=...)`` seeds ``np_random`` as gymnasium
requires, though nothing here draws from it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

OBS_MODES = ("coords", "onehot", "index")
ACTIONS = ("up", "right", "down", "left")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (d_row, d_col) per action
STEP_REWARD = -10.0
GOAL_REWARD = 1.0


class GridWorldEnv(gym.Env):
    """An n×n grid, start top-left, goal bottom-right, four moves (see module docstring)."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, n: int = 5, obs_mode: str = "coords", render_mode: str | None = None):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
            raise ValueError(f"GridWorld: n={n!r} must be an integer ≥ 2 (the grid is n×n)")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"GridWorld: obs_mode={obs_mode!r} must be one of "
                             f"{', '.join(OBS_MODES)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"GridWorld: render_mode={render_mode!r} must be one of "
                             f"{', '.join(self.metadata['render_modes'])} or None")
        self.n = int(n)
        self.obs_mode = obs_mode
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        if obs_mode == "coords":
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        elif obs_mode == "onehot":
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.n * self.n,),
                                                    dtype=np.float32)
        else:
            self.observation_space = gym.spaces.Discrete(self.n * self.n)
        self.goal = (self.n - 1, self.n - 1)
        self.pos = (0, 0)

    def _obs(self):
        row, col = self.pos
        if self.obs_mode == "coords":
            return np.array([row, col], dtype=np.float32) / np.float32(self.n - 1)
        if self.obs_mode == "onehot":
            obs = np.zeros(self.n * self.n, dtype=np.float32)
            obs[row * self.n + col] = 1.0
            return obs
        return row * self.n + col

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = (0, 0)
        return self._obs(), {}

    def step(self, action):
        a = int(action)
        if not 0 <= a < len(MOVES):
            raise ValueError(f"GridWorld: action {action!r} is not in {self.action_space}")
        d_row, d_col = MOVES[a]
        row = min(max(self.pos[0] + d_row, 0), self.n - 1)
        col = min(max(self.pos[1] + d_col, 0), self.n - 1)
        self.pos = (row, col)
        terminated = self.pos == self.goal
        reward = GOAL_REWARD if terminated else STEP_REWARD
        return self._obs(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "ansi":
            rows = []
            for r in range(self.n):
                rows.append(" ".join("A" if (r, c) == self.pos else "G" if (r, c) == self.goal
                                     else "." for c in range(self.n)))
            return "\n".join(rows) + "\n"
        if self.render_mode == "rgb_array":
            cell = 32
            img = np.full((self.n * cell, self.n * cell, 3), 255, dtype=np.uint8)
            img[::cell, :] = img[:, ::cell] = 200  # grid lines
            for (r, c), color in ((self.goal, (40, 170, 60)), (self.pos, (40, 90, 220))):
                img[r * cell + 4:(r + 1) * cell - 3, c * cell + 4:(c + 1) * cell - 3] = color
            return img
        return None


def optimal_return(n: int) -> float:
    """Return of a shortest path on the n×n grid: 2(n−1) steps, the last one reaching the goal."""
    return STEP_REWARD * (2 * (n - 1) - 1) + GOAL_REWARD
