"""Config keys that never change what a run computes ("result-neutral"): the one list.

Two runs whose configs differ only in these keys are the same run: ``pgrun train`` resumes
or skips a run with other values of them (``runfolder.config_identity``), and
``pgrun compare`` never splits a group on them. Everything else can change results and
counts: ``torch_threads``, for one, changes the order of BLAS float sums and so the
numbers a seed produces. Imported by ``pgrun compare``, so it imports nothing.
"""

from __future__ import annotations

RESULT_NEUTRAL = ("progress", "resume", "checkpoint", "logger", "env.random_score",
                  "env.reference_score")
"""Dotted config keys (a key covers its sub-keys): the progress display, the resume mode,
checkpoint settings, the extra log sinks, and the normalization scores ``pgrun compare``
reads."""


_UNDER = tuple(k + "." for k in RESULT_NEUTRAL)


def is_neutral(key: str) -> bool:
    """Whether the dotted ``key`` is, or lies under, a key of ``RESULT_NEUTRAL``."""
    return key in RESULT_NEUTRAL or key.startswith(_UNDER)


def without_neutral(tree: dict, prefix: str = "") -> dict:
    """The nested config ``tree`` without its result-neutral keys."""
    kept = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if is_neutral(name):
            continue
        kept[key] = without_neutral(value, name + ".") if isinstance(value, dict) else value
    return kept
