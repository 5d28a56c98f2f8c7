"""``pgrun tune [key=value ...]``: a hyperparameter search with Optuna (TPE sampler, median
pruner), each trial scored over several seeds (``trial.py``), the study in SQLite.

The study folder (``study=``, default ``outputs/tune/<algo>_<env>``) holds ``study.db``
(Optuna's RDB storage), ``runs/`` (every trial's pgrun run folders: ``pgrun compare``
reads it), ``logs/`` and, at the end, ``best.yaml``, ``trials.csv`` and the plots
(``outputs.py``). Running the same command again continues the study up to ``trials``
trials in all: a trial that was running when the search was stopped or killed is marked
failed (``interrupted``) and run again with the same params, its runs resuming from their
checkpoints. One search writes a study at a time (a lock on the folder).

Every check (the settings, the search space against the composed config, a study of
other settings in the folder) runs before anything is written: a refused command leaves
no trace.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pgrun.config import ConfigError, run_name
from pgrun.tune import space
from pgrun.tune.trial import OBJECTIVES, Interrupted, RunFailed, TrialRunner, trial_value

USAGE = """Usage: pgrun tune [tune settings] [pgrun train overrides]

Searches hyperparameters with Optuna (TPE, median pruning on eval.csv); each trial trains
`seeds` seeds and scores the IQM over them. Search space: conf/tune/<algo>.yaml, overlaid by
conf/tune/<algo>_<env>.yaml when it exists, or space=FILE.

Tune settings (defaults):
  trials=20            trials in the study, in all (a rerun continues up to this many)
  seeds=3              seeds per trial (0 … seeds−1, the same in every trial)
  objective=iqm_final  iqm_final: IQM of the final return; auc: IQM of the normalized AUC
  n_jobs=<cores>       trials at once (each runs one pgrun train process at a time)
  study=DIR            study folder (default outputs/tune/<algo>_<env>)
  space=FILE           search-space YAML instead of conf/tune/
  pruner=median        median | none
  startup_trials=5     trials finished before the pruner prunes any
  warmup_steps=0       no pruning before the first seed reaches this step
  sampler_seed=0       TPE's seed
  baseline=true        trial 0 = the config's own values (when inside the space)

Everything else is passed to each run (algo=, env=, total_steps=, eval.interval=, …).

Example:
  pgrun tune algo=ppo env=CartPole-v1 trials=50 seeds=3
"""

DEFAULTS: dict[str, Any] = {"trials": 20, "seeds": 3, "objective": "iqm_final", "n_jobs": None,
                            "study": None, "space": None, "pruner": "median",
                            "startup_trials": 5, "warmup_steps": 0, "sampler_seed": 0,
                            "baseline": True}
INTS = {"trials": 1, "seeds": 1, "n_jobs": 1, "startup_trials": 0, "warmup_steps": 0,
        "sampler_seed": 0}
"""Integer settings and their least value."""
PRUNERS = ("median", "none")
STUDY_NAME = "pgrun"
DB = "study.db"


@dataclass
class Plan:
    """A checked tune command."""

    settings: dict[str, Any]
    overrides: list[str]  # passed to every run
    cfg: DictConfig  # the composed config of the runs, before the searched params
    params: dict[str, dict]
    space_files: list[Path]
    algo: str
    env: str
    study_dir: Path
    conf_dir: Path
    seeds: list[int] = field(default_factory=list)

    @property
    def objective(self) -> str:
        return self.settings["objective"]

    @property
    def total_steps(self) -> int:
        return int(self.cfg.total_steps)

    def fingerprint(self) -> dict:
        """What must match for a rerun to continue the study."""
        return {"overrides": sorted(self.overrides), "params": self.params,
                "seeds": len(self.seeds), "objective": self.objective}


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (macOS)
        return os.cpu_count() or 1


def parse(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Tune settings (checked) and the overrides for the runs; ConfigError on a bad one."""
    settings, overrides, problems = dict(DEFAULTS), [], []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if key in DEFAULTS and eq:
            settings[key] = value
        elif key == "seed" and eq:
            problems.append(f"{arg}: tune picks the seeds (0 … seeds−1); set seeds=K")
        elif arg.startswith("-") or key.lstrip("+~").startswith("hydra"):
            problems.append(f"{arg}: not a tune setting; tune chooses each run's folder and "
                            "runs them itself (see pgrun tune --help)")
        elif not eq and not key.startswith("~"):
            problems.append(f"{arg}: expected key=value")
        else:
            overrides.append(arg)
    for key, least in INTS.items():
        value = settings[key]
        if value is None or isinstance(value, int):
            continue
        try:
            settings[key] = int(value)
            ok = settings[key] >= least
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"{key}={value}: must be an integer ≥ {least}")
    if settings["objective"] not in OBJECTIVES:
        problems.append(f"objective={settings['objective']}: must be one of {', '.join(OBJECTIVES)}")
    if settings["pruner"] not in PRUNERS:
        problems.append(f"pruner={settings['pruner']}: must be one of {', '.join(PRUNERS)}")
    if isinstance(settings["baseline"], str):
        if settings["baseline"].lower() not in ("true", "false"):
            problems.append(f"baseline={settings['baseline']}: must be true or false")
        settings["baseline"] = settings["baseline"].lower() == "true"
    if problems:
        raise ConfigError("Invalid tune command:\n  " + "\n  ".join(problems))
    settings["n_jobs"] = settings["n_jobs"] or cores()
    return settings, overrides


def compose(conf_dir: Path, overrides: list[str]) -> DictConfig:
    """The config ``pgrun train <overrides>`` would run, without running it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from pgrun.config import register

    register()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = hydra_compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"the overrides for the runs do not compose: {err}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def prepare(argv: list[str], conf_dir: Path) -> Plan:
    """Every check before anything is written."""
    from pgrun.sweep import preflight_env

    settings, overrides = parse(argv)
    cfg = compose(conf_dir, overrides)
    preflight_env(cfg)
    if cfg.eval.interval <= 0:
        raise ConfigError("eval.interval=0: tune scores and prunes trials by their evaluations; "
                          "set eval.interval to a step count > 0.")
    algo, env = cfg.algo.name, run_name("generic", str(cfg.env.id))
    files = [Path(settings["space"])] if settings["space"] else space.space_files(conf_dir, algo, env)
    params = space.load(files)
    overridden = {o.lstrip("+").split("=", 1)[0] for o in overrides}
    clash = sorted(overridden & set(params))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: set on the command line and searched by "
                          f"{', '.join(map(str, files))}; drop one of them.")
    space.check_against(params, cfg)
    study_dir = Path(settings["study"] or Path("outputs") / "tune" / f"{algo}_{env}")
    return Plan(settings, overrides, cfg, params, files, algo, env, study_dir, conf_dir,
                list(range(settings["seeds"])))


# ------------------------------------------------------------------ the study

def storage(study_dir: Path):
    import optuna

    url = f"sqlite:///{(study_dir / DB).resolve()}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def existing_study(plan: Plan):
    """The study in the folder (None if none); ConfigError when its settings differ."""
    import optuna

    if not (plan.study_dir / DB).is_file():
        if plan.study_dir.exists() and not plan.study_dir.is_dir():
            raise ConfigError(f"study={plan.study_dir}: a file of that name exists; "
                              "choose another folder.")
        return None
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage(plan.study_dir))
    except Exception as err:  # noqa: BLE001 (not a study of pgrun's, or not a database)
        raise ConfigError(f"{plan.study_dir / DB}: not a pgrun tune study ({err}); choose "
                          "another study= folder.") from None
    stored = study.user_attrs.get("pgrun")
    if stored != plan.fingerprint():
        diff = [k for k in plan.fingerprint() if (stored or {}).get(k) != plan.fingerprint()[k]]
        raise ConfigError(
            f"{plan.study_dir} holds a study with other settings ({', '.join(diff) or 'all'} "
            f"differ: it has {stored}). Rerun it with its own settings to continue it, or "
            "choose another study= folder.")
    return study


def create_study(plan: Plan, existing):
    import optuna

    pruner = (optuna.pruners.MedianPruner(n_startup_trials=plan.settings["startup_trials"],
                                          n_warmup_steps=plan.settings["warmup_steps"])
              if plan.settings["pruner"] == "median" else optuna.pruners.NopPruner())
    sampler = optuna.samplers.TPESampler(seed=plan.settings["sampler_seed"])
    if existing is not None:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage(plan.study_dir),
                                 sampler=sampler, pruner=pruner), []
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage(plan.study_dir),
                                direction="maximize", sampler=sampler, pruner=pruner)
    study.set_user_attr("pgrun", plan.fingerprint())
    notes = []
    if plan.settings["baseline"]:
        defaults = {k: _plain(OmegaConf.select(plan.cfg, k)) for k in plan.params}
        outside = [f"{k}={v!r}" for k, v in defaults.items() if not space.contains(plan.params[k], v)]
        if outside:
            notes.append(f"no baseline trial: {', '.join(outside)} lie outside the space")
        else:
            study.enqueue_trial({k: space.encode(v) for k, v in defaults.items()},
                                user_attrs={"baseline": True})
    return study, notes


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def recover(study) -> list[int]:
    """Trials left running by a stopped or killed search: marked failed (user attribute
    ``interrupted``) and queued again with their params; returns their numbers."""
    from optuna.trial import TrialState

    st = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        st.set_trial_user_attr(t._trial_id, "interrupted", True)
        st.set_trial_state_values(t._trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    replaced = {t.user_attrs.get("rerun_of") for t in trials}
    again = []
    for t in trials:
        if t.state == TrialState.FAIL and t.user_attrs.get("interrupted") and t.params \
                and t.number not in replaced:
            attrs = {"rerun_of": t.number, "runs_of": t.user_attrs.get("runs_of", t.number),
                     "baseline": t.user_attrs.get("baseline", False)}
            study.enqueue_trial(t.params, user_attrs=attrs)
            again.append(t.number)
    return again


def done_count(study) -> int:
    """Trials that count towards ``trials``: complete, pruned, or failed on their own."""
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))
        for t in study.get_trials(deepcopy=False))


# ------------------------------------------------------------------ the search

class Search:
    """The objective and the per-trial report line."""

    def __init__(self, plan: Plan):
        self.plan, self.stopping = plan, threading.Event()
        self.signum: int | None = None

    def objective(self, trial) -> float:
        plan = self.plan
        values = space.suggest(trial, plan.params)
        folder = trial.user_attrs.get("runs_of", trial.number)
        runner = TrialRunner(trial, plan.overrides, [space.override(k, v) for k, v in values.items()],
                             plan.study_dir / "runs", plan.study_dir / "logs", f"t{folder:04d}",
                             plan.seeds, plan.objective, plan.total_steps,
                             int(plan.cfg.eval.interval), self.stopping)
        if self.stopping.is_set():
            trial.set_user_attr("interrupted", True)
            return float("nan")
        try:
            scores = runner.run()
        except Interrupted:
            trial.set_user_attr("interrupted", True)
            return float("nan")
        except RunFailed as err:
            trial.set_user_attr("error", str(err))
            return float("nan")
        value, low, high = trial_value(scores)
        trial.set_user_attr("scores", [round(s, 4) for s in scores])
        trial.set_user_attr("ci", [low, high] if low == low else None)
        return value

    def after_trial(self, study, trial) -> None:
        if self.stopping.is_set():
            study.stop()
        state = trial.state.name.lower()
        params = " ".join(space.override(k, space.decode(v)) for k, v in trial.params.items())
        if trial.user_attrs.get("interrupted"):
            what = "interrupted (run again on resume)"
        elif state == "complete":
            what = f"{self.plan.objective} {trial.value:.4g} (seeds: {trial.user_attrs.get('scores')})"
        elif state == "pruned":
            what = f"pruned ({trial.user_attrs.get('pruned_at', '')})"
        else:
            what = f"failed: {trial.user_attrs.get('error', '')}"
        tag = " [baseline]" if trial.user_attrs.get("baseline") else ""
        print(f"pgrun tune: trial {trial.number}{tag}: {what}; {params}", flush=True)

    def on_signal(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            print(f"pgrun tune: {signal.Signals(signum).name}: stopping the running trials "
                  "(their runs checkpoint); run the same command again to continue.",
                  file=sys.stderr, flush=True)
        self.stopping.set()


def run(plan: Plan) -> int:
    import optuna

    from pgrun.lock import RunLock
    from pgrun.runfolder import RunFolderError
    from pgrun.tune import outputs

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    existing = existing_study(plan)
    try:
        plan.study_dir.mkdir(parents=True, exist_ok=True)  # every check passed
    except OSError as err:
        raise ConfigError(f"study={plan.study_dir}: cannot create the folder ({err.strerror}); "
                          "choose a folder you can write to.") from None
    lock = RunLock(plan.study_dir)
    try:
        lock.__enter__()
    except RunFolderError as err:
        raise ConfigError(f"another pgrun tune is running this study: {err}") from None
    try:
        study, notes = create_study(plan, existing)
        for note in notes:
            print(f"pgrun tune: {note}", flush=True)
        again = recover(study)
        if again:
            print(f"pgrun tune: trials {', '.join(map(str, again))} were interrupted: running "
                  "them again (their runs resume from their checkpoints)", flush=True)
        remaining = plan.settings["trials"] - done_count(study)
        search = Search(plan)
        print(f"pgrun tune: {plan.study_dir}: {done_count(study)} of {plan.settings['trials']} "
              f"trials done; {max(remaining, 0)} to run, {min(plan.settings['n_jobs'], max(remaining, 1))} "
              f"at a time; {len(plan.seeds)} seeds × {plan.total_steps:,} steps each; search "
              f"space {', '.join(map(str, plan.space_files))}", flush=True)
        previous = {s: signal.signal(s, search.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if remaining > 0:
                study.optimize(search.objective, n_trials=remaining,
                               n_jobs=min(plan.settings["n_jobs"], remaining),
                               callbacks=[search.after_trial], gc_after_trial=False)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return finish(plan, study, search, outputs)
    finally:
        lock.__exit__(None, None, None)


def finish(plan: Plan, study, search: Search, outputs) -> int:
    """Write the results; the exit status (128 + signal when the search was stopped)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    folder = plan.study_dir
    if complete:
        best = study.best_trial
        outputs.best_yaml(folder / "best.yaml", best, plan)
        outputs.trials_csv(study, folder / "trials.csv")
        for note in outputs.plots(study, folder):
            print(f"pgrun tune: {note}", flush=True)
        ci = best.user_attrs.get("ci")
        ci_text = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        print(f"pgrun tune: best: trial {best.number}, {plan.objective} {best.value:.4g}{ci_text}: "
              + " ".join(space.override(k, space.decode(v)) for k, v in best.params.items())
              + f"\n  {folder / 'best.yaml'} (a conf/hparams preset), trials.csv, history.png, "
              f"importance.png, intermediate.png\n  the trials' runs: pgrun compare {folder / 'runs'}",
              flush=True)
    if search.signum is not None:
        print(f"pgrun tune: stopped with {done_count(study)} of {plan.settings['trials']} trials "
              "done; run the same command again to continue.", file=sys.stderr, flush=True)
        return 128 + search.signum
    if not complete:
        print("pgrun tune: no trial completed (see trials above and the logs in "
              f"{folder / 'logs'}).", file=sys.stderr, flush=True)
        return 1
    return 0
