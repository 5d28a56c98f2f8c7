"""A saved config is data: what it names as code is imported only when the user says so.

A run folder's config (the one in ``checkpoint.pt``, or ``.hydra/config.yaml``) can name
code: ``env.entry_point=module:Name`` is imported and *called* with ``env.kwargs``
(``os:system`` with ``{command: ...}`` runs a shell command), and ``env.id=module:Name-v0``
imports ``module``; each ``env.wrappers`` item's ``_target_`` is imported and called on
the env. Commands that turn a saved config into objects (``pgrun eval``) call
``check_trusted`` first; it refuses, naming the keys and how to allow them
(``--trust``), unless the user passed that on the command line. ``pgrun train`` never
needs it: the code it runs is what the user's own command line composes (a resume only
compares the saved config with it).
"""

from __future__ import annotations

from typing import Any

from pgrun.config import ConfigError

CODE_KEYS = ("entry_point", "_target_", "module", "class_path")
"""Keys, at any depth, whose string value names code to import (``_target_`` is what
Hydra's ``instantiate`` calls)."""


class UntrustedConfigError(ConfigError):
    """A saved config names code and the user did not pass ``--trust``."""


def code_references(config: Any, prefix: str = "") -> list[str]:
    """``key=value`` for every place in a plain (resolved) config that would import or
    call code: the CODE_KEYS, an ``id`` of gymnasium's ``module:Name`` form, and any
    ``${...}`` interpolation (a resolved config holds none; resolvers can read the
    environment)."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            name = f"{prefix}{key}"
            if isinstance(value, str) and value and (
                    key in CODE_KEYS or (key == "id" and ":" in value)):
                found.append(f"{name}={value!r}")
            elif isinstance(value, str) and "${" in value:
                found.append(f"{name}={value!r} (an interpolation)")
            else:
                found += code_references(value, f"{name}.")
    elif isinstance(config, list | tuple):
        for i, value in enumerate(config):
            found += code_references(value, f"{prefix}{i}.")
    elif isinstance(config, str) and "${" in config:
        found.append(f"{prefix.rstrip('.')}={config!r} (an interpolation)")
    return found


def check_trusted(config: dict, source: str, command: str, trust: bool) -> None:
    """Raise UntrustedConfigError unless ``config`` (read from ``source``) names no code or
    ``trust`` is set; ``command`` is the command line that would allow it."""
    found = code_references(config)
    if found and not trust:
        raise UntrustedConfigError(
            f"{source} names code that using it would import and run: {', '.join(found)}. "
            "A run folder is data, so pgrun does not run code it names unless you say so. "
            f"If you trust this folder and that code, run: {command}")
