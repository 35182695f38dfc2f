"""The batch's overall progress: a live rich bar in a terminal, one plain line per event otherwise.

The bar shows items finished of the batch, done / failed / running counts and an ETA from the mean
time of the items finished in this session spread over the workers; every item that finishes also
prints one line (its status, time and run folder, or its error).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class BatchProgress:
    """Context manager; `started(id, where)`, `finished(id, status, seconds, detail)` as items move."""

    def __init__(self, console: Console, total: int, already_done: int, workers: int) -> None:
        self.console, self.total, self.workers = console, total, max(1, workers)
        self.done, self.failed, self.running = already_done, 0, 0
        self._durations: list[float] = []
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> BatchProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("batch", total=self.total, counts="", eta="")
            self._refresh()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(*exc_info)

    def eta_seconds(self) -> float | None:
        """Mean item time of this session x items left / workers (None before the first item finishes)."""
        if not self._durations:
            return None
        left = self.total - self.done - self.failed
        return sum(self._durations) / len(self._durations) * left / self.workers

    def counts(self) -> str:
        return f"{self.done} done, {self.failed} failed, {self.running} running"

    def _eta_text(self) -> str:
        eta = self.eta_seconds()
        return "" if eta is None else f"eta {time.strftime('%H:%M:%S', time.gmtime(eta))}"

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=self.done + self.failed, counts=self.counts(), eta=self._eta_text()
            )

    def line(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def started(self, item_id: str, where: str) -> None:
        self.running += 1
        if self._progress is None:
            self.line(f"start {item_id} ({where})")
        self._refresh()

    def finished(self, item_id: str, status: str, seconds: float, detail: str) -> None:
        """One item left its worker: done / failed count it; anything else (retry, stop) returns it to the queue."""
        self.running -= 1
        if status == "done":
            self.done += 1
            self._durations.append(seconds)
        elif status == "failed":
            self.failed += 1
        position = f"[{self.done + self.failed}/{self.total}]"
        eta = self._eta_text()
        self.line(f"{position} {status} {item_id} in {seconds:.1f} s: {detail}" + (f" ({eta})" if eta else ""))
        self._refresh()
