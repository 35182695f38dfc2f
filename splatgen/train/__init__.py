"""Training: the step, the loop around it, and everything a run needs.

config.py      TrainConfig, the dataclass tree every flag of `splatgen train` comes from
assemble.py    building a run's parts once: device, run folder, models, prompts, initial state, LoRA, viewer
step.py        `TrainState` and `train_step(state, region)`: cameras -> render -> prior -> objective -> step -> densify
availability.py  before loading: every model the run needs, checked at once (hub probe, cache)
distill.py     one score-distillation step on a batch of latents (prior + objective)
loop.py        `train(config)`: the loop around `train_step` (progress, checkpoints, viewer, Ctrl-C)
optim.py       optimisers and learning-rate schedules
progress.py    the rich progress display / plain log lines
checkpoint.py  resumable, atomic checkpoints of a `TrainState` (the run folder's layout: `io/run_folder.py`)
"""
