"""The one training loop: collect a batch, let the algorithm update, log, evaluate,
checkpoint. Algorithms differ only in ``collect`` and ``update`` (see ``algos/``).

A run can stop and continue: it checkpoints every ``checkpoint.every`` updates and at the
end; a signal (SIGTERM, SIGINT, a cluster's preemption) or ``checkpoint.stop_after_updates``
makes it checkpoint at the next update boundary and stop (status ``interrupted``); started
again in its folder it resumes from the checkpoint (``resume.py`` decides). Where the
vector env's state is captured (``checkpoint.py``) the resumed run computes exactly what
the uninterrupted run would have. A NaN or inf in a loss or a parameter stops the run
before that update is logged or checkpointed (status ``failed``), keeping the last good
checkpoint.
"""

from __future__ import annotations

import logging
import math
import random
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from pgrun.accelerate import attach
from pgrun.algos import ALGORITHMS
from pgrun.checkpoint import (
    FORMAT,
    capture_collector,
    capture_env_state,
    capture_normalizer,
    env_state_fits,
    global_rng_state,
    restore_collector,
    restore_env_state,
    restore_normalizer,
    set_global_rng_state,
)
from pgrun.config import ConfigError, validate
from pgrun.envs import (
    EVAL_SEED_OFFSET,
    episode_limit,
    make_vec_env,
    registered_threshold,
    resolve_spec,
)
from pgrun.envs.extras import check_env_dependencies, env_id_of
from pgrun.evaluate import Evaluation
from pgrun.flat import flat_parameters
from pgrun.heap import keep_freed_memory
from pgrun.lock import RunLock
from pgrun.metrics import EVAL_COLUMNS, METRIC_COLUMNS, Progress, Stopwatch
from pgrun.normalize import build_normalizers
from pgrun.policies import action_bounds, build_policy
from pgrun.resume import Plan, plan_run, start_over
from pgrun.rollout import Actor, Collector
from pgrun.runfolder import (
    CHECKPOINT,
    COMPLETE,
    EVALS,
    FAILED,
    INTERRUPTED,
    METRICS,
    RunCsv,
    clear_error,
    config_hash,
    git_revision,
    save_checkpoint,
    versions,
    write_error,
    write_summary,
)
from pgrun.signals import StopFlag, stop_on_signals
from pgrun.sinks import Table, check_logger_dependencies, open_sinks

log = logging.getLogger("pgrun")

LOSS_KEYS = ("policy_loss", "value_loss", "entropy")
"""Stats that must be finite after an update that took optimizer steps."""


class NonFiniteError(RuntimeError):
    """A NaN or inf in a loss or parameter: the run stops, keeping its last good checkpoint."""


def limit_threads(n: int) -> None:
    """The training process's settings: n threads for torch and for NumPy's BLAS (the
    update's matrix products; small networks run fastest on one, and parallel runs of a
    sweep then do not fight over cores), and freed memory kept (``heap.py``)."""
    torch.set_num_threads(n)
    threadpool_limits(n, user_api="blas")
    keep_freed_memory()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds third-party code that uses the legacy API)
    torch.manual_seed(seed)


def restart_seed(seed: int, update: int) -> int:
    """Env seed for restarting episodes on resume where the env state was not saved:
    distinct per (seed, update), so a resumed run does not replay its first episodes."""
    return int(np.random.SeedSequence([seed, update, 0x7265]).generate_state(1)[0])


def nonfinite_batch(batch) -> list[str]:
    """Which of the environment's figures in a batch are NaN/inf: rewards, observations."""
    valid = batch.valid
    bad = [] if np.isfinite(batch.rewards[valid]).all() else ["rewards"]
    if np.issubdtype(batch.obs.dtype, np.floating) and not np.isfinite(batch.obs[valid]).all():
        bad.append("observations")
    return bad


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    return (float(x.mean()), float(x.std())) if len(x) else (math.nan, math.nan)


def nonfinite(stats: dict, policy: torch.nn.Module) -> list[str]:
    """What is NaN/inf after an update: loss stats (when optimizer steps were taken; PPO
    reports ``grad_steps``) and parameters."""
    bad = []
    if stats.get("grad_steps", 1):
        bad += [f"{k}={stats[k]}" for k in LOSS_KEYS
                if stats.get(k) is not None and not math.isfinite(stats[k])]
    if bool(flat_parameters(policy).data.isfinite().all()):  # every parameter, one check
        return bad
    return bad + [f"parameter {name}" for name, p in policy.named_parameters()
                  if not bool(torch.isfinite(p).all())]


def resolve_device(name: str) -> torch.device:
    """``device``: ``auto`` is cuda where available, else cpu; cuda without a GPU is a
    ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: torch finds no CUDA device on this machine "
                          f"(torch {torch.__version__}); use device=cpu or device=auto.")
    return torch.device(name)


def train(cfg: DictConfig, run_dir: Path, stop: StopFlag | None = None,
          on_start: Callable[[Path], None] | None = None) -> dict:
    """Train as configured, writing metrics.csv, eval.csv, checkpoint.pt and summary.json
    into ``run_dir`` (resuming or skipping per ``cfg.resume``); returns the summary, whose
    ``status`` is ``complete`` or ``interrupted``. ``stop`` is the flag signals set (by
    default, handlers are installed for the duration of the call).

    Refusals (a bad config or environment, a folder of another run or locked by another
    writer) raise ConfigError before anything in the folder changes; ``on_start(run_dir)``
    is called once the run is built and about to write (``pgrun train`` records .hydra/)."""
    validate(cfg)
    check_env_dependencies(env_id_of(cfg.env))  # e.g. LunarLander without the box2d extra
    check_logger_dependencies(cfg.get("logger"))  # e.g. logger.tensorboard without the tb extra
    if cfg.env.reward_threshold is None:  # env=generic: the registration's, saved with the run
        cfg.env.reward_threshold = registered_threshold(cfg.env)
    run_dir = Path(run_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    plan = plan_run(run_dir, config, cfg.resume)  # reads only: a refusal changes nothing
    if plan.action != "skip":
        run_dir.mkdir(parents=True, exist_ok=True)
        with RunLock(run_dir):
            plan = plan_run(run_dir, config, cfg.resume)  # another writer may have finished
            if plan.action != "skip":
                if stop is None:
                    with stop_on_signals() as flag:
                        return _Run(cfg, run_dir, config, plan, flag, on_start).run()
                return _Run(cfg, run_dir, config, plan, stop, on_start).run()
    log.info("%s: already complete with this configuration; nothing to do (resume=false "
             "trains it again)", run_dir)
    clear_error(run_dir)
    return plan.summary


class _Run:
    """One training run's pieces; ``run`` is the loop."""

    def __init__(self, cfg: DictConfig, run_dir: Path, config: dict, plan: Plan, stop: StopFlag,
                 on_start: Callable[[Path], None] | None = None):
        self.cfg, self.run_dir, self.config, self.plan, self.stop = cfg, run_dir, config, plan, stop
        self.on_start, self.begun = on_start, False
        self.total = int(cfg.total_steps)
        self.title = f"{cfg.algo.name} {cfg.env.id} seed={cfg.seed}"
        # its lines carry the run folder: a process training several runs (batched.py)
        # writes each run's lines to its own pgrun.log only (sweep.record_start)
        self.log = logging.LoggerAdapter(log, {"run_dir": str(run_dir)})
        self.watch = Stopwatch()
        self.state = {"step": 0, "episodes": 0, "update": 0, "next_eval": 0, "eval_returns": [],
                      "steps_to_threshold": None}
        self.resumes: list[dict] = []
        self.last_checkpoint: dict | None = None  # {"update", "step"} of the last one written
        self.envs = self.eval_envs = self.metrics = self.evals = self.progress = None
        self.sinks: list = []

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg, ckpt = self.cfg, self.plan.checkpoint
        limit_threads(cfg.torch_threads)
        seed_everything(cfg.seed)
        algo_cls = ALGORITHMS[cfg.algo.name]
        self.envs = make_vec_env(cfg.env, cfg.env.num_envs)
        if episode_limit(cfg.env, resolve_spec(cfg.env)) is None:
            self.log.info("%s: no time limit registered and env.max_episode_steps=null, so pgrun "
                          "imposes none: episodes end when the env ends them (MiniGrid and "
                          "highway-env truncate by themselves); where they may not, set "
                          "env.max_episode_steps=N, or an evaluation waits forever.", cfg.env.id)
        if cfg.eval.interval > 0:
            self.eval_envs = make_vec_env(cfg.env, min(cfg.eval.num_envs, cfg.eval.episodes))
        obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        self.device = resolve_device(cfg.get("device", "cpu"))
        self.policy = build_policy(cfg.policy, obs_space, act_space,
                                   with_value=algo_cls.uses_value).to(self.device)
        self.update_path = attach(self.policy, cfg.get("accelerate", True)
                                  and not algo_cls.second_order)
        self.actor = Actor(self.policy, obs_space, act_space,
                           action_bounds(cfg.policy, act_space), self.device)
        self.algo = algo_cls(cfg.algo, self.policy, cfg.env.num_envs, self.device)
        env_restored = ckpt is not None and env_state_fits(self.envs, ckpt["env_state"])
        seed = cfg.seed if ckpt is None or env_restored else restart_seed(cfg.seed, ckpt["update"])
        obs_norm, reward_scaler = build_normalizers(cfg, self.envs.single_observation_space,
                                                    cfg.env.num_envs)
        self.collector = Collector(self.envs, self.actor, seed=seed,
                                   with_value=algo_cls.uses_value, obs_normalizer=obs_norm,
                                   reward_scaler=reward_scaler,
                                   reward_sign=cfg.normalize.get("reward_sign", False),
                                   life_loss_terminal=cfg.env.get("life_loss_terminal", False))
        if ckpt is not None:
            self._restore(ckpt)
        self._begin()
        keep_evals = len(self.state["eval_returns"]) if ckpt is not None else None
        metrics = RunCsv(self.run_dir / METRICS, [*METRIC_COLUMNS, *algo_cls.columns],
                         keep_rows=self.state["update"] if ckpt is not None else None)
        evals = RunCsv(self.run_dir / EVALS, EVAL_COLUMNS, keep_rows=keep_evals)
        resume_step = self.state["step"] if ckpt is not None else None
        self.sinks = open_sinks(cfg.get("logger"), self.run_dir, self.config,
                                OmegaConf.to_yaml(OmegaConf.create(self.config)), resume_step)
        self.metrics = Table(metrics, "train", self.sinks)
        self.evals = Table(evals, "eval", self.sinks)
        if resume_step is not None:
            self.metrics.replay(resume_step)
            self.evals.replay(resume_step)
        self.progress = Progress(cfg.progress, self.total, self.title)
        self.watch = Stopwatch()  # training time: setup (and time between resumes) left out
        if ckpt is not None:
            self.watch.start -= ckpt["time"]["elapsed"]
            self.watch.totals = dict(ckpt["time"]["totals"])

    def _begin(self) -> None:
        """The first writes: the folder of a fresh run is cleared, the caller records."""
        self.begun = True
        if self.plan.action == "fresh":
            start_over(self.run_dir)
        if self.on_start is not None:
            self.on_start(self.run_dir)
        clear_error(self.run_dir)

    def _restore(self, ckpt: dict) -> None:
        """Put the checkpoint's state back (after everything is built, since building
        draws from the generators being restored)."""
        self.policy.load_state_dict(ckpt["agent"])
        for name, opt in self.algo.optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][name])
        self.algo.load_state_dict(ckpt.get("algo", {}))
        set_global_rng_state(ckpt["rng"])
        env_restored = restore_env_state(self.envs, ckpt["env_state"])
        restore_collector(self.collector, ckpt["collector"], with_episodes=env_restored)
        restore_normalizer(self.collector, ckpt.get("obs_normalizer"))
        ev = ckpt["eval"]
        self.state.update(step=ckpt["step"], episodes=ckpt["episodes"], update=ckpt["update"],
                          next_eval=ev["next_eval"], steps_to_threshold=ev["steps_to_threshold"],
                          eval_returns=[(int(s), float(r)) for s, r in ev["returns"]])
        self.last_checkpoint = {"update": ckpt["update"], "step": ckpt["step"]}
        self.resumes = [*ckpt["resumes"], {
            "update": ckpt["update"], "step": ckpt["step"],
            "env_state": "restored" if env_restored else "episodes restarted"}]
        self.log.info("%s: resuming from %s at update %d (step %d)%s", self.title,
                      self.run_dir / CHECKPOINT, ckpt["update"], ckpt["step"],
                      "" if env_restored else "; the environment state was not saved, so "
                      "episodes restart")

    # ------------------------------------------------------------------- loop
    def run(self) -> dict:
        try:
            self._setup()
            return self._loop()
        except ConfigError:
            raise
        except Exception as err:
            self._record_failure(err)
            raise
        finally:
            self.close()

    def _loop(self) -> dict:
        self.log_start()
        stopped = self.stop_before_start()
        if stopped is not None:
            return stopped
        while self.state["step"] < self.total:
            self.eval_if_due()
            with self.watch.time("rollout"):
                batch = self.algo.collect(self.collector)
            self.check_batch(batch)
            with self.watch.time("update"):
                stats = self.algo.update(batch, progress=self.state["step"] / self.total)
            stopped = self.after_update(batch.num_steps, stats)
            if stopped is not None:
                return stopped
        return self.finish()

    # The loop's steps, shared with seed-batched runs (``batched.py``).
    def log_start(self) -> None:
        self.log.info("%s: %d steps, run folder %s", self.title, self.total, self.run_dir)

    def _limit_reached(self) -> str | None:
        """``checkpoint.stop_after_updates=N`` once the run has made N updates, else None."""
        n = self.cfg.checkpoint.stop_after_updates
        return f"checkpoint.stop_after_updates={n}" if n is not None and \
            self.state["update"] >= n else None

    def stop_before_start(self) -> dict | None:
        """A resumed run already at ``checkpoint.stop_after_updates`` (the same command run
        again) takes no further update: it stops as it is, its checkpoint untouched, and
        this is its summary; else None."""
        reason = self._limit_reached()  # N ≥ 1, so only after resuming a checkpoint
        if reason is not None and self.state["step"] < self.total:
            return self._interrupted(reason, save=False)
        return None

    def eval_if_due(self) -> None:
        if self.eval_due():
            self._eval()

    def check_batch(self, batch) -> None:
        """NonFiniteError where the environment returned NaN/inf in the batch."""
        bad_env = nonfinite_batch(batch)
        if bad_env:
            raise NonFiniteError(self._env_nonfinite_message(self.state["update"] + 1, bad_env))

    def after_update(self, num_steps: int, stats: dict) -> dict | None:
        """Account for an update of ``num_steps`` steps: NonFiniteError where it produced
        NaN/inf; else log it and checkpoint when due. Returns the summary where the run
        stops here (a signal, ``checkpoint.stop_after_updates``), else None."""
        cfg, st, watch = self.cfg, self.state, self.watch
        bad = nonfinite(stats, self.policy)
        if bad:
            raise NonFiniteError(self._nonfinite_message(st["update"] + 1, bad))
        st["step"] += num_steps
        st["update"] += 1
        rets, lens = self.collector.pop_episodes()
        st["episodes"] += len(rets)
        ret_mean, ret_std = _mean_std(rets)
        elapsed = watch.elapsed()
        sps = st["step"] / elapsed
        with watch.time("log"):
            self.metrics.write({**stats, "update": st["update"], "step": st["step"],
                                "episodes": st["episodes"], "time_s": elapsed, "sps": sps,
                                "return_mean": ret_mean, "return_std": ret_std,
                                "length_mean": float(lens.mean()) if len(lens) else math.nan})
            self.progress.update(st["step"], sps, ret_mean)
        if st["step"] >= self.total:
            return None
        reason = self.stop.reason if self.stop.requested else self._limit_reached()
        if reason is not None:
            return self._interrupted(reason)
        every = cfg.checkpoint.every
        if every and st["update"] % every == 0:
            with watch.time("checkpoint"):
                self._save_checkpoint(complete=False)
        return None

    def finish(self) -> dict:
        """The final evaluation, checkpoint and summary of a run that used its budget."""
        if self.final_eval_due():
            self._eval()
        self._save_checkpoint(complete=True)
        summary = self._summary(COMPLETE)
        self.log.info("%s: done in %.1f s (%.0f sps); final eval return %s; steps to threshold %s",
                      self.title, summary["wall_time_s"], summary["sps"],
                      summary["final_eval_return"], summary["steps_to_threshold"])
        return summary

    def close(self) -> None:
        for closable in (self.progress, self.metrics, self.evals, *self.sinks, self.envs,
                         self.eval_envs):
            if closable is not None:
                closable.close()

    def _eval(self) -> None:
        with self.watch.time("eval"):
            rets, lens = self.evaluation().run(self.cfg.eval.deterministic)
        self.record_eval(rets, lens)

    def evaluation(self) -> Evaluation:
        """The evaluation ``_eval`` runs, to be stepped by the caller (``batched.py``)."""
        return Evaluation(self.actor, self.eval_envs, self.cfg.eval.episodes,
                          seed=self.cfg.seed + EVAL_SEED_OFFSET,
                          obs_normalizer=self.collector.obs_normalizer)

    def eval_due(self) -> bool:
        return self.eval_envs is not None and self.state["step"] >= self.state["next_eval"]

    def final_eval_due(self) -> bool:
        """Whether the run's policy at its last step is not yet evaluated."""
        st = self.state
        return self.eval_envs is not None and (not st["eval_returns"]
                                               or st["eval_returns"][-1][0] != st["step"])

    def record_eval(self, rets: np.ndarray, lens: np.ndarray) -> None:
        """Log an evaluation's episodes (eval.csv, threshold, progress) and schedule the next."""
        cfg, st = self.cfg, self.state
        mean, std = _mean_std(rets)
        step = st["step"]
        self.evals.write({"step": step, "return_mean": mean, "return_std": std,
                          "length_mean": float(lens.mean()), "episodes": len(rets),
                          "time_s": self.watch.elapsed()})
        st["eval_returns"].append((step, mean))
        threshold = cfg.env.reward_threshold
        if threshold is not None and st["steps_to_threshold"] is None and mean >= threshold:
            st["steps_to_threshold"] = step
        self.progress.eval_return = mean
        st["next_eval"] = (step // cfg.eval.interval + 1) * cfg.eval.interval

    # ------------------------------------------------------- checkpoint, summary
    def _save_checkpoint(self, complete: bool) -> None:
        if not self.cfg.checkpoint.enabled:
            return
        st = self.state
        self.metrics.sync()  # the rows this checkpoint accounts for are on disk first
        self.evals.sync()
        env_state = capture_env_state(self.envs)
        save_checkpoint(self.run_dir, {
            "format": FORMAT, "complete": complete,
            "step": st["step"], "update": st["update"], "episodes": st["episodes"],
            "config": self.config, "config_hash": config_hash(self.config),
            "agent": self.policy.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.algo.optimizers().items()},
            "algo": self.algo.state_dict(),
            "obs_normalizer": capture_normalizer(self.collector),
            "rng": global_rng_state(),
            "env_state": env_state,
            "collector": capture_collector(self.collector, with_episodes=env_state is not None),
            "eval": {"next_eval": st["next_eval"], "steps_to_threshold": st["steps_to_threshold"],
                     "returns": [[s, r] for s, r in st["eval_returns"]]},
            "time": {"elapsed": self.watch.elapsed(), "totals": dict(self.watch.totals)},
            "resumes": self.resumes,
        })
        self.last_checkpoint = {"update": st["update"], "step": st["step"]}

    def _interrupted(self, reason: str, save: bool = True) -> dict:
        if save:
            self._save_checkpoint(complete=False)
        summary = self._summary(INTERRUPTED, stop_reason=reason)
        where = (f"checkpoint at update {self.state['update']} (step {self.state['step']}) in "
                 f"{self.run_dir / CHECKPOINT}" if self.cfg.checkpoint.enabled
                 else "no checkpoint (checkpoint.enabled=false): the run cannot be resumed")
        self.log.warning("%s: stopped (%s); %s", self.title, reason, where)
        self.stop.handoff()  # submitit's preemption handler requeues the job and exits
        return summary

    def _nonfinite_message(self, update: int, bad: list[str]) -> str:
        kept = self._kept()
        shown = ", ".join(bad[:4]) + (f", … ({len(bad) - 4} more)" if len(bad) > 4 else "")
        return (f"update {update} (from step {self.state['step']:,}) produced non-finite "
                f"values: {shown}. The run stopped without logging or checkpointing it; "
                f"{kept}. A smaller algo.lr or gradient clipping (algo.max_grad_norm) usually "
                "avoids this.")

    def _env_nonfinite_message(self, update: int, bad: list[str]) -> str:
        return (f"the environment returned non-finite {' and '.join(bad)} in the batch of "
                f"update {update} (from step {self.state['step']:,}), before the update used "
                f"them; {self._kept()}. This is the environment's doing ({self.cfg.env.id}), "
                "not the learning rate's: check its reward and observation code.")

    def _kept(self) -> str:
        last = self.last_checkpoint
        return (f"the last good checkpoint (update {last['update']}, step {last['step']:,}) is "
                f"kept in {self.run_dir / CHECKPOINT}" if last and self.cfg.checkpoint.enabled
                else "no checkpoint had been written yet")

    def _record_failure(self, err: Exception) -> None:
        message = f"{type(err).__name__}: {err}"
        try:
            if not self.begun:
                self._begin()
            write_error(self.run_dir, message + "\n\n" + "".join(
                traceback.format_exception(type(err), err, err.__traceback__)))
            write_summary(self.run_dir, self._summary(FAILED, error=message))
        except Exception as again:  # noqa: BLE001 (never hide the original error)
            self.log.error("could not record the failure in %s: %s", self.run_dir, again)

    def _summary(self, status: str, **extra) -> dict:
        cfg, st = self.cfg, self.state
        wall = self.watch.elapsed()
        eval_returns = [r for _, r in st["eval_returns"]]
        summary = {
            "status": status, **extra,
            "algo": cfg.algo.name, "env": cfg.env.id, "seed": cfg.seed,
            "steps": st["step"], "total_steps": self.total, "updates": st["update"],
            "episodes": st["episodes"],
            "wall_time_s": round(wall, 3), "sps": round(st["step"] / wall, 1) if wall else None,
            "final_eval_return": eval_returns[-1] if eval_returns else None,
            "best_eval_return": max(eval_returns) if eval_returns else None,
            "reward_threshold": cfg.env.reward_threshold,
            "steps_to_threshold": st["steps_to_threshold"],
            "time_s": {k: round(v, 3) for k, v in self.watch.totals.items()},
            "update_path": getattr(self, "update_path", None), "device": str(getattr(self, "device", "")),
            "checkpoint": self.last_checkpoint,
            "resumes": self.resumes,
            "config_hash": config_hash(self.config),
            "versions": versions(), "git": git_revision(),
        }
        write_summary(self.run_dir, summary)
        return summary
