"""Diffusion priors behind one protocol (`base.py`): what the training step reads of a prior.

base.py              DiffusionPrior, add_noise (the forward process), batched_noise_predictions (CFG batches)
stable_diffusion.py  Stable Diffusion 2.1-base through diffusers
mvdream.py           the MVDream multi-view prior (prior:mvdream): 4-view groups, camera-conditioned
multiview.py         cross-view attention, camera embedding keys, LDM-name mapping, MVDream's camera recipe
lora.py              the VSD/ESD LoRA score eps_phi on a Stable Diffusion UNet
oracle.py            a prior that knows the target asset (exact reconstruction tests)
loading.py, tiny.py  finding / building model weights (hub, mirrors, tiny random models)
"""

from splatgen.prior.base import DiffusionPrior, add_noise, batched_noise_predictions

__all__ = ["DiffusionPrior", "add_noise", "batched_noise_predictions"]
