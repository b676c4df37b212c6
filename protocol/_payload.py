"""Payloads: the values users send (arguments, results, stream chunks, bound
arguments) and how they travel. Pure: no I/O.

msgpack values travel as themselves. Other values become msgpack extension
types; large buffers leave the frame and travel as their own ZeroMQ frames
(``buffers``), never copied on the way out:

- bytes of at least :data:`OUT_OF_BAND_MIN` bytes, bytearray, memoryview;
- numpy arrays and numpy scalars (any dtype but ``object``; C or Fortran order
  kept; other layouts are made contiguous first). A received array is a
  read-only view of the frame it came in (``arr.copy()`` to write to it);
- dataclass instances and pydantic models, by their class's import path and
  their fields (the receiver imports the class);
- anything else only when pickle is allowed for the message (a deployment's
  ``serializer="pickle"``, on an authenticated or local transport), with
  pickle protocol 5 so that large buffers inside still travel out of band.

A value that cannot travel raises :class:`TypeError` naming its type and
where it is inside the argument (``argument 0['images'][3]``).
"""

from __future__ import annotations

import dataclasses
import importlib
import pickle
import sys
from typing import Any, Sequence

import msgpack

from ._errors import BadPayload

OUT_OF_BAND_MIN = 8192
"""Buffers at least this long travel as their own frame; shorter ones inside the frame."""

EXT_BYTES, EXT_BYTEARRAY, EXT_MEMORYVIEW, EXT_NDARRAY, EXT_DATACLASS, EXT_PYDANTIC, EXT_PICKLE, EXT_SEALED = range(1, 9)

_NATIVE = frozenset({int, float, str, bool, type(None)})
_packb = msgpack.packb
_ExtType = msgpack.ExtType


class _Unsendable(TypeError):
    def __init__(self, value: Any, why: str) -> None:
        super().__init__(why)
        self.value = value
        self.why = why
        self.path: list[str] = []


class PayloadEncoder:
    """Turns one message's payload values into msgpack values plus buffers.

    Args:
        allow_pickle: values with no codec are pickled instead of refused.
        inline: keep every buffer inside the frame (for values stored, not sent).

    Attributes:
        buffers: the out-of-band buffers, in the order the frame refers to them.
    """

    __slots__ = ("buffers", "allow_pickle", "inline")

    def __init__(self, allow_pickle: bool = False, inline: bool = False) -> None:
        self.buffers: list[Any] = []
        self.allow_pickle = allow_pickle
        self.inline = inline

    def encode(self, value: Any, where: str = "value") -> Any:
        """The wire form of ``value``.

        Raises:
            TypeError: a value has no codec; the message names it and its path.
        """
        try:
            return self._encode(value)
        except _Unsendable as exc:
            path = where + "".join(reversed(exc.path))
            hint = "" if self.allow_pickle else (
                "; send msgpack values, bytes, numpy arrays, dataclasses or pydantic models, or opt in to "
                "serializer='pickle' on the deployment (allowed on a CURVE-authenticated or ipc cluster only)"
            )
            raise TypeError(f"{path}: {exc.why}{hint}") from None

    def _encode(self, value: Any) -> Any:
        kind = type(value)
        if kind in _NATIVE:
            return value
        if kind is list or kind is tuple:
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(item if type(item) in _NATIVE else self._encode(item))
                except _Unsendable as exc:
                    exc.path.append(f"[{i}]")
                    raise
            return out
        if kind is dict:
            return self._map(value, "[{!r}]")
        if kind is bytes:
            if len(value) < OUT_OF_BAND_MIN or self.inline:
                return value
            return _ExtType(EXT_BYTES, _packb(self._buffer(value), use_bin_type=True))
        if kind is bytearray:
            return _ExtType(EXT_BYTEARRAY, _packb(self._buffer(value), use_bin_type=True))
        if kind is memoryview:
            view = value if value.c_contiguous else memoryview(value.tobytes())
            return _ExtType(EXT_MEMORYVIEW, _packb(self._buffer(view.cast("B") if view.ndim else view), use_bin_type=True))
        numpy = sys.modules.get("numpy")
        if numpy is not None and (kind is numpy.ndarray or isinstance(value, numpy.generic)):
            return self._ndarray(numpy, value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return self._typed(EXT_DATACLASS, kind, fields)
        pydantic = sys.modules.get("pydantic")
        if pydantic is not None and isinstance(value, pydantic.BaseModel):
            fields = {name: getattr(value, name) for name in kind.model_fields}
            return self._typed(EXT_PYDANTIC, kind, fields)
        if kind is _ExtType and value.code == EXT_SEALED:
            return value  # sealed by the deploying process: passed on untouched
        if isinstance(value, (int, float, str)):
            return value  # an IntEnum, a str subclass...: msgpack packs them as their base type
        if isinstance(value, (list, tuple)):
            return self._encode(list(value))  # a namedtuple, a list subclass: an array
        if isinstance(value, dict):
            return self._encode(dict(value))
        if self.allow_pickle:
            return self._pickle(value)
        raise _Unsendable(value, f"cannot send {_type_name(kind)}")

    def _buffer(self, data: Any) -> Any:
        """An inline copy of a short buffer, or the index of an out-of-band frame."""
        size = data.nbytes if type(data) is memoryview else len(data)
        if self.inline or size < OUT_OF_BAND_MIN:
            return bytes(data)
        self.buffers.append(data)
        return [len(self.buffers) - 1, size]

    def _ndarray(self, numpy: Any, value: Any) -> Any:
        scalar = not isinstance(value, numpy.ndarray)
        array = numpy.asarray(value)
        if array.dtype.hasobject:
            raise _Unsendable(value, "cannot send a numpy array of dtype object")
        if type(value) is not numpy.ndarray and not scalar:
            raise _Unsendable(value, f"cannot send {_type_name(type(value))} (a numpy.ndarray subclass)")
        if array.flags.c_contiguous:
            order = "C"
        elif array.flags.f_contiguous:
            order = "F"
        else:
            array, order = numpy.ascontiguousarray(array), "C"
        flat = array.ravel(order="K").view(numpy.uint8) if array.size else numpy.empty(0, numpy.uint8)
        header = [_descr(array.dtype), list(array.shape), order + ("s" if scalar else ""), self._buffer(memoryview(flat))]
        return _ExtType(EXT_NDARRAY, _packb(header, use_bin_type=True))

    def _map(self, value: dict[Any, Any], step: str) -> dict[Any, Any]:
        """Encode a map's values; a failure's path gains ``step`` formatted with the key."""
        out = {}
        for key, item in value.items():
            try:
                out[key] = item if type(item) in _NATIVE else self._encode(item)
            except _Unsendable as exc:
                exc.path.append(step.format(key))
                raise
        return out

    def _typed(self, code: int, kind: type, fields: dict[str, Any]) -> Any:
        encoded = self._map(fields, ".{}")
        module = "__main__" if kind.__module__ == "__mp_main__" else kind.__module__  # a worker runs the script as __mp_main__
        return _ExtType(code, _packb([f"{module}:{kind.__qualname__}", encoded], use_bin_type=True))

    def _pickle(self, value: Any) -> Any:
        refs: list[Any] = []
        try:
            data = pickle.dumps(value, protocol=5, buffer_callback=lambda b: refs.append(self._buffer(b.raw())) or False)
        except Exception as exc:
            raise _Unsendable(value, f"cannot pickle {_type_name(type(value))}: {exc}") from None
        return _ExtType(EXT_PICKLE, _packb([data, refs], use_bin_type=True))


class PayloadDecoder:
    """The ``ext_hook`` that turns one frame's extension types back into values.

    Args:
        buffers: the frame's out-of-band buffers (memoryviews or bytes).
        allow_pickle: accept pickled values (only where the transport is
            authenticated or local).
        unseal: decode sealed values too (the replica that finally uses them);
            otherwise they stay sealed.

    Raises (when called):
        BadPayload: an extension is malformed, refers to a frame that is not
            there or has another size, or is a pickle where none is allowed.
    """

    __slots__ = ("buffers", "allow_pickle", "unseal", "used")

    def __init__(self, buffers: Sequence[Any] = (), allow_pickle: bool = False, unseal: bool = False) -> None:
        self.buffers = buffers
        self.allow_pickle = allow_pickle
        self.unseal = unseal
        self.used = 0

    def __call__(self, code: int, data: bytes) -> Any:
        if code == EXT_SEALED and not self.unseal:
            return _ExtType(code, data)
        try:
            header = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=self)
        except BadPayload:
            raise
        except Exception as exc:
            raise BadPayload(f"extension {code}: not valid msgpack ({type(exc).__name__}: {exc})") from None
        try:
            return self._decode(code, header)
        except BadPayload:
            raise
        except Exception as exc:
            raise BadPayload(f"extension {code}: {type(exc).__name__}: {exc}") from None

    def _decode(self, code: int, header: Any) -> Any:
        if code == EXT_BYTES:
            return bytes(self._data(header))
        if code == EXT_BYTEARRAY:
            return bytearray(self._data(header))
        if code == EXT_MEMORYVIEW:
            data = self._data(header)
            return data if type(data) is memoryview else memoryview(data)
        if code == EXT_NDARRAY:
            return self._ndarray(header)
        if code in (EXT_DATACLASS, EXT_PYDANTIC):
            return self._typed(code, header)
        if code == EXT_PICKLE:
            if not self.allow_pickle:
                raise BadPayload("a pickled value was refused: this process accepts pickles only on a "
                                 "CURVE-authenticated or ipc transport")
            data, refs = header
            return pickle.loads(data, buffers=[self._data(r) for r in refs])
        if code == EXT_SEALED:
            return header
        raise BadPayload(f"unknown payload extension {code}")

    def _data(self, ref: Any) -> Any:
        if type(ref) is bytes:
            return ref
        if type(ref) is not list or len(ref) != 2 or type(ref[0]) is not int or type(ref[1]) is not int:
            raise BadPayload(f"a buffer reference must be bytes or [index, size], got {ref!r}")
        index, size = ref
        if not 0 <= index < len(self.buffers):
            raise BadPayload(f"refers to out-of-band frame {index} but the message has {len(self.buffers)}")
        data = self.buffers[index]
        got = data.nbytes if type(data) is memoryview else len(data)
        if got != size:
            raise BadPayload(f"out-of-band frame {index} has {got} bytes but its header says {size}")
        self.used += 1
        return data

    def finish(self) -> None:
        """Check that every out-of-band frame was referred to exactly once.

        Raises:
            BadPayload: naming how many frames came and how many were used.
        """
        if self.used != len(self.buffers):
            raise BadPayload(f"the message carries {len(self.buffers)} out-of-band frames but refers to {self.used}")

    def _ndarray(self, header: Any) -> Any:
        import numpy

        descr, shape, order, ref = header
        dtype = numpy.dtype(_tuples(descr))
        data = self._data(ref)
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != (data.nbytes if type(data) is memoryview else len(data)):
            raise BadPayload(f"array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes")
        array = numpy.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order[0])
        return array[()] if order.endswith("s") else array

    def _typed(self, code: int, header: Any) -> Any:
        path, fields = header
        cls = _import_type(path)
        if code == EXT_DATACLASS:
            if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
                raise BadPayload(f"{path} is not a dataclass")
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{k: v for k, v in fields.items() if k in init})
            for name, value in fields.items():
                if name not in init:
                    object.__setattr__(obj, name, value)
            return obj
        pydantic = sys.modules.get("pydantic")
        if pydantic is None or not (isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)):
            raise BadPayload(f"{path} is not a pydantic model")
        return cls.model_validate(fields)


def seal(value: Any, allow_pickle: bool = False, where: str = "value") -> Any:
    """Wrap a value stored on the way (a bound argument kept by the controller)
    so that only its final receiver decodes it: msgpack values stay as they
    are, anything else becomes one sealed extension with every buffer inline.

    Raises:
        TypeError: as :meth:`PayloadEncoder.encode`.
    """
    kind = type(value)
    if kind in _NATIVE or kind is bytes:
        return value
    if kind is list or kind is tuple:
        return [seal(v, allow_pickle, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict and all(type(k) is str for k in value):
        return {k: seal(v, allow_pickle, f"{where}[{k!r}]") for k, v in value.items()}
    encoded = PayloadEncoder(allow_pickle, inline=True).encode(value, where)
    return _ExtType(EXT_SEALED, _packb(encoded, use_bin_type=True))


def unseal(value: Any, allow_pickle: bool = False) -> Any:
    """Decode what :func:`seal` wrapped (recursively); other values are returned as they are.

    Raises:
        BadPayload: a sealed value is malformed, or a pickle where none is allowed.
    """
    kind = type(value)
    if kind is _ExtType:
        if value.code != EXT_SEALED:
            return value
        return msgpack.unpackb(value.data, raw=False, strict_map_key=False,
                               ext_hook=PayloadDecoder((), allow_pickle, unseal=True))
    if kind is list:
        return [unseal(v, allow_pickle) for v in value]
    if kind is dict:
        return {k: unseal(v, allow_pickle) for k, v in value.items()}
    return value


def _import_type(path: Any) -> Any:
    if type(path) is not str or ":" not in path:
        raise BadPayload(f"a type's path must be 'module:Name', got {path!r}")
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module_name == "__main__":
        script = sys.modules.get("__mp_main__")  # the user's script, as a worker loads it
        if script is not None and hasattr(script, qualname.split(".")[0]):
            module = script
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise BadPayload(f"cannot import {module_name!r} for type {path}: {exc}") from None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise BadPayload(f"type {path} not found")
    return obj


def _descr(dtype: Any) -> Any:
    return dtype.str if dtype.fields is None else dtype.descr


def _tuples(descr: Any) -> Any:
    if type(descr) is list:
        return [tuple(_tuples(x) for x in field) if type(field) is list else field for field in descr]
    return descr


def _type_name(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
