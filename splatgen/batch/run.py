"""The batch driver: plan every item, lock the folder, skip what is done, feed the workers, record everything.

    summary = run_batch(options, train_args, parse_config, console)

1. read the prompt list, cross it, build and validate every item's config (`plan.py`): a bad line
   stops the batch before anything is written;
2. keep this process's shard of the list; take the batch folder's lock (`manifest.lock_batch`);
3. merge the manifest: items done (with their PLY) are skipped; the others are queued again
   (a `running` left by a killed batch included: its worker resumes from the checkpoint);
4. hand queued items to idle workers; record each outcome in the manifest and rewrite the gallery:
   done / failed (with its one-line error; the batch goes on) / lost (its worker died: queued again
   up to `--retries` times) / busy (another process owns the run folder: left queued, reported) /
   interrupted (Ctrl-C: the running items stop after their step and save; the next run resumes them).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from splatgen.batch.engines import make_engine
from splatgen.batch.gallery import write_gallery
from splatgen.batch.items import cross, read_prompt_list
from splatgen.batch.manifest import LOG_DIR, Manifest, ManifestEntry, all_entries, lock_batch
from splatgen.batch.options import BatchOptions
from splatgen.batch.plan import ConfigParser, WorkItem, check_train_flags, plan_items
from splatgen.batch.progress import BatchProgress
from splatgen.batch.worker import Outcome

STOP_GRACE_S = 120.0  # how long Ctrl-C waits for running items to finish their step and save
POLL_S = 0.5


@dataclass
class BatchSummary:
    total: int  # items of this process (its shard)
    done: int
    failed: int
    skipped: int  # already done before this run
    interrupted: bool
    manifest: Path
    gallery: Path

    def describe(self) -> str:
        left = self.total - self.done - self.failed
        text = f"{self.done}/{self.total} done ({self.skipped} already before), {self.failed} failed"
        return text + (f", {left} left" if left else "")


def plan_batch(options: BatchOptions, train_args: list[str], parse_config: ConfigParser) -> list[WorkItem]:
    """Every item of the list (all shards), validated."""
    options.validate()
    objectives, seeds = options.objective_names(), options.seed_values()
    check_train_flags(train_args, crossing_objectives=bool(objectives))
    items = cross(read_prompt_list(options.prompts), objectives, seeds)
    return plan_items(items, options.out, parse_config, options.preset, train_args)


def shard_of(items: list[WorkItem], shard: tuple[int, int] | None) -> list[WorkItem]:
    """Items I-1, I-1+N, ... of the list for shard (I, N): every item in exactly one shard."""
    if shard is None:
        return list(items)
    index, count = shard
    return [item for position, item in enumerate(items) if position % count == index - 1]


def _entry_for(item: WorkItem) -> ManifestEntry:
    return ManifestEntry(
        id=item.id,
        prompt=item.config.prompt,
        objective=item.objective,
        seed=item.config.seed,
        where=item.where,
        run=item.id,
        log=f"{LOG_DIR}/{item.id}.log",
    )


def _is_done(entry: ManifestEntry, out_dir: Path) -> bool:
    return entry.status == "done" and entry.ply is not None and (out_dir / entry.ply).is_file()


class BatchRun:
    """One `splatgen batch` process over its items (see the module docstring)."""

    def __init__(self, options: BatchOptions, plan: list[WorkItem], console: Console) -> None:
        self.options, self.plan, self.console = options, plan, console
        self.out = Path(options.out).absolute()  # workers may run with another working directory
        self.shard = options.resolved_shard()
        self.items = shard_of(plan, self.shard)
        self.manifest = Manifest(Manifest.path_in(self.out, self.shard))
        self.lost: dict[str, int] = {}
        self.interrupted = False

    def run(self) -> BatchSummary:
        lock = lock_batch(self.out, self.shard)
        try:
            todo, skipped = self._merge_manifest()
            if self.shard is not None:
                self.console.print(
                    f"shard {self.shard[0]}/{self.shard[1]}: {len(self.items)} of {len(self.plan)} items"
                )
            if todo:
                self._run_items(todo, skipped)
            else:
                self.console.print(f"nothing to do: all {len(self.items)} items are done", highlight=False)
            return self._summary(skipped)
        finally:
            self._write_gallery(running=False)
            lock.release()

    def _merge_manifest(self) -> tuple[list[WorkItem], int]:
        previous = Manifest.load(self.manifest.path).entries
        recorded = {entry.id: entry for entry in all_entries(self.out)}  # other shards' runs count too
        todo, skipped = [], 0
        for item in self.items:
            entry = previous.get(item.id) or recorded.get(item.id) or _entry_for(item)
            entry.where = item.where  # the line may have moved in the list
            if _is_done(entry, self.out):
                skipped += 1
            else:
                entry.status = "queued"
                entry.worker = None
                todo.append(item)
            self.manifest.entries[item.id] = entry
        self.manifest.save()
        return todo, skipped

    def _run_items(self, todo: list[WorkItem], skipped: int) -> None:
        engine = make_engine(
            self.options.engine,
            self.out / LOG_DIR,
            self.options.workers,
            self.options.ray_address,
            self.options.retries,
            announce=lambda text: self.console.print(text, highlight=False, soft_wrap=True),
        )
        queue = deque(todo)
        try:
            engine.start()
            with BatchProgress(self.console, len(self.items), skipped, engine.workers) as progress:
                try:
                    while (queue and not self.interrupted) or engine.busy():
                        while queue and not self.interrupted and engine.idle():
                            item = queue.popleft()
                            where = engine.submit(item)
                            attempts = self.manifest.entries[item.id].attempts + 1
                            self.manifest.update(item.id, status="running", attempts=attempts, worker=where, error=None)
                            progress.started(item.id, where)
                            self._write_gallery(running=True)
                        finished = engine.poll(POLL_S)
                        if finished is not None:
                            self._record(*finished, queue, progress)
                except KeyboardInterrupt:
                    self.interrupted = True
                    progress.line("Ctrl-C: the running items stop after their current step and save")
                    for item, outcome in engine.stop(STOP_GRACE_S):
                        self._record(item, outcome, queue, progress)
        finally:
            engine.close()

    def _record(self, item: WorkItem, outcome: Outcome, queue: deque, progress: BatchProgress) -> None:
        entry = self.manifest.entries[item.id]
        seconds = round(entry.seconds + outcome.seconds, 3)
        status, detail = outcome.status, outcome.error or ""
        if outcome.status == "done":
            self.manifest.update(
                item.id, status="done", seconds=seconds, steps=outcome.steps, error=None, **self._paths(item)
            )
            detail = entry.ply or item.id
        elif outcome.status == "lost":
            self.lost[item.id] = self.lost.get(item.id, 0) + 1
            if self.lost[item.id] <= self.options.retries:
                queue.append(item)
                status, detail = "retry", f"{detail}; retrying ({self.lost[item.id]}/{self.options.retries})"
                self.manifest.update(item.id, status="queued", seconds=seconds, error=outcome.error)
            else:
                status = "failed"
                error = f"{outcome.error}, {self.lost[item.id]} times; not retried again"
                self.manifest.update(item.id, status="failed", seconds=seconds, error=error)
                detail = error
        elif outcome.status in ("interrupted", "busy"):
            self.interrupted = self.interrupted or outcome.status == "interrupted"
            self.manifest.update(item.id, status="queued", seconds=seconds, steps=outcome.steps, error=outcome.error)
            status = "stopped" if outcome.status == "interrupted" else "skipped"
        else:
            self.manifest.update(item.id, status="failed", seconds=seconds, error=outcome.error)
        progress.finished(item.id, status, outcome.seconds, detail)
        self._write_gallery(running=not self.interrupted)

    def _paths(self, item: WorkItem) -> dict[str, str | None]:
        run = self.out / item.id

        def relative(path: Path) -> str | None:
            return path.relative_to(self.out).as_posix() if path.is_file() else None

        from splatgen.io.run_folder import RunFolder, slugify

        ply = RunFolder(run, slugify(item.config.prompt)).ply_path
        return {
            "ply": relative(ply),
            "video": relative(run / "turntable.mp4") or relative(run / "turntable.gif"),
            "views": relative(run / "views.png"),
            "mesh": relative(ply.with_suffix(".glb")),
            "report": relative(run / "report.html"),
        }

    def _write_gallery(self, running: bool) -> None:
        """All items of the list: this process's entries, other shards' recorded ones, the rest as queued."""
        recorded = {entry.id: entry for entry in all_entries(self.out)}
        recorded.update(self.manifest.entries)
        entries = [recorded.get(item.id) or _entry_for(item) for item in self.plan]
        write_gallery(self.out, entries, running=running)

    def _summary(self, skipped: int) -> BatchSummary:
        counts = self.manifest.counts()
        return BatchSummary(
            total=len(self.items),
            done=counts["done"],
            failed=counts["failed"],
            skipped=skipped,
            interrupted=self.interrupted,
            manifest=self.manifest.path,
            gallery=self.out / "index.html",
        )


def run_batch(
    options: BatchOptions, train_args: list[str], parse_config: ConfigParser, console: Console | None = None
) -> BatchSummary:
    """Plan the batch (every error before anything is written), then run this process's items."""
    console = console or Console()
    started = time.perf_counter()
    plan = plan_batch(options, train_args, parse_config)
    summary = BatchRun(options, plan, console).run()
    console.print(
        f"batch: {summary.describe()} in {time.perf_counter() - started:.0f} s; "
        f"manifest {summary.manifest}, gallery {summary.gallery}",
        highlight=False,
        soft_wrap=True,
    )
    return summary
