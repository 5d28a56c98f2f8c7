"""pgrun's Ray launcher (``hydra/launcher=ray_cpu``): Hydra's Ray launcher, except that a
run whose Ray worker dies (killed, out of memory, its node lost) does not end the sweep.

Hydra's launcher collects the runs with ``ray.get`` in order, so the first lost run raised
Ray's error with a traceback, and the runs still in flight were stopped with the command.
Here the other runs go on; the lost one is returned as a run without a result, and pgrun's
end-of-sweep report (``pgrun/sweep.py``) lists it from its folder as unfinished: running
the sweep again resumes it from its checkpoint. Lives in Hydra's plugin namespace because
Hydra instantiates launchers only from there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

try:
    from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
except ImportError:  # no ray extra: no launcher (Hydra imports every module of its plugins)
    RayLauncher = None

log = logging.getLogger(__name__)

LOST = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError",
        "LocalRayletDiedError")
"""Ray's errors for a task whose process or node went away (not an error the run raised)."""


if RayLauncher is not None:

    class PgrunRayLauncher(RayLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
            import ray
            from hydra.core.singleton import Singleton
            from hydra.core.utils import (
                JobReturn,
                JobStatus,
                configure_log,
                filter_overrides,
                setup_globals,
            )
            from hydra_plugins.hydra_ray_launcher._launcher_util import (
                launch_job_on_ray,
                start_ray,
            )
            from omegaconf import open_dict

            setup_globals()  # as hydra_ray_launcher._core.launch, up to collecting the runs
            config, context = self.config, self.hydra_context
            configure_log(config.hydra.hydra_logging, config.hydra.verbose)
            sweep_dir = Path(str(config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            log.info("Ray Launcher is launching %d jobs, sweep output dir: %s",
                     len(job_overrides), sweep_dir)
            self.ray_cfg.init.setdefault("object_store_memory", 78643200)
            start_ray(self.ray_cfg.init)
            refs = []
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
                with open_dict(sweep_config):
                    sweep_config.hydra.job.id = f"job_id_for_{idx}"
                    sweep_config.hydra.job.num = idx
                refs.append(launch_job_on_ray(context, self.ray_cfg.remote, sweep_config,
                                              self.task_function, Singleton.get_state()))
            lost = tuple(getattr(ray.exceptions, name) for name in LOST)
            results = []
            for overrides, ref in zip(job_overrides, refs, strict=True):
                try:
                    results.append(ray.get(ref))
                except lost as err:
                    log.error("Ray lost the run %s: %s: %s", " ".join(filter_overrides(overrides)),
                              type(err).__name__, str(err).splitlines()[0])
                    results.append(JobReturn(overrides=list(overrides),
                                             status=JobStatus.COMPLETED))
            return results
