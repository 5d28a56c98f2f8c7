"""Seed-batched training: the K seeds of one configuration in one process.

Each seed is its own run — its own run folder, environments, normalizers, generators,
metrics, evaluations, checkpoints and summary, built by ``train._Run`` exactly as it would
be built alone — and the costly steps are done for all K together:

* acting: the K seeds' observations go through the seed-stacked policy (``stack.py``) in
  one forward pass, each seed's actions drawn from its own generator; algorithms that cut
  whole episodes (``Algorithm.episodes``: REINFORCE, GRPO) step the K seeds' episodes in
  lockstep, a seed that has its episodes waiting, without drawing, for the others;
* evaluations: the seeds due for one step their evaluation envs together, the same way;
* the update: the algorithm's update runs once on the K seeds' batches (``samples.py``):
  per-seed advantage normalization, minibatch shuffles (each seed's own torch generator),
  gradient clipping, early stopping, PPO-KL's β, TRPO's conjugate gradient and line
  search, and Adam state; the losses of the K seeds are summed, so autograd gives each
  seed the gradient of its own loss.

A seed whose update or environment produces NaN/inf stops alone (``failed``, its last good
checkpoint kept) while the others go on. A signal stops all of them at the next update
boundary with a checkpoint each; run again, each resumes from its own checkpoint — alone
or batched again (a seed's checkpoint has the format of a run trained alone). Runs whose
checkpoints are at different updates are trained in separate groups.

Seed-batched: every built-in algorithm (``seed_batched``) with every built-in policy
(``stack.check_stackable``); a user's own module is refused with a clear error (use
``hydra/launcher=local``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pgrun.accelerate import attach
from pgrun.algos import ALGORITHMS
from pgrun.config import ConfigError, validate
from pgrun.envs import make_vec_env
from pgrun.envs.extras import check_env_dependencies, env_id_of
from pgrun.lock import RunLock
from pgrun.policies import action_bounds, build_policy
from pgrun.resume import plan_run
from pgrun.rollout import Actor, Batch
from pgrun.signals import StopFlag, stop_on_signals
from pgrun.stack import SeedStack, check_stackable
from pgrun.train import NonFiniteError, _Run

log = logging.getLogger("pgrun")

# the stack's gradients are strided views of the K × n gradient buffer, by design
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")


def without_seed(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "seed"}


def check_batchable(cfg: DictConfig) -> None:
    """A ConfigError unless the configuration can be seed-batched."""
    algo_cls = ALGORITHMS[cfg.algo.name]
    if not algo_cls.seed_batched:
        names = ", ".join(n for n, a in ALGORITHMS.items() if a.seed_batched)
        raise ConfigError(f"seed batching (hydra/launcher=batched) supports algo={names}; "
                          f"algo={cfg.algo.name} is not supported yet. Run this sweep with "
                          "hydra/launcher=local (one process per seed) instead.")
    envs = make_vec_env(cfg.env, 1)
    try:
        check_stackable(build_policy(cfg.policy, envs.single_observation_space,
                                     envs.single_action_space, algo_cls.uses_value))
    finally:
        envs.close()


def train_seeds(cfgs: list[DictConfig], run_dirs: list[Path], stop: StopFlag | None = None,
                on_starts=None) -> list[dict | Exception]:
    """Train the runs ``cfgs`` (one configuration, different seeds) into ``run_dirs``
    together; returns, per run, its summary or the exception that stopped it (a
    ConfigError for a refusal, which leaves its folder as it was). ``on_starts[i]`` is run
    i's ``on_start`` (``train.train``)."""
    results: list[dict | Exception | None] = [None] * len(cfgs)
    on_starts = on_starts or [None] * len(cfgs)
    configs = []
    for i, cfg in enumerate(cfgs):
        try:
            validate(cfg)
            check_env_dependencies(env_id_of(cfg.env))
        except ConfigError as err:
            results[i] = err
        configs.append(OmegaConf.to_container(cfg, resolve=True))
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    if any(without_seed(configs[i]) != without_seed(configs[todo[0]]) for i in todo):
        raise ValueError("train_seeds: the runs differ in more than their seed")
    try:
        check_batchable(cfgs[todo[0]])
    except ConfigError as err:
        return [r if r is not None else err for r in results]
    with contextlib.ExitStack() as locks:
        groups: dict[int, list[tuple[int, object]]] = {}
        for i in todo:
            try:
                plan = plan_run(run_dirs[i], configs[i], cfgs[i].resume)
                if plan.action != "skip":
                    Path(run_dirs[i]).mkdir(parents=True, exist_ok=True)
                    locks.enter_context(RunLock(Path(run_dirs[i])))
                    plan = plan_run(run_dirs[i], configs[i], cfgs[i].resume)
            except ConfigError as err:
                results[i] = err
                continue
            if plan.action == "skip":
                log.info("%s: already complete with this configuration; nothing to do",
                         run_dirs[i])
                results[i] = plan.summary
                continue
            start = plan.checkpoint["update"] if plan.checkpoint is not None else 0
            groups.setdefault(start, []).append((i, plan))
        for members in groups.values():
            if stop is None:
                with stop_on_signals() as flag:
                    out = _train_group(cfgs, run_dirs, configs, members, flag, on_starts)
            else:
                out = _train_group(cfgs, run_dirs, configs, members, stop, on_starts)
            for (i, _), result in zip(members, out, strict=True):
                results[i] = result
    return results


def _train_group(cfgs, run_dirs, configs, members, stop, on_starts) -> list[dict | Exception]:
    runs = [_Run(cfgs[i], Path(run_dirs[i]), configs[i], plan, stop, on_starts[i])
            for i, plan in members]
    try:
        return SeedBatch(runs).run()
    finally:
        for r in runs:
            r.close()


class _RowOptimizer:
    """Seed k's part of a seed-stacked optimizer (one parameter tensor per seed), with
    the ``state_dict`` format of the optimizer of a run trained alone."""

    def __init__(self, opt: torch.optim.Optimizer, k: int):
        self.opt, self.k = opt, k
        self.param = opt.param_groups[k]["params"][0]

    def state_dict(self) -> dict:
        group = {key: v for key, v in self.opt.param_groups[self.k].items() if key != "params"}
        state = self.opt.state.get(self.param)
        return {"state": {0: {n: v.clone() for n, v in state.items()}} if state else {},
                "param_groups": [group | {"params": [0]}]}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict["state"].get(0)
        if state:
            self.opt.state[self.param] = {
                n: v.to(self.param.device) if torch.is_tensor(v) else v for n, v in state.items()}


class _SeedAlgorithm:
    """What a seed's ``_Run`` sees of the K seeds' algorithm: its optimizers' state."""

    def __init__(self, algo, k: int):
        self.algo, self.k = algo, k

    def optimizers(self) -> dict[str, _RowOptimizer]:
        return {name: _RowOptimizer(opt, self.k) for name, opt in self.algo.optimizers().items()}

    def state_dict(self) -> dict:
        """Seed k's part of the algorithm's state (per-seed NumPy arrays sliced)."""
        return {key: float(v[self.k]) if isinstance(v, np.ndarray) and v.ndim else v
                for key, v in self.algo.state_dict().items()}


class _SeedRngs:
    """The K seeds' action generators as one: a draw of shape (K, …) stacks each seed's
    own draw, so seed k's actions are those it would sample alone. Seeds not in ``only``
    draw nothing (0.5 in their place): their actions are not used."""

    def __init__(self, generators: list[np.random.Generator], only: np.ndarray | None = None):
        self.generators, self.only = generators, only

    def _draw(self, draw):
        if self.only is None:
            return np.stack([draw(g) for g in self.generators])
        out = None
        for k in np.flatnonzero(self.only):
            x = draw(self.generators[k])
            if out is None:
                out = np.full((len(self.generators), *x.shape), 0.5, dtype=x.dtype)
            out[k] = x
        return out

    def random(self, shape):
        return self._draw(lambda g: g.random(shape[1:]))

    def standard_normal(self, shape, dtype=np.float64):
        return self._draw(lambda g: g.standard_normal(shape[1:], dtype=dtype))


class SeedBatch:
    """K seeds' ``_Run``\\ s stepped together (module docstring)."""

    def __init__(self, runs: list[_Run]):
        self.runs = runs
        self.results: list[dict | Exception | None] = [None] * len(runs)

    def _setup(self) -> None:
        self.generators = []
        for r in self.runs:
            r._setup()  # seeds the global generators as the run alone would, then builds
            gen = torch.Generator()
            gen.set_state(torch.get_rng_state())  # where the run's minibatch shuffles go on
            self.generators.append(gen)
        first = self.runs[0]
        cfg = first.cfg
        self.stack = SeedStack([r.policy for r in self.runs])
        algo_cls = ALGORITHMS[cfg.algo.name]
        accelerate = cfg.get("accelerate", True) and not algo_cls.second_order
        path = attach(self.stack, accelerate)
        self.algo = algo_cls(cfg.algo, self.stack, cfg.env.num_envs, first.device,
                             generators=self.generators)
        states = [r.algo.state_dict() for r in self.runs]  # each restored as alone
        self.algo.load_state_dict({key: np.array([s[key] for s in states])
                                   for key in states[0]})
        for k, r in enumerate(self.runs):
            seed_algo = _SeedAlgorithm(self.algo, k)
            for name, opt in r.algo.optimizers().items():  # restored from a checkpoint
                seed_algo.optimizers()[name].load_state_dict(opt.state_dict())
            r.algo = seed_algo
            attach(r.policy, accelerate)  # evaluation reads the rebound rows
            r.update_path = f"seed-batched ({len(self.runs)} seeds, {path})"
        envs = first.envs
        self.actor = Actor(self.stack, envs.single_observation_space, envs.single_action_space,
                           action_bounds(cfg.policy, envs.single_action_space), first.device)
        self.rngs = _SeedRngs([r.collector.rng for r in self.runs])
        self.live = np.ones(len(self.runs), dtype=bool)
        self.last_batches: list[Batch] = [None] * len(self.runs)  # type: ignore[list-item]

    def run(self) -> list[dict | Exception]:
        try:
            self._setup()
            self._loop()
        except ConfigError as err:
            return [err] * len(self.runs)
        except Exception as err:
            for k, r in enumerate(self.runs):
                if self.results[k] is None:
                    r._record_failure(err)
            raise
        return self.results

    def _fail(self, k: int, err: Exception) -> None:
        self.runs[k]._record_failure(err)
        self.runs[k].log.error("%s: %s", self.runs[k].title, err)
        self.results[k] = err
        self.live[k] = False
        self.runs[k].close()

    def _timed(self, name: str, t0: float, seeds=None) -> None:
        """Charge the time since t0 to phase ``name`` of ``seeds`` (every live run)."""
        dt = time.perf_counter() - t0
        for k in np.flatnonzero(self.live) if seeds is None else seeds:
            totals = self.runs[k].watch.totals
            totals[name] = totals.get(name, 0.0) + dt

    def _evaluate(self, seeds: list[int]) -> None:
        """Evaluate ``seeds`` together, as each would alone (``_Run.evaluation``), acting
        for all of them in one forward pass of the stack per step."""
        if not seeds:
            return
        t0 = time.perf_counter()
        evals = {k: self.runs[k].evaluation() for k in seeds}
        deterministic = self.runs[0].cfg.eval.deterministic
        while True:
            going = np.array([k in evals and evals[k].running for k in range(len(self.runs))])
            if not going.any():
                break
            obs = {k: evals[k].policy_obs() for k in np.flatnonzero(going)}
            fill = next(iter(obs.values()))
            stacked = np.stack([obs.get(k, fill) for k in range(len(self.runs))])
            if deterministic:
                actions = self.actor.mode(stacked)
            else:
                rngs = _SeedRngs([evals[k].rng if k in evals else None
                                  for k in range(len(self.runs))], going)
                actions = self.actor.act(stacked, rngs)[0]
            for k in obs:
                evals[k].step(actions[k])
        self._timed("eval", t0, seeds)
        for k in seeds:
            self.runs[k].record_eval(*evals[k].result())

    def _collect(self) -> list[Batch]:
        """The next batch of every live seed, acting for the K seeds in one forward pass:
        ``num_steps`` steps, or whole episodes (``Algorithm.episodes``) in lockstep."""
        collectors = [r.collector for r in self.runs]
        live = np.flatnonzero(self.live)
        plans = {k: self.algo.episodes(collectors[k]) for k in live}
        if all(plan is None for plan in plans.values()):
            return self._collect_steps(collectors, live, self.runs[0].cfg.algo.num_steps)
        for k in live:
            collectors[k].begin_episodes(*plans[k])
        going = np.array([k in plans and collectors[k].collecting() for k in range(len(self.runs))])
        while going.any():
            obs = np.stack([c.policy_obs() for c in collectors])
            actions, logp, value = self.actor.act(obs, _SeedRngs(self.rngs.generators, going))
            for k in np.flatnonzero(going):
                collectors[k].advance_episodes(obs[k], actions[k], logp[k],
                                               None if value is None else value[k])
                going[k] = collectors[k].collecting()
        for k in live:
            self.last_batches[k] = collectors[k].end_episodes()
        return self.last_batches

    def _collect_steps(self, collectors, live, num_steps: int) -> list[Batch]:
        """``num_steps`` steps of every live seed's envs (a stopped seed's actions, from
        its last observations, are drawn and ignored)."""
        for k in live:
            collectors[k].begin_steps(num_steps)
        for t in range(num_steps):
            obs = np.stack([c.policy_obs() for c in collectors])
            actions, logp, value = self.actor.act(obs, self.rngs)
            for k in live:
                collectors[k].advance(t, None, obs[k], actions[k], logp[k],
                                      None if value is None else value[k])
        last = None
        if collectors[0].with_value:
            last = self.actor.value(np.stack([c.policy_obs() for c in collectors]))
        for k in live:
            collectors[k].account(num_steps)
            self.last_batches[k] = collectors[k].batch(num_steps,
                                                       None if last is None else last[k])
        return self.last_batches

    def _loop(self) -> None:
        for k, r in enumerate(self.runs):
            r.log_start()
            stopped = r.stop_before_start()
            if stopped is not None:
                self.results[k], self.live[k] = stopped, False
        while self.live.any():
            self._evaluate([k for k in np.flatnonzero(self.live) if self.runs[k].eval_due()])
            t0 = time.perf_counter()
            batches = self._collect()
            self._timed("rollout", t0)
            for k, r in enumerate(self.runs):
                if self.live[k]:
                    try:
                        r.check_batch(batches[k])
                    except NonFiniteError as err:
                        self._fail(k, err)
            if not self.live.any():
                break
            progress = np.array([r.state["step"] / r.total for r in self.runs])  # per seed
            self.algo.live = self.live.copy()
            t0 = time.perf_counter()
            stats = self.algo.update(batches, progress=progress)  # stopped seeds take no step
            self._timed("update", t0)
            done = []
            for k, r in enumerate(self.runs):
                if not self.live[k]:
                    continue
                try:
                    stopped = r.after_update(batches[k].num_steps, seed_stats(stats, k))
                except NonFiniteError as err:
                    self._fail(k, err)
                    continue
                if stopped is not None:
                    self.results[k] = stopped
                    self.live[k] = False
                elif r.state["step"] >= r.total:
                    done.append(k)
            self._evaluate([k for k in done if self.runs[k].final_eval_due()])
            for k in done:
                self.results[k] = self.runs[k].finish()
                self.live[k] = False


def seed_stats(stats: dict, k: int) -> dict:
    """Seed k's figures from an update's per-seed ones (NumPy arrays) and shared ones."""
    out = {}
    for key, value in stats.items():
        if isinstance(value, np.ndarray) and value.ndim:
            value = value[k]
            value = int(value) if key == "grad_steps" else float(value)
        out[key] = value
    return out
