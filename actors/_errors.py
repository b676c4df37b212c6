"""Errors of the actor runtime, and how a remote error is rebuilt locally."""

from __future__ import annotations

import builtins
import importlib
import threading

from protocol import ErrorReply


class ActorError(Exception):
    """Base class of actor runtime failures."""


class ActorNotFound(ActorError):
    """No actor of that name lives at that address."""


class ActorStopped(ActorError):
    """The actor, or its whole process, stopped before it answered."""


class MessageNotHandled(ActorStopped):
    """The actor stopped before it handled the message: it certainly never ran
    (so sending it elsewhere is safe)."""


class ActorSystemShutDown(ActorStopped):
    """This process's own actor system shut down before the answer came."""


class AskCancelled(ActorError):
    """The asker cancelled the request (its answer is no longer wanted)."""


class AskTimeout(ActorError, TimeoutError):
    """No answer arrived before the deadline."""


class RemoteError(ActorError):
    """An exception raised by a remote handler.

    When ``type_name`` names a built-in exception (``ValueError``, ``KeyError``,
    ...) the raised object is also an instance of that built-in, so ordinary
    ``except ValueError`` clauses work.

    Attributes:
        type_name: the original exception's type name.
        remote_message: ``str()`` of the original exception.
        remote_traceback: the traceback text from the remote process.
        origin: which actor raised it (``address#name``).
    """

    type_name: str = ""
    remote_message: str = ""
    remote_traceback: str = ""
    origin: str = ""


class RemoteProtocolError(RemoteError):
    """The remote process rejected the request as malformed; ``type_name`` says how."""


_classes: dict[str, type[RemoteError]] = {}
# corral's own error types keep their class across processes; nothing else a
# peer names is ever imported
_OWN_PACKAGES = ("actors.", "transport.", "protocol.")


def _own_exception(type_name: str) -> type | None:
    module_name, _, name = type_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else None
_classes_lock = threading.Lock()


def _remote_class(type_name: str) -> type[RemoteError]:
    with _classes_lock:
        cls = _classes.get(type_name)
        if cls is not None:
            return cls
        short = type_name.rsplit(".", 1)[-1]
        base = getattr(builtins, type_name, None)
        if base is None and type_name.startswith(_OWN_PACKAGES):
            base = _own_exception(type_name)
        cls = RemoteError
        if isinstance(base, type) and issubclass(base, Exception):
            try:
                cls = type(short, (RemoteError, base), {"__module__": "corral.remote"})
            except TypeError:  # a built-in whose layout cannot be mixed in
                cls = RemoteError
        _classes[type_name] = cls
        return cls


def rebuild_error(reply: ErrorReply, origin: str) -> Exception:
    """Turn an :class:`ErrorReply` into the exception to raise in the caller.

    Args:
        reply: the error as received.
        origin: the actor that answered, for the message.
    """
    if reply.code == "actor_not_found":
        return ActorNotFound(reply.message)
    if reply.code in ("actor_stopped", "not_handled"):
        return MessageNotHandled(reply.message)
    cls: type[RemoteError] = RemoteProtocolError if reply.code == "protocol" else _remote_class(reply.type_name)
    err = cls.__new__(cls)
    Exception.__init__(err, reply.message)
    err.type_name = reply.type_name
    err.remote_message = reply.message
    err.remote_traceback = reply.traceback
    err.origin = origin
    if reply.traceback and hasattr(err, "add_note"):
        err.add_note(f"Remote traceback from {origin}:\n{reply.traceback.rstrip()}")
    return err
