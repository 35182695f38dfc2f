"""Thread plumbing for the viewer: a one-slot mailbox to the worker, and errors reported once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from rich.console import Console
from rich.markup import escape

logger = logging.getLogger("splatgen.viewer")

Item = TypeVar("Item")


class LatestMailbox(Generic[Item]):
    """Hands the newest item to one worker; an item not yet taken is replaced, never queued."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._item: Item | None = None
        self._busy = False
        self._closed = False

    def put(self, item: Item) -> None:
        with self._changed:
            self._item = item
            self._changed.notify_all()

    def take(self) -> Item | None:
        """Block until an item arrives (marks the worker busy) or the mailbox closes (returns None)."""
        with self._changed:
            self._busy = False
            self._changed.notify_all()
            while self._item is None and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
            item, self._item = self._item, None
            self._busy = True
            return item

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every item put so far has been handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (self._item is not None or self._busy) and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class ErrorReporter:
    """Prints the first error of each kind (action, exception type) as one line; counts them all."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str]] = set()
        self.count = 0

    def report(self, action: str, error: BaseException) -> None:
        key = (action, type(error).__name__)
        with self._lock:
            self.count += 1
            first = key not in self._reported
            self._reported.add(key)
        logger.debug("viewer: %s failed", action, exc_info=error)
        if not first:
            return
        try:
            self._console.print(
                f"[yellow]viewer: {escape(action)} failed ({escape(type(error).__name__)}: {escape(str(error))}); "
                "training continues, further errors of this kind are not shown[/]"
            )
        except Exception:  # the reporter must never be the thing that fails
            logger.debug("viewer: could not print an error", exc_info=True)

    def guarded(self, action: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call `function(*args)`; an exception is reported and swallowed (the result is then None)."""
        try:
            return function(*args)
        except Exception as error:
            self.report(action, error)
            return None
