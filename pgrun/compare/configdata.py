"""A run's ``.hydra/config.yaml`` read as plain data, whoever wrote it.

Only YAML's plain types are accepted (mappings, sequences, strings, numbers, booleans,
null; dates are kept as text). Anything else is refused with the reason: python tags and
other tags (``!!set``, ``!!binary``, ``!foo``), recursive aliases, documents whose aliases
expand to more than ``MAX_NODES`` nodes (an "alias bomb": bounded time and memory), files
over ``MAX_BYTES`` or nested deeper than ``MAX_DEPTH``. Nothing named in the file is imported or called, and interpolations
are not evaluated: a resolver such as ``${oc.env:SECRET}`` stays that literal text (an
unterminated ``${`` is refused, as OmegaConf would). Only
plain references to other keys of the same file (``${.entry_point}``, ``${algo.name}``),
which Hydra saves unresolved, are replaced by the value they point to.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 100
MAX_REFERENCE_HOPS = 10
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}"
               for t in ("map", "seq", "str", "int", "float", "bool", "null", "merge")}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_REFERENCE = re.compile(r"\$\{(\.*)([A-Za-z_][\w\-]*(?:\.[\w\-]+)*)\}")


class ConfigDataError(ValueError):
    """The file is not plain YAML data; the message says why."""


def load(text: str) -> dict[str, Any]:
    """The YAML mapping in ``text`` as dicts, lists and scalars (ConfigDataError if not)."""
    if len(text) > MAX_BYTES:
        raise ConfigDataError(f"larger than {MAX_BYTES:,} bytes")
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigDataError("empty")
        _check(node)
        tree = loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigDataError(f"not valid YAML ({str(err).splitlines()[0]})") from None
    finally:
        loader.dispose()
    if not isinstance(tree, dict):
        raise ConfigDataError("not a mapping")
    return tree


def _check(root: yaml.Node) -> None:
    """Refuse non-plain tags, recursion and expansion past MAX_NODES; turn dates into text.
    Walks the node graph as the constructor would expand it, without recursion."""
    visits = 0
    stack: list[tuple[yaml.Node, frozenset]] = [(root, frozenset())]
    while stack:
        node, path = stack.pop()
        visits += 1
        if visits > MAX_NODES:
            raise ConfigDataError(f"aliases expand to more than {MAX_NODES:,} nodes "
                                  "(an alias bomb?)")
        if node.tag == _TIMESTAMP:
            node.tag = "tag:yaml.org,2002:str"
        elif node.tag not in _PLAIN_TAGS:
            raise ConfigDataError(f"YAML tag {_short(node.tag)} is not plain data")
        if isinstance(node, yaml.ScalarNode):
            continue
        if id(node) in path:
            raise ConfigDataError("a recursive alias (a node that contains itself)")
        if len(path) >= MAX_DEPTH:
            raise ConfigDataError(f"nested deeper than {MAX_DEPTH} levels")
        inner = path | {id(node)}
        children = node.value if isinstance(node, yaml.SequenceNode) else \
            [n for pair in node.value for n in pair]
        stack.extend((child, inner) for child in children)


def _short(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def resolve_references(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with each ``${key}`` reference to another key of ``tree`` (absolute, or
    relative with leading dots as in OmegaConf) replaced by that key's value; text with
    resolvers (``${oc.env:X}``), references to missing keys and chains longer than
    ``MAX_REFERENCE_HOPS`` are left as they are. An unterminated ``${`` (which OmegaConf
    could not have loaded) is a ConfigDataError."""

    def value_at(parts: list[str]) -> Any:
        node: Any = tree
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                raise KeyError(part)
            node = node[part]
        return node

    def resolve(value: Any, where: list[str], hops: int) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, [*where, str(k)], hops) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, where, hops) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        if "}" not in value[value.rindex("${"):]:
            raise ConfigDataError(f"{'.'.join(where)}: an unterminated interpolation "
                                  f"{value[:40]!r}")
        if hops >= MAX_REFERENCE_HOPS:
            return value

        def target(match: re.Match) -> tuple[Any, list[str]]:
            dots, key = match.groups()
            base = where[:-1] if dots else []  # where: the key holding the value
            base = base[: max(0, len(base) - (len(dots) - 1))] if dots else base
            parts = [*base, *key.split(".")]
            return resolve(value_at(parts), parts, hops + 1), parts

        try:
            whole = _REFERENCE.fullmatch(value)
            if whole:
                return target(whole)[0]
            return _REFERENCE.sub(lambda m: str(target(m)[0]), value)
        except KeyError:
            return value

    return resolve(tree, [], 0)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"algo": {"lr": 1e-3}}`` → ``{"algo.lr": 1e-3}``; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = _hashable(value)
    return flat


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((str(k), _hashable(v)) for k, v in value.items())
    return value


def read(text: str) -> dict[str, Any]:
    """A config file's text as flat, hashable data (ConfigDataError when it is not data)."""
    return flatten(resolve_references(load(text)))
