"""Typed message declarations and their validators.

A message type is a frozen dataclass decorated with :func:`message`, which
registers it under a kind name and compiles, once, an encoder (dataclass ->
list of field values) and a validating decoder (list -> dataclass). Supported
field types: ``int``, ``float``, ``str``, ``bytes``, ``bool``, ``None``,
``Any`` (any msgpack value), :class:`Payload` (a user's value: see
``_payload``), ``X | None``, ``list[X]``, ``dict[str, X]`` and other message
types (nested). A registered class also gets ``__wire_new__``: its
constructor without the frozen dataclass's ``__init__`` (all fields, in
order, unchecked), for the hot paths that build one per request.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from typing import Any, Callable, TypeVar

from ._decoders import builder, fast_decoder
from ._errors import InvalidField
from ._payload import PayloadEncoder


class Payload:
    """Field type of a user's value (arguments, results, stream chunks): any
    msgpack value, or one the payload codecs carry (buffers, arrays, dataclasses...)."""

T = TypeVar("T")

_Check = Callable[[Any, str], Any]

_REGISTRY: dict[str, type] = {}
_DECODERS: dict[str, Callable[[Any], Any]] = {}
#: the checks that accept exactly one type (as it is), and those that accept it or None:
#: a kind's decoder tests these inline (``_decoders.py``)
EXACT: dict[Callable[..., Any], type] = {}
EXACT_OR_NONE: dict[Callable[..., Any], type] = {}


def _describe(value: Any) -> str:
    return type(value).__name__


def _fail(path: str, expected: str, value: Any) -> InvalidField:
    return InvalidField(f"field {path}: expected {expected}, got {_describe(value)}")


def _scalar(expected_type: type, name: str) -> _Check:
    def check(value: Any, path: str) -> Any:
        if type(value) is not expected_type:
            raise _fail(path, name, value)
        return value

    EXACT[check] = expected_type
    return check


def _check_float(value: Any, path: str) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    raise _fail(path, "float", value)


def _check_none(value: Any, path: str) -> Any:
    if value is not None:
        raise _fail(path, "nil", value)
    return None


def check_any(value: Any, path: str) -> Any:
    return value


def _compile(annotation: Any, where: str) -> _Check:
    if annotation is Any or annotation is Payload:
        return check_any
    if annotation is int:
        return _scalar(int, "int")
    if annotation is str:
        return _scalar(str, "str")
    if annotation is bytes:
        return _scalar(bytes, "bytes")
    if annotation is bool:
        return _scalar(bool, "bool")
    if annotation is float:
        return _check_float
    if annotation is None or annotation is type(None):
        return _check_none
    if isinstance(annotation, type) and annotation in _REGISTRY.values():
        return _nested(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1 and len(args) == 2:
            inner = _compile(non_none[0], where)

            def check_optional(value: Any, path: str) -> Any:
                return None if value is None else inner(value, path)

            if inner in EXACT:
                EXACT_OR_NONE[check_optional] = EXACT[inner]
            return check_optional
    if origin is list:
        item = _compile(args[0], where) if args else check_any

        def check_list(value: Any, path: str) -> Any:
            if type(value) is not list:
                raise _fail(path, "array", value)
            if item is check_any:
                return value
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return check_list
    if origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"{where}: dict keys must be str, got {args[0]!r}")
        val = _compile(args[1], where) if args else check_any

        def check_dict(value: Any, path: str) -> Any:
            if type(value) is not dict:
                raise _fail(path, "map", value)
            if val is check_any:
                for k in value:
                    if type(k) is not str:
                        raise _fail(f"{path} key", "str", k)
                return value
            out = {}
            for k, v in value.items():
                if type(k) is not str:
                    raise _fail(f"{path} key", "str", k)
                out[k] = val(v, f"{path}.{k}")
            return out

        return check_dict
    raise TypeError(f"{where}: unsupported field type {annotation!r}")


def _nested(cls: type) -> _Check:
    def check_nested(value: Any, path: str) -> Any:
        return decode_fields(cls, value, path)

    return check_nested


def message(kind: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen dataclass as a wire message of the given kind.

    Args:
        kind: the unique name that identifies the type in an envelope.

    Returns:
        A class decorator that returns the class unchanged after registering it.

    Raises:
        ValueError: if ``kind`` is already registered or the class is not a dataclass.
        TypeError: if a field has a type the wire cannot carry.
    """

    def register(cls: type[T]) -> type[T]:
        if kind in _REGISTRY:
            raise ValueError(f"message kind {kind!r} is already registered to {_REGISTRY[kind].__name__}")
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"{cls.__name__} must be a dataclass to be a message")
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        checks = [(f.name, _compile(hints[f.name], f"{cls.__name__}.{f.name}")) for f in fields]
        required = sum(
            1
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        )
        cls.__wire_kind__ = kind  # type: ignore[attr-defined]
        cls.__wire_fields__ = tuple(f.name for f in fields)  # type: ignore[attr-defined]
        cls.__wire_checks__ = tuple(checks)  # type: ignore[attr-defined]
        cls.__wire_required__ = required  # type: ignore[attr-defined]
        encoders = tuple(_encoder(hints[f.name]) for f in fields)
        cls.__wire_encoders__ = encoders if any(e is not None for e in encoders) else ()  # type: ignore[attr-defined]
        cls.__wire_payload__ = any(hints[f.name] is Payload for f in fields)  # type: ignore[attr-defined]
        # with payloads left as they are (RAW), only nested messages need encoding: most kinds need none
        cls.__wire_raw__ = None if any(e not in (None, _encode_payload) for e in encoders) else _values_of(cls.__wire_fields__)  # type: ignore[attr-defined]
        cls.__wire_new__ = builder(cls)  # type: ignore[attr-defined]
        _REGISTRY[kind] = cls
        _DECODERS[kind] = _top_level_decoder(cls, kind)
        return cls

    return register


def encode_fields(msg: Any, payload: PayloadEncoder | None = None) -> list[Any]:
    """Turn a message instance into the list of its field values (nested messages too).

    Args:
        msg: the message.
        payload: encodes :class:`Payload` fields and keeps their out-of-band
            buffers; None keeps every buffer inline; :data:`RAW` leaves them as they are.

    Raises:
        TypeError: a payload value cannot be sent (the message names its path).
    """
    encoders = msg.__wire_encoders__
    raw = type(msg).__wire_raw__
    if raw is not None and (not encoders or payload is RAW):
        return raw(msg)  # type: ignore[no-any-return]
    if payload is None:
        payload = PayloadEncoder(inline=True)
    return [
        enc(getattr(msg, name), payload) if enc is not None else getattr(msg, name)
        for name, enc in zip(msg.__wire_fields__, encoders)
    ]


_Encode = Callable[[Any, PayloadEncoder], Any]


RAW: Any = object()
"""Pass as ``payload`` to :func:`encode_fields` to leave payload fields as they are."""


def _encode_payload(value: Any, payload: PayloadEncoder) -> Any:
    return value if payload is RAW else payload.encode(value)


def _encoder(annotation: Any) -> _Encode | None:
    """Return how to encode a field of this type, or None when it is already wire-ready."""
    if annotation is Payload:
        return _encode_payload
    if isinstance(annotation, type) and hasattr(annotation, "__wire_fields__"):
        return encode_fields
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = next((_encoder(a) for a in args if a is not type(None)), None)
        if inner is None:
            return None
        return lambda v, p: None if v is None else inner(v, p)
    if origin is list and args:
        inner = _encoder(args[0])
        if inner is None:
            return None
        return lambda v, p: [inner(x, p) for x in v]
    if origin is dict and len(args) == 2:
        inner = _encoder(args[1])
        if inner is None:
            return None
        return lambda v, p: {k: inner(x, p) for k, x in v.items()}
    return None


def _values_of(names: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    """A message's field values in order, as a list (msgpack's strict mode takes no tuple)."""
    if not names:
        return lambda msg: []
    if len(names) == 1:
        get_one = operator.attrgetter(names[0])
        return lambda msg: [get_one(msg)]
    get = operator.attrgetter(*names)
    return lambda msg: list(get(msg))


def _top_level_decoder(cls: type, kind: str) -> Callable[[Any], Any]:
    """The decoder of a kind's body: :func:`decode_fields` with each field's path made
    once, behind a fast path made for the kind (``_decoders.py``)."""
    checks = tuple((check, f"{kind}.{name}") for name, check in cls.__wire_checks__)  # type: ignore[attr-defined]
    required, most = cls.__wire_required__, len(checks)  # type: ignore[attr-defined]

    def decode(body: Any) -> Any:
        if type(body) is not list or not required <= len(body) <= most:
            return decode_fields(cls, body, kind)  # raises, naming what was wrong
        return cls(*[check(v, path) for (check, path), v in zip(checks, body)])

    return fast_decoder(cls, checks, decode, EXACT, EXACT_OR_NONE, check_any)


def decode_fields(cls: type[T], body: Any, path: str) -> T:
    """Validate a decoded field list and build the message instance.

    Raises:
        InvalidField: naming the field path, the expected type and what was found.
    """
    if type(body) is not list:
        raise InvalidField(f"{path}: expected an array of fields, got {_describe(body)}")
    checks = cls.__wire_checks__  # type: ignore[attr-defined]
    if not cls.__wire_required__ <= len(body) <= len(checks):  # type: ignore[attr-defined]
        raise InvalidField(
            f"{path}: expected {cls.__wire_required__}..{len(checks)} fields, got {len(body)}"  # type: ignore[attr-defined]
        )
    values = [check(v, f"{path}.{name}") for (name, check), v in zip(checks, body)]
    return cls(*values)


def registered_kinds() -> dict[str, type]:
    """Return a copy of the kind -> message class registry."""
    return dict(_REGISTRY)


def decoder_for(kind: str) -> Callable[[Any], Any] | None:
    """Return the validating decoder of a kind, or None if it is not registered."""
    return _DECODERS.get(kind)
