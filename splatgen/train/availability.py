"""Before any model loads: is every model this run needs available? All answers in one message.

A run needs the Stable Diffusion prior (`--prior.model`), MVDream's UNet with `prior:mvdream`
(`--prior.unet`), the masked LM when prompts are debiased (`--prompts.lm`) and Shap-E when it
initialises the Gaussians (`--init.model`); `splatgen eval` needs its CLIP (`--clip-model`,
checked by the command with `check_available`). Each is a reserved name (`tiny-random`,
`sd21-base-random`: built locally), a local folder (or, for MVDream's UNet, a `.safetensors` file), or a hub id. Hub ids are looked up in the
local hub cache when the hub cannot be used: `HF_HUB_OFFLINE=1`, or no answer from the hub host
within `PROBE_TIMEOUT_S` (one TCP connect, no request). In the second case the process switches
the hub client to offline mode, so no loader sits through its retry loop afterwards.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from splatgen.errors import SplatgenError
from splatgen.prior.mvdream import UNET_DOWNLOAD_OPTIONS, UNET_WEIGHTS, MVDreamConfig
from splatgen.scene.shap_e import ShapEInit
from splatgen.tiny_models import RESERVED_MODEL_IDS
from splatgen.train.config import TrainConfig

PROBE_TIMEOUT_S = 2.0
DEFAULT_ENDPOINT = "https://huggingface.co"


class ModelsUnavailable(SplatgenError):
    """One or more models a run needs are neither local nor reachable; the message lists them all."""


@dataclass(frozen=True)
class NeededModel:
    setting: str  # the flag that chooses it, e.g. --prior.model
    name: str  # hub id or folder
    markers: tuple[
        str, ...
    ]  # files a usable copy has (relative to its root): any one will do; the hub cache is asked for the first
    revision: str | None = None  # hub revision (None = the default branch)
    single_file: bool = False  # a local `.safetensors` file is a usable copy too (MVDream's UNet)
    download_options: str = ""  # what `hf download ID` needs besides `--local-dir DIR` (e.g. one subfolder)

    def download_hint(self) -> str:
        """How to get a copy on a machine with network, and pass it."""
        return f"`hf download {self.name}{self.download_options} --local-dir DIR` and pass {self.setting} DIR"


def needed_models(config: TrainConfig, include_prior: bool = True) -> list[NeededModel]:
    """The models `config` will load, in loading order."""
    needed = []
    if config.prompts.debias:
        needed.append(NeededModel("--prompts.lm", config.prompts.lm, ("config.json",)))
    if include_prior:
        prior = config.prior
        needed.append(NeededModel("--prior.model", prior.model, ("unet/config.json",), prior.revision))
        if isinstance(prior, MVDreamConfig):
            markers = (UNET_WEIGHTS, Path(UNET_WEIGHTS).name)  # in unet/ or at the folder's top (mvdream.py)
            needed.append(
                NeededModel(
                    "--prior.unet",
                    prior.unet,
                    markers,
                    prior.unet_revision,
                    single_file=True,
                    download_options=UNET_DOWNLOAD_OPTIONS,
                )
            )
    if isinstance(config.init, ShapEInit):
        needed.append(NeededModel("--init.model", config.init.model, ("model_index.json",)))
    return [model for model in needed if model.name not in RESERVED_MODEL_IDS]


def hub_offline_requested() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "")).upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }


def hub_address() -> tuple[str, int]:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT))
    return endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub host opens within `timeout_s` (DNS failure counts as no)."""
    try:
        with socket.create_connection(hub_address(), timeout=timeout_s):
            return True
    except OSError:
        return False


def go_offline() -> None:
    """Put the hub client (and so transformers and diffusers) in offline mode for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


def looks_local(name: str) -> bool:
    from splatgen.prior.loading import looks_like_hub_id

    return Path(name).expanduser().exists() or not looks_like_hub_id(name)


def cached(model: NeededModel) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model.name, model.markers[0], revision=model.revision), str)


def missing_reason(model: NeededModel, offline: bool) -> str | None:
    """Why `model` cannot be loaded, or None when it can (or may: an online hub id is left to the loader)."""
    if looks_local(model.name):
        path = Path(model.name).expanduser()
        if model.single_file and path.is_file():
            return None if path.suffix == ".safetensors" else f"{model.setting} {model.name}: not a .safetensors file"
        if not path.is_dir():
            return f"{model.setting} {model.name}: no such {'file or folder' if model.single_file else 'folder'}"
        if not any((path / marker).is_file() for marker in model.markers):
            return f"{model.setting} {model.name}: the folder has no {' or '.join(model.markers)}"
        return None
    if offline and not cached(model):
        return f"{model.setting} {model.name}: not in the local hub cache"
    return None


def check_models_available(config: TrainConfig, include_prior: bool = True) -> None:
    """Raise `ModelsUnavailable` naming every missing model of the run; switch to offline mode if the hub is unreachable."""
    hints = ("--no-debias runs without the LM",) if config.prompts.debias else ()
    check_available(needed_models(config, include_prior), "this run", hints)


def check_available(needed: list[NeededModel], user: str = "this run", hints: tuple[str, ...] = ()) -> None:
    """Raise `ModelsUnavailable` naming every model of `needed` that cannot be loaded (`user` needs them;
    `hints` end the message); switch the hub client to offline mode if the hub is unreachable."""
    if not needed:
        return
    offline = hub_offline_requested()
    why_offline = "HF_HUB_OFFLINE=1 is set"
    if not offline and any(not looks_local(model.name) for model in needed) and not hub_reachable():
        go_offline()
        offline = True
        host, port = hub_address()
        why_offline = f"the hub ({host}:{port}) cannot be reached"
    missing = [(model, reason) for model in needed if (reason := missing_reason(model, offline)) is not None]
    if not missing:
        return
    from_hub = [model.download_hint() for model, _ in missing if not looks_local(model.name)]
    download = f"; on a machine with network run {', '.join(from_hub)}" if from_hub else ""
    context = f" ({why_offline})" if offline else ""
    counted = f"{len(missing)} of the {len(needed)} models" if len(needed) > 1 else "the model"
    raise ModelsUnavailable(
        f"{counted} {user} needs {'is' if len(missing) == 1 else 'are'} unavailable{context}: "
        f"{'; '.join(reason for _, reason in missing)}{download}{''.join('; ' + hint for hint in hints)}. Nothing was created."
    )
