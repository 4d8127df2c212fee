"""Components chosen by name: one lookup and one keyword check behind every name -> class table.

Each package keeps its own plain dict (`asv.MODELS`, `cm.MODELS`, `fusion.BACKENDS`, `asv.losses.LOSSES`,
`cm.losses.LOSSES`); `build` turns a config's name and options into an instance, or into one line saying
what is wrong: an unknown name lists the known ones, unknown options list the accepted ones. The accepted
options are read from the constructor's signature, so they cannot drift from what the class takes.
"""
from __future__ import annotations

import inspect
from typing import Any, Collection, Mapping, TypeVar

from common.errors import InputError

T = TypeVar("T")
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def lookup(table: Mapping[str, T], name: Any, what: str) -> T:
    """`table[name]`; an unknown name raises InputError "unknown <what> 'name' (valid: a, b, c)"."""
    if not isinstance(name, str) or name not in table:
        raise InputError(f"unknown {what} {name!r} (valid: {', '.join(table)})")
    return table[name]


def accepted_kwargs(cls: type, fixed: Collection[str] = ()) -> list[str]:
    """The keyword arguments of `cls`'s constructor, in signature order, less the `fixed` ones."""
    return [p.name for p in inspect.signature(cls).parameters.values() if p.kind in _KEYWORD and p.name not in fixed]


def check_kwargs(cls: type, name: str, kwargs: Mapping[str, Any], what: str, fixed: Collection[str] = ()) -> None:
    """Raises InputError "unknown keyword 'x' for <what> <name> (valid: ...)" naming every option in `kwargs`
    that `cls`'s constructor does not take (or that the caller sets itself: `fixed`)."""
    accepted = accepted_kwargs(cls, fixed)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise InputError(f"unknown keyword{plural} {', '.join(map(repr, unknown))} for {what} {name} "
                         f"(valid: {', '.join(accepted) or 'none'})")


def build(table: Mapping[str, type | tuple[type, Mapping[str, Any]]], name: str, kwargs: Mapping[str, Any],
          what: str, *, defaults: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None) -> Any:
    """The component `name` of `table`, constructed with the user's options `kwargs`.

    table: name -> class, or name -> (class, config dict), the config holding every constructor argument's
        default for that name (a model's CONFIG); `kwargs` override it.
    what: the kind of component, for messages ("CM model", "ASV loss", "fusion back-end").
    defaults: values the caller offers and `kwargs` may override, passed only to constructors that take them
        (the model's embedding size for a CM loss that works on embeddings).
    fixed: values the caller sets and users may not, passed only to constructors that take them (the
        classifier sizes of an ASV loss); an option of that name is an unknown keyword.
    Unknown names and unknown options raise InputError (a ValueError) listing the valid ones.
    """
    entry = lookup(table, name, what)
    cls, config = entry if isinstance(entry, tuple) else (entry, {})
    fixed = dict(fixed or {})
    check_kwargs(cls, name, kwargs, what, fixed)
    accepted = accepted_kwargs(cls)
    offered = {k: v for k, v in (defaults or {}).items() if k in accepted}
    required = {k: v for k, v in fixed.items() if k in accepted}
    return cls(**{**config, **offered, **kwargs, **required})
