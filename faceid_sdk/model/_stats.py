"""Size and cost of a Keras model: parameters, weight bytes and multiply-adds."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ModelStats", "model_stats"]


@attrs.frozen
class ModelStats:
    """What a model costs: parameters, bytes of weights at a given precision, multiply-adds."""

    name: str
    parameters: int
    trainable_parameters: int
    weight_bytes_float32: int
    weight_bytes_float16: int
    multiply_adds: int
    input_size: int
    embedding_dim: int

    def __repr__(self) -> str:
        return (
            f"<ModelStats {self.name}: {self.parameters / 1e6:.2f} M params, "
            f"{self.weight_bytes_float32 / 1e6:.1f} MB float32, "
            f"{self.multiply_adds / 1e6:.0f} M MACs>"
        )

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def model_stats(model: Any) -> ModelStats:
    """Count parameters, weight bytes and multiply-adds of a built Keras model.

    Multiply-adds count convolutions, depthwise convolutions, the ECA 1-D convolutions and
    dense layers (one per weight per output position); batch norm, activations and pooling
    are left out, as is usual in the MobileNet papers.
    """
    from keras import layers

    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            h, w, c = _shape(layer.output)
            kh, kw = layer.kernel_size
            macs += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            h, w, cout = _shape(layer.output)
            cin = _shape(layer.input)[-1]
            kh, kw = layer.kernel_size
            macs += h * w * cout * cin * kh * kw // layer.groups
        elif isinstance(layer, layers.Conv1D):
            length, cout = _shape(layer.output)
            cin = _shape(layer.input)[-1]
            macs += length * cout * cin * layer.kernel_size[0]
        elif isinstance(layer, layers.Dense):
            macs += _shape(layer.input)[-1] * layer.units
    params = sum(int(w.numpy().size) for w in model.weights)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    return ModelStats(
        name=model.name,
        parameters=params,
        trainable_parameters=trainable,
        weight_bytes_float32=4 * params,
        weight_bytes_float16=2 * params,
        multiply_adds=macs,
        input_size=int(model.input_shape[1]),
        embedding_dim=int(model.output_shape[-1]),
    )
