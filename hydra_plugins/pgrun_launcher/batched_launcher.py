"""``hydra/launcher=batched``: a sweep's seeds of one configuration trained together.

The jobs of a multirun that differ only in ``seed`` form a group; each group is cut into
chunks of up to ``seeds_per_process`` seeds (default: enough chunks to use ``n_jobs``
processes), and each chunk runs in one process (joblib's loky workers, one per core):
every job of the chunk goes through Hydra's ``run_job`` as usual — its config, output
folder, pgrun's checks and job note — and is then trained with the chunk's other seeds
by ``pgrun.batched.train_seeds``, each seed into its own run folder.

(Hydra loads launchers only from the ``hydra_plugins`` package, hence this module.)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def seed_groups(job_overrides: Sequence[Sequence[str]]) -> list[list[int]]:
    """Indices of the jobs grouped by their overrides other than ``seed=``, in order."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, overrides in enumerate(job_overrides):
        key = tuple(o for o in overrides if not o.split("=", 1)[0].lstrip("+~") == "seed")
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def chunks(groups: list[list[int]], n_jobs: int, per_process: int | None) -> list[list[int]]:
    """Each group cut into chunks of at most ``per_process`` jobs (default: the group
    spread over ``n_jobs`` processes)."""
    out = []
    for group in groups:
        size = per_process or math.ceil(len(group) / max(1, n_jobs))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def execute_chunk(jobs: list[tuple[int, Sequence[str]]], hydra_context: HydraContext,
                  config: DictConfig, task_function: TaskFunction,
                  singleton_state: dict[Any, Any]) -> list[JobReturn]:
    """Run a chunk's jobs through ``run_job`` (deferred), then train them together."""
    setup_globals()
    Singleton.set_state(singleton_state)
    from pgrun.sweep import deferring, train_deferred

    returns = []
    with deferring() as deferred:
        for idx, overrides in jobs:
            sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
                sweep_config.hydra.job.num = idx
            HydraConfig.instance().set_config(sweep_config)
            returns.append(run_job(hydra_context=hydra_context, config=sweep_config,
                                   task_function=task_function,
                                   job_dir_key="hydra.sweep.dir",
                                   job_subdir_key="hydra.sweep.subdir"))
    if deferred:
        by_dir = {str(job.run_dir): value
                  for job, value in zip(deferred, train_deferred(deferred), strict=True)}
        for ret in returns:
            if ret.working_dir in by_dir:
                ret.return_value = by_dir[ret.working_dir]
    return returns


class BatchedLauncher(Launcher):
    def __init__(self, n_jobs: int = -1, seeds_per_process: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.seeds_per_process = seeds_per_process
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        n_jobs = (os.cpu_count() or 1) if self.n_jobs in (-1, None) else int(self.n_jobs)
        if self.seeds_per_process is not None and int(self.seeds_per_process) < 1:
            raise ValueError(f"hydra.launcher.seeds_per_process={self.seeds_per_process}: "
                             "must be a positive number of seeds")
        parts = chunks(seed_groups(job_overrides), n_jobs, self.seeds_per_process)
        log.info("pgrun batched launcher: %d jobs as %d processes of up to %d seeds, %d at "
                 "a time", len(job_overrides), len(parts), max(map(len, parts)), n_jobs)
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
        work = [[(initial_job_idx + i, job_overrides[i]) for i in part] for part in parts]
        state = Singleton.get_state()
        if len(work) == 1 or n_jobs == 1:
            results = [execute_chunk(jobs, self.hydra_context, self.config,
                                     self.task_function, state) for jobs in work]
        else:
            results = Parallel(n_jobs=min(n_jobs, len(work)), backend="loky")(
                delayed(execute_chunk)(jobs, self.hydra_context, self.config,
                                       self.task_function, state) for jobs in work)
        by_index = {}
        for jobs, rets in zip(work, results, strict=True):
            for (idx, _), ret in zip(jobs, rets, strict=True):
                by_index[idx] = ret
        return [by_index[initial_job_idx + i] for i in range(len(job_overrides))]
