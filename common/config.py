"""YAML configuration with a schema, so that a typo fails instead of being silently ignored.

A schema is a nested dict of defaults. Leaves are default values; `REQUIRED` marks a key that the
config must set; `FreeForm({...})` marks a section whose keys are not checked here (a component's
keyword arguments, validated by the component itself). JSON is valid YAML, so the seed repos'
JSON-style `.conf` files parse too.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Iterable, Mapping

import yaml

from common.errors import InputError
from common.io import atomic_write, read_text


class ConfigError(InputError):
    """A config file or override that does not fit the schema."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class FreeForm(dict):
    """A section whose keys are passed through unchecked (validated by the component that reads it)."""


def load_config(path: str | os.PathLike | None, overrides: Iterable[str], schema: Mapping) -> dict:
    """Reads `path` (may be None), applies `key.sub=value` overrides, validates against `schema`."""
    source = str(path) if path is not None else "<defaults>"
    raw = read_raw(path) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    return _merge(schema, raw, source, prefix="")


def read_raw(path: str | os.PathLike) -> dict:
    """The config file as a plain dict, before any schema is applied (e.g. to read `task` first)."""
    try:
        text = read_text(path, "config file")
    except InputError as e:
        raise ConfigError(str(e)) from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(filter(None, (e.context, e.problem))) or "syntax error"
        raise ConfigError(f"{where}: not valid YAML/JSON: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict, item: str) -> None:
    """Sets `a.b.c=value` in a nested dict; the value is parsed as YAML (`x=1e-3`, `x=[1,2]`, `x=null`)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=3")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    set_dotted(raw, key.strip(), value, f"override {item!r}")


def set_dotted(raw: dict, dotted: str, value: Any, who: str) -> None:
    """Sets `raw['a']['b']['c'] = value` for `dotted` 'a.b.c', creating missing sections; `who` names the
    edit in the error when a parent is a value, not a section."""
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{who}: {part!r} is a value, not a section")
        node = child
    node[last] = value


def dotted_value(cfg: Mapping, dotted: str) -> Any:
    """`dotted_value(cfg, "asv.arch")`: reads a nested key by its dotted name."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def as_overrides(nested: Mapping, prefix: str = "") -> list[str]:
    """`key.sub=value` overrides (values as YAML flow) that rebuild `nested` through `load_config`."""
    items = []
    for key, value in nested.items():
        if isinstance(value, Mapping):
            items.extend(as_overrides(value, f"{prefix}{key}."))
        else:
            text = yaml.safe_dump(plain(value), default_flow_style=True, width=1 << 30)
            items.append(f"{prefix}{key}={text.removesuffix(chr(10) + '...' + chr(10)).strip()}")
    return items


def with_changes(cfg: Mapping, changes: Mapping[str, Any], schema: Mapping | None = None, who: str = "") -> dict:
    """A copy of a resolved config with dotted keys replaced (`{"backend.name": "lr_fusion"}`), validated again
    against `schema` when given (so a typo'd key in `changes` fails, named by `who`)."""
    new = copy.deepcopy(plain(cfg))
    for dotted, value in changes.items():
        set_dotted(new, dotted, copy.deepcopy(value), f"{who}: override {dotted!r}" if who else f"override {dotted!r}")
    if schema is None:
        return new
    try:
        return load_config(None, as_overrides(new), schema)
    except ConfigError as e:
        prefix = f"{who}: " if who else ""
        raise ConfigError(prefix + str(e).removeprefix("<defaults>: ")) from None


def _merge(schema: Mapping, raw: Mapping, source: str, prefix: str) -> dict:
    unknown = [k for k in raw if k not in schema]
    if unknown and not isinstance(schema, FreeForm):
        where = f"under '{prefix[:-1]}'" if prefix else "at top level"
        valid = ", ".join(sorted(schema)) or "(none)"
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}'; valid keys {where}: {valid}")
    out: dict = FreeForm() if isinstance(schema, FreeForm) else {}
    for key, default in schema.items():
        name = prefix + key
        if isinstance(default, Mapping):
            value = raw.get(key, {})
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{name}' must be a section (mapping), got {value!r}")
            out[key] = _merge(default, value, source, name + ".")
        elif key in raw:
            out[key] = _check_type(name, default, raw[key], source)
        elif default is REQUIRED:
            raise ConfigError(f"{source}: missing required key '{name}'")
        else:
            out[key] = copy.deepcopy(default)
    if isinstance(schema, FreeForm):
        for key in unknown:
            out[key] = copy.deepcopy(raw[key])
    return dict(out) if not isinstance(schema, FreeForm) else out


def _check_type(name: str, default: Any, value: Any, source: str) -> Any:
    if default is REQUIRED or default is None or value is None:
        return value
    ok = True
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    if not ok:
        raise ConfigError(
            f"{source}: '{name}' must be {type(default).__name__} like the default {default!r}, got {value!r}")
    return value


def dump_config(cfg: Mapping, path: str | os.PathLike) -> None:
    """Writes the resolved config (atomically), so a run can be reproduced from its output folder."""
    with atomic_write(path) as f:
        yaml.safe_dump(plain(cfg), f, sort_keys=False, default_flow_style=None)


def plain(node: Any) -> Any:
    """A config as plain dicts and lists (FreeForm sections and tuples converted), for YAML and JSON."""
    if isinstance(node, Mapping):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node
