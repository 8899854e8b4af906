"""Feature extractors: the interface, and a registry of backends loaded on first use.

A backend is any object with ``model_id``, ``dim`` and ``embed_aligned(faces)``. The
built-in ones (ONNX Runtime, TensorFlow) are registered exactly like third-party ones:
by a dotted path that is imported only when the backend is asked for. Other packages
add theirs through the ``faceid_sdk.extractors`` entry-point group.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import BackendUnavailableError

__all__ = [
    "Extractor",
    "available_backends",
    "default_extractor",
    "get_extractor",
    "register_backend",
]


@runtime_checkable
class Extractor(Protocol):
    """Aligned faces in, L2-normalized feature vectors out."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_aligned(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Embed ``(n, size, size, 3)`` RGB uint8 faces aligned to the canonical template."""
        ...


# name -> (dotted path "module:attribute", module that must be importable, extra to install)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "onnx": ("faceid_adapters.onnx:OnnxExtractor", "onnxruntime", "faceid-sdk[onnx]"),
    "tensorflow": ("faceid_adapters.tensorflow:KerasExtractor", "tensorflow",
                   "faceid-sdk[tensorflow]"),
}
#: Preference order when no backend is named: the lightest first.
_DEFAULT_ORDER = ("onnx", "tensorflow")


def register_backend(name: str, target: str, requires: str, extra: str) -> None:
    """Register a backend by dotted path; nothing is imported until it is used."""
    _REGISTRY[name] = (target, requires, extra)


def _load_entry_points() -> None:
    for ep in entry_points(group="faceid_sdk.extractors"):
        _REGISTRY.setdefault(ep.name, (ep.value, ep.value.split(":")[0].split(".")[0], ep.name))


def available_backends() -> dict[str, str]:
    """Each registered backend and whether it can load here, without importing it."""
    _load_entry_points()
    status = {}
    for name, (_, requires, extra) in sorted(_REGISTRY.items()):
        found = importlib.util.find_spec(requires) is not None
        status[name] = "available" if found else f"not installed (pip install '{extra}')"
    return status


def get_extractor(name: str, **options: Any) -> Extractor:
    """Instantiate the backend called *name* (``"onnx"``, ``"tensorflow"``, ...)."""
    _load_entry_points()
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"extractor backend must be one of {sorted(_REGISTRY)} (got {name!r})"
        )
    target, requires, extra = _REGISTRY[name]
    if importlib.util.find_spec(requires) is None:
        raise BackendUnavailableError(
            f"the {name!r} extractor needs {requires!r}, which is not installed: "
            f"pip install '{extra}'"
        )
    module_name, _, attribute = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attribute)
    extractor: Extractor = factory(**options)
    return extractor


def default_extractor(**options: Any) -> Extractor:
    """The lightest installed backend running the shipped FFEM-AM weights."""
    for name in _DEFAULT_ORDER:
        if importlib.util.find_spec(_REGISTRY[name][1]) is not None:
            return get_extractor(name, **options)
    raise BackendUnavailableError(
        "no extractor backend is installed: pip install 'faceid-sdk[onnx]' (light) "
        "or 'faceid-sdk[tensorflow]'"
    )
