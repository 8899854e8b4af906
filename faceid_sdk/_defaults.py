"""The shipped model's identity card, read from JSON so no framework is imported."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import attrs

from .errors import BackendUnavailableError

__all__ = ["ModelInfo", "default_model_info"]

DEFAULT_MODEL_PACKAGE = "faceid_sdk.models.ffem_am"


@attrs.frozen
class ModelInfo:
    """What a server needs to know about the model its clients run."""

    model_id: str
    dim: int
    input_size: int
    metadata: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


def default_model_info() -> ModelInfo:
    """Model id and dimension of the FFEM-AM weights shipped in this package."""
    try:
        text = resources.files(DEFAULT_MODEL_PACKAGE).joinpath("model.json").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise BackendUnavailableError(
            "this faceid-sdk installation ships no default model (model.json not found): "
            "pass --model-id and --dim explicitly, or reinstall faceid-sdk"
        ) from exc
    data = json.loads(text)
    # The model card's field is "embedding_dim"; "dim" is accepted for hand-written files.
    dim = data.get("embedding_dim", data.get("dim"))
    return ModelInfo(model_id=data["model_id"], dim=int(dim),
                     input_size=int(data.get("input_size", 96)), metadata=data)
