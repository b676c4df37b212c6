"""Who watches which actor: this process's watches of actors anywhere, and
other processes' watches of actors here. Bookkeeping only (thread-safe); the
actor system sends the messages and calls the callbacks."""

from __future__ import annotations

import threading
from typing import Callable, Hashable

Key = tuple[str, str]  # (process address, actor name)
Callback = Callable[..., None]


class WatchBook:
    """The watches of one actor system."""

    def __init__(self) -> None:
        self._callbacks: dict[Key, dict[Hashable, Callback]] = {}
        self._keys: dict[Hashable, Key] = {}
        self._remote: dict[str, set[str]] = {}  # actor here -> processes watching it
        self._lock = threading.Lock()

    def add(self, token: Hashable, key: Key, callback: Callback) -> bool:
        """Record a watch; True if it is the first of ``key``."""
        with self._lock:
            first = key not in self._callbacks
            self._callbacks.setdefault(key, {})[token] = callback
            self._keys[token] = key
            return first

    def remove(self, token: Hashable) -> Key | None:
        """Forget a watch; the key when it was the last one of it, else None."""
        with self._lock:
            key = self._keys.pop(token, None)
            if key is None:
                return None
            callbacks = self._callbacks.get(key, {})
            callbacks.pop(token, None)
            if callbacks:
                return None
            self._callbacks.pop(key, None)
            return key

    def take(self, key: Key) -> list[Callback]:
        """Every callback of ``key``, forgotten (each watch fires once)."""
        with self._lock:
            callbacks = self._callbacks.pop(key, {})
            for token in callbacks:
                self._keys.pop(token, None)
            return list(callbacks.values())

    def keys_at(self, address: str) -> list[Key]:
        """The watched actors of one process."""
        with self._lock:
            return [key for key in self._callbacks if key[0] == address]

    def add_remote(self, actor: str, peer: str) -> None:
        """Process ``peer`` watches our ``actor``."""
        with self._lock:
            self._remote.setdefault(actor, set()).add(peer)

    def remove_remote(self, actor: str, peer: str) -> None:
        with self._lock:
            self._remote.get(actor, set()).discard(peer)

    def take_remote(self, actor: str) -> set[str]:
        """The processes watching ``actor`` (which just stopped), forgotten."""
        with self._lock:
            return self._remote.pop(actor, set())

    def forget_peer(self, peer: str) -> None:
        """Process ``peer`` is gone: it watches nothing here any more."""
        with self._lock:
            for watchers in self._remote.values():
                watchers.discard(peer)
