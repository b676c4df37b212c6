"""Each message kind's fast decoder: one function written for the kind.

A body that has every field, each of the right type, is the common case: the
kind's decoder unpacks it, tests each field inline (``type(f) is str``; no
call per field), and builds the instance through its slots (a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__``, about
twice the cost; :func:`builder` is that construction, which senders use too
for the hot kinds). Anything else (a missing field, a wrong type, a field whose
check converts or recurses) takes the kind's general decoder, which builds the
same instance or raises naming the field.

Nothing here is imported from outside ``protocol``; ``_schema.py`` calls
:func:`fast_decoder` when it registers a kind.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Mapping

_Check = Callable[[Any, str], Any]


def builder(cls: type) -> Callable[..., Any]:
    """A function of ``cls``'s field values, all of them in order, that builds the instance
    its ``__init__`` would (through its slots, when it has them and no ``__post_init__``).
    It checks nothing: for values known to be right, as a decoder's after it tested them."""
    fields = list(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    slots = [cls.__dict__.get(field) for field in fields]
    if not all(isinstance(slot, types.MemberDescriptorType) for slot in slots) or hasattr(cls, "__post_init__"):
        return cls
    names = [f"f{i}" for i in range(len(fields))]
    env: dict[str, Any] = {"cls": cls, "new": object.__new__}
    lines = [f"def build({', '.join(names)}):", "    o = new(cls)"]
    for i, slot in enumerate(slots):
        env[f"s{i}"] = slot.__set__  # type: ignore[union-attr]
        lines.append(f"    s{i}(o, {names[i]})")
    lines.append("    return o")
    exec(compile("\n".join(lines), f"<builder of {cls.__name__}>", "exec"), env)  # noqa: S102 - built from field indices only
    return env["build"]  # type: ignore[no-any-return]


def fast_decoder(
    cls: type,
    checks: tuple[tuple[_Check, str], ...],
    general: Callable[[Any], Any],
    exact: Mapping[_Check, type],
    exact_or_none: Mapping[_Check, type],
    check_any: _Check,
) -> Callable[[Any], Any]:
    """The decoder of ``cls``'s bodies: fast when every field is there and plain, else ``general``.

    Args:
        cls: the message class (a dataclass).
        checks: each field's check and its path, in order.
        general: the kind's general decoder (validates everything; raises naming what was wrong).
        exact: checks that accept one type as it is, by check.
        exact_or_none: checks that accept one type or None, by check.
        check_any: the check that accepts anything.

    Returns:
        A function of the body, returning what ``general`` would.
    """
    names = [f"f{i}" for i in range(len(checks))]
    env: dict[str, Any] = {"general": general, "build": builder(cls)}
    tests, converts = [], []
    for i, (check, path) in enumerate(checks):
        name = names[i]
        if check is check_any:
            continue
        if check in exact:
            env[f"t{i}"] = exact[check]
            tests.append(f"type({name}) is t{i}")
        elif check in exact_or_none:
            env[f"t{i}"] = exact_or_none[check]
            tests.append(f"({name} is None or type({name}) is t{i})")
        else:  # converts (float from int) or recurses (nested, lists, maps): its own check, which raises
            env[f"c{i}"], env[f"p{i}"] = check, path
            converts.append(f"    {name} = c{i}({name}, p{i})")
    build = [f"    return build({', '.join(names)})"]
    lines = ["def decode(body):", f"    if type(body) is not list or len(body) != {len(checks)}:", "        return general(body)"]
    if names:
        lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = body")
    if tests:
        lines += [f"    if not ({' and '.join(tests)}):", "        return general(body)"]
    source = "\n".join(lines + converts + build)
    exec(compile(source, f"<decoder of {cls.__name__}>", "exec"), env)  # noqa: S102 - source built above from field indices only
    return env["decode"]  # type: ignore[no-any-return]
