"""Rebuild a network from its ``architecture`` dict (the one a model manifest stores).

Every model sets ``self.architecture = {"name": <class name>, "config": {<constructor
kwargs as JSON values>}}``; :func:`build_model` turns that dict back into an identical,
freshly initialised network (load the weights afterwards).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from MultiModalSegLib.errors import MultiModalSegError
from MultiModalSegLib.models.fusion_unet import FusionUNet
from MultiModalSegLib.models.maml import MAML
from MultiModalSegLib.models.vnet import DTCVNet

MODEL_CLASSES: dict[str, type[nn.Module]] = {"MAML": MAML, "DTCVNet": DTCVNet, "FusionUNet": FusionUNet}


def build_model(architecture: dict[str, Any]) -> nn.Module:
    """Build the network that ``architecture`` (``{"name": ..., "config": {...}}``) describes.

    Raises :class:`MultiModalSegError` for an unknown name, unknown or missing config keys
    and invalid values.
    """
    if not isinstance(architecture, dict) or not isinstance(architecture.get("name"), str):
        raise MultiModalSegError(
            "The model's architecture must be a dict like {\"name\": \"MAML\", \"config\": {...}}; "
            "check the model manifest.")
    name = architecture["name"]
    model_class = MODEL_CLASSES.get(name)
    if model_class is None:
        raise MultiModalSegError(
            f"Unknown architecture '{name}': use one of {', '.join(MODEL_CLASSES)} "
            "(or update MultiModalSeg if the model is newer).")
    config = architecture.get("config", {})
    if not isinstance(config, dict):
        raise MultiModalSegError(f"The config of architecture '{name}' must be a JSON object, not {config!r}.")

    parameters = inspect.signature(model_class.__init__).parameters
    accepted = {key for key in parameters if key != "self"}
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise MultiModalSegError(
            f"Architecture '{name}' has no setting {', '.join(unknown)}; it accepts {', '.join(sorted(accepted))}.")
    required = [key for key, p in parameters.items()
                if key != "self" and p.default is inspect.Parameter.empty and key not in config]
    if required:
        raise MultiModalSegError(f"Architecture '{name}' needs the setting(s) {', '.join(required)} in its config.")
    return model_class(**config)
