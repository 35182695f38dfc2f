"""`splatgen batch`: many prompts -> many assets, on one machine or a Ray cluster, resumable, with a gallery.

    splatgen batch prompts.txt --out runs/props --preset dsds
    splatgen batch prompts.jsonl --out runs/cmp --objectives dsds,sds,esd --seeds 0,1,2 --steps 600
    splatgen batch prompts.txt --out runs/props --engine ray --ray-address 10.0.0.5:6379
    splatgen batch prompts.txt --out runs/props --shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT

Contract:
- PROMPTS is a text file (one prompt a line, `#` comments) or JSONL (`prompt`, `seed`, `preset`,
  `objective`, any other TrainConfig field); lines x `--objectives` x `--seeds` are the items. A bad
  line is one `PromptListError` naming file:line, before anything is written (`items.py`, `plan.py`).
- One item = one ordinary run folder `DIR/<slug>-<objective>-s<seed>[-<hash>]`, trained by the same
  `train()` as `splatgen train` (its report.html too), so `splatgen train --resume DIR/<id>` and every
  other command work on it. Each worker keeps the prior and the debiasing LM loaded across items
  (`train.assemble.ModelCache`) (`worker.py`).
- `DIR/manifest.jsonl`: one line per item (id, status queued/running/done/failed, attempts, seconds,
  paths relative to DIR, one-line error, worker), rewritten atomically; the process running the batch
  holds `DIR/.batch.lock` (a second one is refused with one line); a `--shard I/N` process has its own
  manifest and lock, so shards share DIR (`manifest.py`).
- Nothing lost, nothing repeated: a re-run skips done items and resumes the others from their
  checkpoints; a failing item is recorded and the batch goes on; an item whose worker died is run
  again (at most `--retries` times) and the worker replaced; a run folder owned by another live
  process is reported, never raced; Ctrl-C stops the running items after their step, saved (`run.py`).
- Engines (`engines.py`): `ray` (Ray actors, one per GPU with `num_gpus=1`, or `--workers` CPU actors;
  a local cluster unless `--ray-address`) and `local` (one worker in this process).
- `DIR/index.html`: one card per item (turntable, views, prompt, objective, seed, time, status,
  links to the PLY, mesh, report, metrics, eval, config, log), rewritten as items change (`gallery.py`);
  the console shows an overall progress bar (`progress.py`).
"""

from splatgen.batch.items import PromptListError
from splatgen.batch.manifest import BatchBusy
from splatgen.batch.options import BatchOptionError, BatchOptions
from splatgen.batch.run import BatchSummary, run_batch

__all__ = ["BatchBusy", "BatchOptionError", "BatchOptions", "BatchSummary", "PromptListError", "run_batch"]
