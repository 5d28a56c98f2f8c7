"""How fast a seed-batched PPO sweep could be at best: the CPU time of the matrix
products alone, for a preset's network and update schedule, on this machine.

    python benchmarks/update_floor.py                       # CartPole-v1, 10 seeds × 100k
    python benchmarks/update_floor.py --env Pendulum-v1 --steps 50000

Every gradient step multiplies each Linear layer three times (forward, ∂/∂input,
∂/∂weight) over the minibatch; every rollout step once. This script times exactly those
products, seed-stacked as ``accelerate.py`` runs them (NumPy, K seeds per process), and
multiplies by the number of gradient and rollout steps of the sweep: the floor under the
update and acting, before autograd, the optimizer, the environments, evaluations and any
Python. Compare it with ``benchmarks/sweep_batched.py``'s measured CPU time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def layer_shapes(env: str) -> tuple[list[tuple[int, int]], dict]:
    from hydra import compose, initialize_config_dir

    from pgrun.algos import ALGORITHMS
    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.envs import make_vec_env
    from pgrun.policies import build_policy

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"env={env}"])
    envs = make_vec_env(cfg.env, 1)
    policy = build_policy(cfg.policy, envs.single_observation_space, envs.single_action_space,
                          ALGORITHMS[cfg.algo.name].uses_value)
    envs.close()
    import torch

    shapes = [(m.in_features, m.out_features) for m in policy.modules()
              if isinstance(m, torch.nn.Linear)]
    return shapes, {"num_envs": cfg.env.num_envs, "num_steps": cfg.algo.num_steps,
                    "epochs": cfg.algo.num_epochs, "minibatches": cfg.algo.num_minibatches}


def seconds(f, repeats: int = 7, number: int = 50) -> float:
    best = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(number):
            f()
        best.append((time.process_time() - t) / number)
    return float(np.median(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--per-process", type=int, default=5, help="K, seeds per process")
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    from pgrun.train import limit_threads

    limit_threads(1)
    shapes, p = layer_shapes(args.env)
    k, rng = args.per_process, np.random.default_rng(0)
    batch = p["num_envs"] * p["num_steps"]
    mb = batch // p["minibatches"]
    updates = args.steps / batch
    grad_steps = updates * p["epochs"] * p["minibatches"]
    vector_steps = args.steps / p["num_envs"]

    def products(rows: int, backward: bool):
        mats = [(rng.standard_normal((k, rows, i), dtype=np.float32),
                 rng.standard_normal((k, o, i), dtype=np.float32),
                 rng.standard_normal((k, rows, o), dtype=np.float32)) for i, o in shapes]

        def run():
            for x, w, dy in mats:
                x @ np.swapaxes(w, -1, -2)
                if backward:
                    dy @ w
                    np.swapaxes(dy, -1, -2) @ x
        return run

    grad_s = seconds(products(mb, True))
    act_s = seconds(products(p["num_envs"], False))
    processes = args.seeds / k
    floor = processes * (grad_steps * grad_s + vector_steps * act_s)
    flops = sum(2 * i * o for i, o in shapes)
    print(f"{args.env}: layers {shapes}; {flops} FLOP per sample forward")
    print(f"  per process of K={k} seeds: a gradient step's products {grad_s * 1e6:.0f} µs "
          f"({3 * flops * mb * k / grad_s / 1e9:.1f} GFLOP/s), an acting step's "
          f"{act_s * 1e6:.0f} µs")
    print(f"  {args.seeds} seeds × {args.steps} steps: {grad_steps:.0f} gradient steps and "
          f"{vector_steps:.0f} acting steps per seed; matrix products alone: {floor:.1f} s CPU "
          f"= {floor / 2:.1f} s wall on 2 cores")


if __name__ == "__main__":
    main()
