"""Training: the loop and everything a run needs around it.

config.py      TrainConfig, the dataclass tree every flag of `splatgen train` comes from
assemble.py    building a run's parts once: device, run folder, models, prompts, LoRA, viewer
distill.py     one score-distillation step on a batch of latents (prior + objective)
loop.py        `train(config)`: cameras -> render -> prior -> objective -> step -> densify -> log
optim.py       optimisers and learning-rate schedules
progress.py    the rich progress display / plain log lines
run_folder.py  where a run's files live; checkpoint.py: resumable, atomic checkpoints
"""
