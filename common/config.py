"""YAML configuration with a schema, so that a typo or an impossible value fails before any work starts.

A schema is a nested dict of defaults. A leaf is a default value, or a `Rule` that also says which values are
allowed (a range, a set of choices, null or not, the type when the default is None); a plain leaf allows any
value of its default's type, never null (unless the default itself is null). `REQUIRED` marks a key that the
config must set; `FreeForm({...})` marks a section whose keys are not checked here (a component's keyword
arguments, validated by the component itself). `load_config` is the one path every entry point reads a config
through, so a value means the same, and is refused the same way, everywhere; the resolved config is plain
dicts and values (a `Rule` never reaches it). JSON is valid YAML, so the seed repos' JSON-style `.conf` files
parse too.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping

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


_BAD = object()   # what `Rule._typed` returns for a value of the wrong type


@dataclass(frozen=True)
class Rule:
    """A schema leaf that says what its value may be besides its default, checked by `load_config` (config files,
    overrides), `check_config` (sections built in code) and `argument_type` (command-line flags): one rule, so a
    value is refused in the same words wherever it comes from, before any work starts.

    kind: the value's type where the default does not show it (a None or REQUIRED default); a float key takes
        ints (and YAML 1.1's '1e-3' strings) as floats.
    low / high: inclusive bounds; above / below: exclusive bounds. Numbers must also be finite (no nan, inf).
    choices: the allowed values. nullable: null is allowed too (always when the default is None).
    nonempty: a string or list with something in it; size: a list of exactly this many items; items: the rule of
        each item of a list; unique: no item twice.
    """
    default: Any
    kind: type | None = None
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: Collection[Any] = ()   # a tuple, or a registry's live `.keys()`: a name registered later is valid
    nullable: bool = False
    nonempty: bool = False
    size: int | None = None
    items: Rule | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        if self.default is not REQUIRED and self.default is not None:
            self.check("default", self.default)      # a schema whose own default breaks its rule fails at import

    @property
    def value_type(self) -> type | None:
        """The type a value must have (None: any)."""
        if self.kind is not None:
            return self.kind
        if self.default is None or self.default is REQUIRED:
            return None
        return list if isinstance(self.default, tuple) else type(self.default)

    @property
    def allows_null(self) -> bool:
        return self.nullable or self.default is None

    def with_default(self, default: Any) -> Rule:
        """The same rule with another default (a recipe's own default for a shared key)."""
        return dataclasses.replace(self, default=default)

    def describe(self) -> str:
        """What the rule allows, as the end of "must be ...": 'an integer >= 1', 'one of auto, cpu, cuda'."""
        what = self._what()
        return f"null or {what}" if self.allows_null and self.value_type is not None else what

    def check(self, name: str, value: Any) -> Any:
        """`value` as the config keeps it (a float key's int as float), or a one-line ConfigError naming `name`,
        the value and what is allowed."""
        if value is None:
            if self.allows_null:
                return None
            raise self._refuse(name, value)
        typed = self._typed(value)
        if typed is _BAD or (self.choices and typed not in self.choices) or not self._fits(typed):
            raise self._refuse(name, value)
        return typed

    def argument_type(self) -> Callable[[str], Any]:
        """An argparse `type=` for a command-line flag under this rule: `--far 2` is refused as `far: 2` would be
        in a config (argparse names the flag, prints usage and exits 2)."""
        def parse(text: str) -> Any:
            value: Any = text
            try:
                value = int(text) if self.value_type is int else float(text) if self.value_type is float else text
            except ValueError:
                pass
            try:
                return self.check("", value)
            except ConfigError:
                raise argparse.ArgumentTypeError(f"must be {self._what()}, got {text}") from None
        return parse

    def _what(self) -> str:
        kind = self.value_type
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if kind is bool:
            return "true or false"
        if kind in (int, float):
            return ("an integer" if kind is int else "a finite number") + self._bounds()
        if kind is str:
            return "a non-empty string" if self.nonempty else "a string"
        if kind is list:
            what = (f"a list of {self.size} items" if self.size is not None
                    else "a non-empty list" if self.nonempty else "a list")
            what += " without repeats" if self.unique else ""
            return what + (f", each {self.items.describe()}" if self.items is not None else "")
        if kind is None:
            return "a value (not null)"
        return f"a {kind.__name__}"

    def _bounds(self) -> str:
        lower = (f"[{_number(self.low)}" if self.low is not None
                 else f"({_number(self.above)}" if self.above is not None else "")
        upper = (f"{_number(self.high)}]" if self.high is not None
                 else f"{_number(self.below)})" if self.below is not None else "")
        if lower and upper:
            return f" in {lower}, {upper}"
        if lower:
            return f" {'>=' if lower[0] == '[' else '>'} {lower[1:]}"
        if upper:
            return f" {'<=' if upper[-1] == ']' else '<'} {upper[:-1]}"
        return ""

    def _typed(self, value: Any) -> Any:
        kind = self.value_type
        if kind is None:
            return value
        if kind is float:
            if isinstance(value, str):          # YAML 1.1 reads '1e-3' (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    return _BAD
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return float(value) if ok else _BAD
        if kind is int:
            return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
        if kind is list:
            return value if isinstance(value, (list, tuple)) else _BAD
        return value if isinstance(value, kind) else _BAD

    def _fits(self, value: Any) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (math.isfinite(value) and (self.low is None or value >= self.low)
                    and (self.high is None or value <= self.high) and (self.above is None or value > self.above)
                    and (self.below is None or value < self.below))
        if isinstance(value, str):
            return not self.nonempty or bool(value.strip())
        if isinstance(value, (list, tuple)):
            if (self.nonempty and not value) or (self.size is not None and len(value) != self.size):
                return False
            if self.unique and any(v in value[:i] for i, v in enumerate(value)):
                return False
            if self.items is not None:
                try:
                    for item in value:
                        self.items.check("", item)
                except ConfigError:
                    return False
        return True

    def _refuse(self, name: str, value: Any) -> ConfigError:
        return ConfigError(f"'{name}' must be {self.describe()}, got {_shown(value)}")


# Paths: a file or folder the config must name (an empty string would mean the working folder), or may name.
REQUIRED_PATH = Rule(REQUIRED, kind=str, nonempty=True)
OPTIONAL_PATH = Rule(None, kind=str)


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _shown(value: Any) -> str:
    """A value as a message shows it: YAML's null / true / false, otherwise Python's repr (cut at 100 chars)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def load_config(path: str | os.PathLike | None, overrides: Iterable[str], schema: Mapping) -> dict:
    """Reads `path` (may be None), applies `key.sub=value` overrides, validates against `schema` (unknown keys,
    types, every `Rule`): one line naming the file, the key, the value and what is allowed otherwise."""
    source = str(path) if path is not None else "<defaults>"
    raw = read_raw(path) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    return _merge(schema, raw, source, prefix="")


def check_config(cfg: Mapping, schema: Mapping, who: str) -> dict:
    """Validates a config (or section) built in code against `schema` by the very rules `load_config` applies;
    errors start with `who` ("training config: 'epochs' must be an integer >= 1, got 0"). Returns it resolved."""
    return _merge(schema, cfg, who, prefix="")


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
            continue
        rule = default if isinstance(default, Rule) else Rule(default)
        if key in raw:
            try:
                out[key] = rule.check(name, raw[key])
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
        elif rule.default is REQUIRED:
            raise ConfigError(f"{source}: missing required key '{name}'")
        else:
            out[key] = copy.deepcopy(rule.default)
    if isinstance(schema, FreeForm):
        for key in unknown:
            out[key] = copy.deepcopy(raw[key])
    return dict(out) if not isinstance(schema, FreeForm) else out


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
