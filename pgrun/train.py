"""The one training loop: collect a batch, let the algorithm update, log, evaluate,
checkpoint. Algorithms differ only in ``collect`` and ``update`` (see ``algos/``)."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pgrun.algos import ALGORITHMS
from pgrun.config import validate
from pgrun.envs import EVAL_SEED_OFFSET, make_vec_env
from pgrun.evaluate import evaluate
from pgrun.metrics import EVAL_COLUMNS, METRIC_COLUMNS, CsvLog, Progress, Stopwatch
from pgrun.policies import build_agent
from pgrun.rollout import Collector
from pgrun.runfolder import git_revision, save_checkpoint, versions, write_summary

log = logging.getLogger("pgrun")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds third-party code that uses the legacy API)
    torch.manual_seed(seed)


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    return (float(x.mean()), float(x.std())) if len(x) else (math.nan, math.nan)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as configured, writing metrics.csv, eval.csv, checkpoint.pt and summary.json
    into ``run_dir``; returns the summary."""
    validate(cfg)
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    total = int(cfg.total_steps)
    algo_cls = ALGORITHMS[cfg.algo.name]

    envs = make_vec_env(cfg.env, cfg.env.num_envs)
    eval_envs = None
    if cfg.eval.interval > 0:
        eval_envs = make_vec_env(cfg.env, min(cfg.eval.num_envs, cfg.eval.episodes))
    agent = build_agent(cfg.policy, envs.single_observation_space, envs.single_action_space,
                        with_value=algo_cls.uses_value)
    algo = algo_cls(cfg.algo, agent, cfg.env.num_envs)
    collector = Collector(envs, agent, seed=cfg.seed)

    metrics = CsvLog(run_dir / "metrics.csv", METRIC_COLUMNS)
    evals = CsvLog(run_dir / "eval.csv", EVAL_COLUMNS)
    title = f"{cfg.algo.name} {cfg.env.id} seed={cfg.seed}"
    progress = Progress(cfg.progress, total, title)
    watch = Stopwatch()
    threshold = cfg.env.reward_threshold
    state = {"step": 0, "episodes": 0, "update": 0, "next_eval": 0, "eval_returns": [],
             "steps_to_threshold": None}

    def run_eval() -> None:
        with watch.time("eval"):
            rets, lens = evaluate(agent, eval_envs, cfg.eval.episodes,
                                  seed=cfg.seed + EVAL_SEED_OFFSET,
                                  deterministic=cfg.eval.deterministic)
        mean, std = _mean_std(rets)
        step = state["step"]
        evals.write({"step": step, "return_mean": mean, "return_std": std,
                     "length_mean": float(lens.mean()), "episodes": len(rets),
                     "time_s": watch.elapsed()})
        state["eval_returns"].append((step, mean))
        if threshold is not None and state["steps_to_threshold"] is None and mean >= threshold:
            state["steps_to_threshold"] = step
        progress.eval_return = mean
        state["next_eval"] = (step // cfg.eval.interval + 1) * cfg.eval.interval

    log.info("%s: %d steps, run folder %s", title, total, run_dir)
    try:
        while state["step"] < total:
            if eval_envs is not None and state["step"] >= state["next_eval"]:
                run_eval()
            with watch.time("rollout"):
                batch = algo.collect(collector)
            with watch.time("update"):
                stats = algo.update(batch, progress=state["step"] / total)
            state["step"] += batch.num_steps
            state["update"] += 1
            rets, lens = collector.pop_episodes()
            state["episodes"] += len(rets)
            ret_mean, ret_std = _mean_std(rets)
            elapsed = watch.elapsed()
            sps = state["step"] / elapsed
            with watch.time("log"):
                metrics.write({**stats, "update": state["update"], "step": state["step"],
                               "episodes": state["episodes"], "time_s": elapsed, "sps": sps,
                               "return_mean": ret_mean, "return_std": ret_std,
                               "length_mean": float(lens.mean()) if len(lens) else math.nan})
                progress.update(state["step"], sps, ret_mean)
        if eval_envs is not None and (not state["eval_returns"]
                                      or state["eval_returns"][-1][0] != state["step"]):
            run_eval()
    finally:
        progress.close()
        metrics.close()
        evals.close()
        envs.close()
        if eval_envs is not None:
            eval_envs.close()

    wall = watch.elapsed()
    config = OmegaConf.to_container(cfg, resolve=True)
    if cfg.checkpoint:
        save_checkpoint(run_dir, {
            "format": 1, "step": state["step"], "config": config,
            "agent": agent.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in algo.optimizers().items()},
        })
    eval_returns = [r for _, r in state["eval_returns"]]
    summary = {
        "algo": cfg.algo.name, "env": cfg.env.id, "seed": cfg.seed,
        "steps": state["step"], "updates": state["update"], "episodes": state["episodes"],
        "wall_time_s": round(wall, 3), "sps": round(state["step"] / wall, 1),
        "final_eval_return": eval_returns[-1] if eval_returns else None,
        "best_eval_return": max(eval_returns) if eval_returns else None,
        "reward_threshold": threshold, "steps_to_threshold": state["steps_to_threshold"],
        "time_s": {k: round(v, 3) for k, v in watch.totals.items()},
        "versions": versions(), "git": git_revision(),
    }
    write_summary(run_dir, summary)
    log.info("%s: done in %.1f s (%.0f sps); final eval return %s; steps to threshold %s",
             title, wall, summary["sps"], summary["final_eval_return"],
             summary["steps_to_threshold"])
    return summary
