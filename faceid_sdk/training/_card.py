"""Model card writer: data, recipe, seed, command and measured numbers, as Markdown."""

from __future__ import annotations

from typing import Any

from ._evaluate import MARKDOWN_HEADER, markdown_row

__all__ = ["write_model_card"]


def write_model_card(
    *,
    info: dict[str, Any],
    config: dict[str, Any],
    command: str,
    reports: dict[str, dict[str, Any]],
    data_notes: str,
    extra: str = "",
) -> str:
    """Return the model card text; *reports* maps a row name to an evaluation report."""
    rows = "\n".join(markdown_row(name, rep) for name, rep in reports.items())
    cfg = "\n".join(f"| `{k}` | `{v}` |" for k, v in config.items() if k not in ("runs_dir",))
    return f"""# Model card: {info["model_id"]}

FFEM-AM (the paper's Face Feature Extraction Model with Attention: 14 inverted-residual
bottlenecks, ECA in the first and the last) producing a {info["embedding_dim"]}-d L2-normalized
feature from a {info["input_size"]}x{info["input_size"]} aligned RGB face. Compare features with
Euclidean distance; accept a match below a calibrated threshold.

- Weights: `faceid_sdk/models/ffem_am/weights.npz`, float16, {info["parameters"]:,} parameters
  ({2 * info["parameters"] / 1e6:.1f} MB), loaded by `faceid_sdk.model.load_default_keras()`.
- Input: {info["pixel_normalization"]}; alignment: dlib HOG detector + dlib 5-point landmarks,
  similarity transform onto the template in `model.json`, 112x112 crop resized to 96x96.

## Intended use and limits
Identification of people enrolled by the operator, on faces captured frontally and well lit
(a phone's front camera). Not for surveillance, not for inferring attributes, not for decisions
without a human in the loop. Trained on celebrity photos: accuracy on other populations, ages,
cameras or lighting is unmeasured; measure it on your own data before choosing a threshold.

## Training data and terms
{data_notes}

## Recipe
Command:

```
{command}
```

| setting | value |
|---|---|
{cfg}

## Measured
{MARKDOWN_HEADER}
{rows}

{extra}
"""
