"""``pgrun`` command line: dispatches ``pgrun train`` to the Hydra app, and compare, eval
and tune to their modules."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pgrun import __version__, preflight  # preflight: its clock starts before Hydra's folders
from pgrun.config import register, register_resolvers

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

USAGE = f"""pgrun {__version__}: policy-gradient experiments on gymnasium environments.

Usage:
  pgrun train [key=value ...]     train one agent (Hydra overrides; --help for groups)
  pgrun train -m key=a,b ...      a sweep (Hydra multirun), e.g. seed='range(10)'
  pgrun compare PATH... [options] compare runs: statistics over seeds, curves (--help)
  pgrun tune [key=value ...]      search hyperparameters with Optuna, k seeds per trial
                                  (pgrun[tune]; --help)
  pgrun eval RUN_DIR [key=value]  evaluate a run's checkpoint: episodes=N deterministic=BOOL
                                  video=true (pgrun[video]) seed=N; --trust to run the code
                                  its config names (env.entry_point, env.id=module:Env-v0)

Examples:
  pgrun train                                  PPO on CartPole-v1 with the tuned preset
  pgrun train algo=reinforce env=Acrobot-v1 seed=3
  pgrun train -m algo=reinforce,vpg,ppo seed='range(10)'
  pgrun compare outputs/sweeps/<date>          report.md, summary.csv, curves.png
  pgrun train -m hydra/launcher=local seed='range(10)'   the sweep on every core
  pgrun eval outputs/runs/<run> episodes=20 video=true
  pgrun tune algo=ppo env=CartPole-v1 trials=50 seeds=3   study in outputs/tune/ppo_CartPole-v1
"""

register_resolvers()  # where Hydra's launchers run a job, this module is all they import


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _train_app(cfg: DictConfig) -> float | None:
    from pgrun.sweep import run_train_task  # exit codes, resume, sweep failures: see there

    return run_train_task(cfg)


def unknown_env_presets(overrides: list[str]) -> str | None:
    """A message for ``env=NAME`` (or a sweep's ``env=a,b``) naming no conf/env preset:
    Hydra would say only "Could not find 'env/NAME'"."""
    presets = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))
    for arg in overrides:
        key, eq, value = arg.partition("=")
        if key != "env" or not eq or value.startswith(("choice(", "glob(", "range(")):
            continue
        missing = [v.strip() for v in value.split(",") if v.strip() not in presets]
        if missing:
            name = missing[0]
            return (f"env={name}: there is no preset conf/env/{name}.yaml (presets: "
                    f"{', '.join(presets)}). Any registered gymnasium environment runs with "
                    f"the generic defaults: pgrun train env=generic env.id={name} (a "
                    "package's env: env.id=package:Id; a class or function: env=generic "
                    "env.entry_point=module:Name).")
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"pgrun {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        if not CONF_DIR.is_dir():
            print(f"pgrun: config folder {CONF_DIR} not found; install pgrun from its checkout "
                  "(pip install -e .).", file=sys.stderr)
            return 2
        unknown = unknown_env_presets(rest)
        if unknown:
            print(f"pgrun: {unknown}", file=sys.stderr)
            return 2
        register()  # the schemas (and torch) only for the command that composes them
        sys.argv = ["pgrun train", *rest]
        try:
            _train_app()
        except SystemExit as done:  # Hydra exits 1 on a composition error: a config error
            if done.code == 1 and not preflight.composed:
                raise SystemExit(2) from None
            raise
        from pgrun.sweep import failed_runs

        return 1 if failed_runs() else 0
    if command == "eval":
        from pgrun.evalcmd import main as evaluate  # torch, gymnasium only here

        return evaluate(rest)
    if command == "tune":
        from pgrun.tune import main as tune  # optuna only here

        return tune(rest)
    if command == "compare":
        from pgrun.compare import main as compare  # pandas, scipy, matplotlib only here

        return compare(rest)
    print(f"pgrun: unknown command {command!r}; available: train, compare, eval, tune.\n\n{USAGE}", file=sys.stderr)
    return 2
