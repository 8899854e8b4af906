"""The shipped model's identity card, read from JSON so no framework is imported."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final

import attrs

from .errors import BackendUnavailableError, InvalidFeatureError

__all__ = [
    "PAPER_THRESHOLD",
    "REJECT_AMBIGUOUS",
    "ModelInfo",
    "Threshold",
    "calibrated_threshold",
    "default_model_info",
    "resolve_threshold",
]

#: The paper's fixed decision rule: accept below Euclidean distance 0.5 on unit vectors. It
#: is not calibrated for any model; pass it explicitly (``--threshold paper``) to use it.
PAPER_THRESHOLD: Final = 0.5

#: Whether the store-backed surfaces (the Enroller, every CLI command, ``serve``) refuse an
#: answer when a second identity is under the threshold too (``--allow-ambiguous`` turns it
#: off). One default for all of them, so one store gives one answer whoever is asked.
REJECT_AMBIGUOUS: Final = True

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


@attrs.frozen
class Threshold:
    """A decision threshold and where it came from (shown by ``info`` and ``serve``)."""

    value: float
    source: str

    def __str__(self) -> str:
        return f"{self.value:.4f} ({self.source})"


def calibrated_threshold(model_id: str | None = None) -> Threshold | None:
    """The shipped model's calibrated default, or ``None`` for any other *model_id*.

    ``model.json`` carries ``calibration``: thresholds measured on people outside training,
    one per false-accept rate, and which of them is the default.
    """
    try:
        info = default_model_info()
    except BackendUnavailableError:
        return None
    if model_id is not None and model_id != info.model_id:
        return None
    calibration = info.metadata.get("calibration")
    if not calibration:
        return None
    key = calibration["default"]
    return Threshold(float(calibration["thresholds"][key]),
                     f"{info.model_id} calibrated for {key.replace('_', ' ')}")


def resolve_threshold(
    given: float | str | None, *, model_id: str | None, stored: float | None = None
) -> Threshold:
    """The one rule for the decision threshold, used by the SDK, the CLI and ``serve``.

    In order: *given* (a distance, or ``"paper"`` for the paper's 0.5); the threshold saved
    in the store by ``faceid-sdk calibrate --save`` (*stored*); the shipped model's
    calibrated default when *model_id* is the shipped model; else the paper's rule.
    """
    if isinstance(given, str):
        if given.strip().lower() == "paper":
            return Threshold(PAPER_THRESHOLD, "the paper's fixed rule")
        try:
            given = float(given)
        except ValueError:
            raise InvalidFeatureError(
                f"threshold must be a distance > 0 or 'paper' (got {given!r})", code="threshold"
            ) from None
    if given is not None:
        return Threshold(float(given), "given")
    if stored is not None:
        return Threshold(float(stored), "calibrated on this store's own data")
    calibrated = calibrated_threshold(model_id)
    if calibrated is not None:
        return calibrated
    return Threshold(PAPER_THRESHOLD, "the paper's fixed rule (no calibration for this model)")
