"""The one background producer behind the disk cache reader and the live stream.

``Prefetcher(make_items)`` runs the iterator ``make_items(stop)`` in a daemon thread, at most
``ahead`` items in advance, and hands them out in order with ``next()``; an error in the
producer is raised by ``next()`` in the consumer, not lost with the thread. ``close()`` stops
the thread (``stop`` is set, so a producer waiting on something else should check it). With
``background=False`` the items are computed in the caller's thread, same order, same values:
the order never depends on thread timing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


class Prefetcher:
    def __init__(
        self,
        make_items: Callable[[threading.Event], Iterator[Any]],
        *,
        background: bool = True,
        ahead: int = 1,
        name: str = "saekit-prefetch",
    ):
        self.stop = threading.Event()
        self.last_wait = 0.0  # seconds the last next() waited for the producer
        self._items: Iterator[Any] | None = make_items(self.stop)
        self._thread: threading.Thread | None = None
        if background:
            self._queue: queue.Queue = queue.Queue(maxsize=ahead)
            self._thread = threading.Thread(target=self._run, args=(self._items,), daemon=True, name=name)
            self._items = None
            self._thread.start()

    def _run(self, items: Iterator[Any]) -> None:
        try:
            with torch.no_grad():
                for item in items:
                    if not self._put(item):
                        return
            self._put(StopIteration())  # the consumer's next() ends as it would without a thread
        except BaseException as e:  # hand the error to the consumer instead of dying silently
            self._put(e)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> Any:
        """The next item (waiting for the producer if it is behind); the producer's error, raised."""
        if self._thread is None:
            if self._items is None:
                raise RuntimeError("the prefetcher is closed")
            with torch.no_grad():
                item = next(self._items)
            self.last_wait = 0.0
        else:
            t = time.perf_counter()
            item = self._queue.get()
            self.last_wait = time.perf_counter() - t
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the producer and wait for its thread to end."""
        self.stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting to put
                    self._queue.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._thread = None
        self._items = None


def get_unless_stopped(source: queue.Queue, stop: threading.Event) -> Any | None:
    """``source.get()``, or None once ``stop`` is set (a producer waiting for a free buffer)."""
    while not stop.is_set():
        try:
            return source.get(timeout=0.1)
        except queue.Empty:
            continue
    return None
