"""``pgrun eval RUN_DIR [episodes=N] [deterministic=BOOL] [video=BOOL] [seed=N] [--trust]``.

Loads the run's checkpoint (``weights_only``: no pickled code runs), refuses a config that
names code (an env entry point, a ``module:Env-v0`` id, ``env.wrappers``) unless ``--trust`` is given
(``trust.py``), rebuilds the agent and environment from the config saved in it, runs
evaluation episodes and prints the mean ± std return. By default it evaluates as the run
did (``eval.episodes``, ``eval.deterministic``, the run's evaluation seeds), so on a
complete run it reproduces the last row of eval.csv. ``video=true`` records every episode with gymnasium's
RecordVideo into ``RUN_DIR/videos/`` (needs ``pip install 'pgrun[video]'``: moviepy, and
pygame for the classic-control renderers).
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

from pgrun.config import ConfigError

USAGE = """Usage: pgrun eval RUN_DIR [episodes=N] [deterministic=true|false] [video=true] [seed=N] [--trust]

Evaluate the policy in RUN_DIR/checkpoint.pt on fresh episodes and print mean ± std return.
  episodes=N            episodes to run (default: the run's eval.episodes)
  deterministic=BOOL    greedy actions (true) or sampled (false) (default: the run's eval.deterministic)
  video=true            record the episodes into RUN_DIR/videos/ (pip install 'pgrun[video]')
  seed=N                first episode seed (default: the run's evaluation seeds)
  --trust               import and run the code the run's config names (env.entry_point,
                        env.id=module:Env-v0, env.wrappers' _target_s, policy.module);
                        without it such a run folder is refused
"""

_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


class EvalError(ConfigError):
    """A user-facing problem with ``pgrun eval``'s arguments or run folder."""


def parse_args(argv: list[str]) -> tuple[Path, dict]:
    run_dir, opts = None, {}
    for arg in argv:
        if arg == "--trust":
            opts["trust"] = True
            continue
        if arg.startswith("-"):
            raise EvalError(f"unknown flag {arg!r}; the only flag is --trust")
        if "=" not in arg:
            if run_dir is not None:
                raise EvalError(f"one RUN_DIR please, got {str(run_dir)!r} and {arg!r}")
            run_dir = Path(arg)
            continue
        key, value = arg.split("=", 1)
        if key in ("episodes", "seed"):
            try:
                opts[key] = int(value)
            except ValueError:
                raise EvalError(f"{key}={value!r}: must be an integer") from None
            if opts[key] < (1 if key == "episodes" else 0):
                raise EvalError(f"{key}={value}: must be ≥ {1 if key == 'episodes' else 0}")
        elif key in ("deterministic", "video"):
            if value.lower() not in _BOOLS:
                raise EvalError(f"{key}={value!r}: must be true or false")
            opts[key] = _BOOLS[value.lower()]
        else:
            raise EvalError(f"unknown option {key!r}; options: episodes, deterministic, video, seed")
    if run_dir is None:
        raise EvalError("which run? pgrun eval RUN_DIR (a folder with checkpoint.pt)")
    return run_dir, opts


def _check_video_extra() -> None:
    missing = [name for name in ("moviepy", "pygame") if importlib.util.find_spec(name) is None]
    if missing:
        raise EvalError(f"video=true needs {' and '.join(missing)} (gymnasium's RecordVideo "
                        "writes with moviepy; classic-control envs render with pygame): "
                        "pip install 'pgrun[video]'")


def evaluate_run(run_dir: Path, episodes: int | None = None, deterministic: bool | None = None,
                 video: bool = False, seed: int | None = None, trust: bool = False) -> dict:
    """Evaluate RUN_DIR's checkpoint; returns the figures (and the video folder). Code the
    saved config names is imported only with ``trust``."""
    from pgrun.runfolder import CHECKPOINT, load_checkpoint
    from pgrun.trust import check_trusted

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalError(f"{run_dir}: no such run folder")
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise EvalError(f"{run_dir} has no {CHECKPOINT}: the run was trained with "
                        "checkpoint.enabled=false or stopped before its first checkpoint "
                        "(checkpoint.every), or this is not a run folder")
    if video:
        _check_video_extra()

    import numpy as np
    from omegaconf import OmegaConf

    from pgrun.checkpoint import agent_state
    from pgrun.envs import EVAL_SEED_OFFSET, make_vec_env
    from pgrun.evaluate import evaluate
    from pgrun.policies import action_bounds, build_policy
    from pgrun.rollout import Actor

    ckpt = load_checkpoint(ckpt_path)
    check_trusted(ckpt["config"], f"The config saved in {ckpt_path}", trust=trust,
                  command=f"pgrun eval {shlex.quote(str(run_dir))} --trust")
    cfg = OmegaConf.create(ckpt["config"])
    from pgrun.envs.extras import check_env_dependencies, env_id_of

    check_env_dependencies(env_id_of(cfg.env))
    episodes = episodes if episodes is not None else int(cfg.eval.episodes)
    deterministic = deterministic if deterministic is not None else bool(cfg.eval.deterministic)
    seed = seed if seed is not None else int(cfg.seed) + EVAL_SEED_OFFSET
    video_dir, prefix = run_dir / "videos", ""
    if video:
        prefix = f"step{int(ckpt['step'])}-seed{seed}-{'greedy' if deterministic else 'sampled'}"
        envs = _video_env(cfg.env, video_dir, name_prefix=prefix)
    else:
        envs = make_vec_env(cfg.env, min(int(cfg.eval.num_envs), episodes))
    try:
        state = agent_state(ckpt)
        from pgrun.algos import ALGORITHMS

        algo = ALGORITHMS.get(cfg.algo.name)  # a critic as the run had it (its algorithm's)
        with_value = algo.uses_value if algo is not None else any(
            k.startswith("v_out.") for k in state)
        obs_space, act_space = envs.single_observation_space, envs.single_action_space
        policy = build_policy(cfg.policy, obs_space, act_space, with_value=with_value)
        try:
            policy.load_state_dict(state)
        except RuntimeError as err:
            raise EvalError(f"{ckpt_path}: its weights do not fit the policy its config "
                            f"describes ({str(err).splitlines()[0]})") from None
        actor = Actor(policy, obs_space, act_space, action_bounds(cfg.policy, act_space))
        returns, lengths = evaluate(actor, envs, episodes, seed=seed, deterministic=deterministic,
                                    obs_normalizer=_saved_normalizer(ckpt))
    finally:
        envs.close()
    return {
        "run_dir": str(run_dir), "algo": cfg.algo.name, "env": cfg.env.id, "seed": int(cfg.seed),
        "step": int(ckpt["step"]), "complete": bool(ckpt.get("complete", True)),
        "total_steps": int(cfg.total_steps), "episodes": len(returns),
        "deterministic": deterministic, "eval_seed": seed,
        "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
        "length_mean": float(np.mean(lengths)),
        "videos": sorted(str(p) for p in video_dir.glob(f"{prefix}-*.mp4")) if video else [],
    }


def _saved_normalizer(ckpt: dict):
    """The run's observation normalizer with the statistics saved in the checkpoint (frozen:
    evaluation only reads them), or None when the run did not normalize observations."""
    if ckpt.get("obs_normalizer") is None:
        return None
    from pgrun.checkpoint import decode
    from pgrun.normalize import ObsNormalizer

    return ObsNormalizer.from_state(decode(ckpt["obs_normalizer"]))


def _video_env(env_cfg, video_dir: Path, name_prefix: str):
    """One env rendering rgb_array frames, every episode recorded, as a 1-env vector env.
    (A single env, not the vectorized one training used: where an env has a native vector
    version, e.g. CartPole, the same seeds give other start states than without video;
    ALE's renders no frames, so its game plays through gymnasium's wrappers, ale_vector.py.)"""
    import os
    import warnings

    from gymnasium.wrappers import RecordVideo

    from pgrun.envs import make_vec_env, resolve_spec, vectorization_mode
    from pgrun.envs.ale_vector import is_ale_vector, wrapped_form

    spec = resolve_spec(env_cfg)
    if is_ale_vector(spec) and vectorization_mode(env_cfg) == "vector_entry_point":
        env_cfg = wrapped_form(env_cfg, spec)

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, quietly
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

    def record(env):
        with warnings.catch_warnings():  # "overwriting existing videos": names differ per call
            warnings.simplefilter("ignore", UserWarning)
            return RecordVideo(env, str(video_dir), episode_trigger=lambda _: True,
                               name_prefix=name_prefix)

    made = not video_dir.exists()
    try:
        return make_vec_env(env_cfg, 1, vectorization="sync", wrappers=[record],
                            render_mode="rgb_array")
    except ConfigError:
        if made and video_dir.is_dir() and not any(video_dir.iterdir()):
            video_dir.rmdir()  # a refusal leaves no trace
        raise


def main(argv: list[str]) -> int:
    if not argv:
        print(f"pgrun eval: RUN_DIR is missing.\n\n{USAGE}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    try:
        run_dir, opts = parse_args(argv)
        r = evaluate_run(run_dir, **opts)
    except ConfigError as err:
        print(f"pgrun eval: {err}", file=sys.stderr)
        return 2
    state = ("complete run" if r["complete"]
             else f"unfinished run: {r['step']:,} of {r['total_steps']:,} steps")
    print(f"{r['algo']} {r['env']} seed={r['seed']}: checkpoint at step {r['step']:,} ({state})")
    print(f"return {r['return_mean']:.2f} ± {r['return_std']:.2f} over {r['episodes']} episodes "
          f"({'deterministic' if r['deterministic'] else 'sampled'} actions, seeds "
          f"{r['eval_seed']}–{r['eval_seed'] + r['episodes'] - 1}), mean length "
          f"{r['length_mean']:.1f}")
    if r["videos"]:
        print(f"videos: {len(r['videos'])} in {Path(r['run_dir']) / 'videos'}")
    return 0
