"""ALE's own vector env (``vector=ale``, conf/vector/ale.yaml) and its wrappers' form.

ALE's ``AtariVectorEnv`` does the Atari preprocessing in C++ and renders no frames, so a
video of a run trained through it plays the same game through the Atari presets' form
instead (conf/env/Pong-v5.yaml): ``AtariEnv`` with ``frameskip=1`` under gymnasium's
``AtariPreprocessing`` and ``FrameStackObservation``, set from the vector env's arguments.
The two agree on rewards and game ends and on all but under 1% of pixels
(tests/test_suites.py).
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.registration import EnvSpec
from omegaconf import OmegaConf

from pgrun.config import ConfigError

PASSED_ON = ("repeat_action_probability", "full_action_space", "continuous",
             "continuous_action_threshold", "max_num_frames_per_episode")
"""AtariVectorEnv arguments that AtariEnv takes as they are."""
HOW_IT_RUNS = ("num_threads", "thread_affinity_offset", "batch_size", "autoreset_mode")
"""AtariVectorEnv arguments that change how it runs, not what it plays (make_vec_env
refuses an autoreset mode other than gymnasium's default)."""
DEFAULTS = {"frameskip": 4, "noop_max": 30, "img_height": 84, "img_width": 84,
            "grayscale": True, "stack_num": 4, "maxpool": True, "episodic_life": False,
            "life_loss_info": False, "reward_clipping": True, "use_fire_reset": True}
"""AtariVectorEnv's defaults for the arguments that set what it plays."""
ALWAYS = {"maxpool": True, "episodic_life": False, "life_loss_info": False,
          "reward_clipping": False, "use_fire_reset": False}
"""Of those, the ones with the one value gymnasium's wrappers can play (the presets':
max-pooled frames, unclipped rewards, no FIRE at reset, lives left to
``env.life_loss_terminal``); AtariVectorEnv's own defaults clip rewards and press FIRE."""


def is_ale_vector(spec: EnvSpec) -> bool:
    """Whether the id's native vector env is ALE's AtariVectorEnv."""
    return str(spec.vector_entry_point or "").startswith("ale_py.")


def wrapped_form(env_cfg, spec: EnvSpec):
    """The env config that plays ``env_cfg``'s game (ALE's vector env) through gymnasium's
    wrappers; a ConfigError naming any argument the wrappers cannot play."""
    from pgrun.envs.factory import env_kwargs  # (factory imports this module)

    user = env_kwargs(env_cfg)
    kwargs: dict[str, Any] = {**DEFAULTS, **spec.kwargs, **user}
    kwargs.pop("game", None)
    bad = [f"{k}={kwargs[k]!r}" for k, want in ALWAYS.items() if kwargs[k] != want]
    known = {*PASSED_ON, *HOW_IT_RUNS, *DEFAULTS}
    bad += [f"{k}={v!r}" for k, v in kwargs.items() if k not in known]
    if kwargs["img_height"] != kwargs["img_width"]:
        bad.append(f"img_height={kwargs['img_height']!r} with img_width={kwargs['img_width']!r}")
    if bad:
        raise ConfigError(
            f"env.id={env_cfg.id!r} through ALE's vector env, which renders no frames: to "
            "record it pgrun plays the same game through gymnasium's Atari wrappers, which "
            f"cannot play env.kwargs {', '.join(bad)} (they play maxpool=True, "
            "reward_clipping=False, use_fire_reset=False, episodic_life=False, "
            "life_loss_info=False, square frames).")
    preprocessing = {"_target_": "gymnasium.wrappers.AtariPreprocessing",
                     "noop_max": kwargs["noop_max"], "frame_skip": kwargs["frameskip"],
                     "screen_size": kwargs["img_height"], "grayscale_obs": kwargs["grayscale"]}
    stack = {"_target_": "gymnasium.wrappers.FrameStackObservation",
             "stack_size": kwargs["stack_num"]}
    cfg = OmegaConf.to_container(env_cfg, resolve=True)
    cfg.update(vectorization="sync", wrappers=[preprocessing, stack],
               kwargs={"frameskip": 1, **{k: user[k] for k in PASSED_ON if k in user}})
    return OmegaConf.create(cfg)
