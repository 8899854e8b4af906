"""Keras builders for FFEM-AM (the paper's Table 1) and the baselines it is compared with.

Every layer is named from a block prefix (``block_3_expand``, ``block_3_project_BN``) the way
``keras.applications.mobilenet_v2`` does it, so weights saved by name load into a rebuilt
model, and so exporters (ONNX, TF.js) see the same graph. Only stock layers are used: the ECA
attention is GlobalAveragePooling + Reshape + Conv1D + sigmoid + Multiply, and the final L2
normalization is ``keras.layers.UnitNormalization``; no ``Lambda``, nothing custom to register.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import keras

__all__ = [
    "FFEM_AM_BLOCKS",
    "MOBILENET_V2_BLOCKS",
    "build_ffem_am",
    "build_mobilenet_v2",
    "build_shufflenet_v2",
    "eca_kernel_size",
]

#: (expansion t, output channels c, repeats n, first stride s), Table 1 of the paper.
FFEM_AM_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 3, 2),
    (6, 96, 2, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: The same table for MobileNetV2 (Sandler et al. 2018): 17 bottlenecks instead of 14.
MOBILENET_V2_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Momentum 0.99, not keras.applications' 0.999: our runs are a few thousand steps, and
# moving averages with a 1000-step memory would still lag the weights at the end.
_BN = {"epsilon": 1e-3, "momentum": 0.99}


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: the odd number nearest ``(log2(C) + b) / gamma``."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


def _check_common(embedding_dim: int, input_size: int, minimum: int = 32) -> None:
    if not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool) or embedding_dim < 1:
        raise ValueError(
            f"'embedding_dim' must be a positive int (got {embedding_dim!r}); "
            "the shipped model uses 128"
        )
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < minimum:
        raise ValueError(
            f"'input_size' must be an int >= {minimum} (got {input_size!r}); the paper uses 96"
        )


def _eca(x: Any, prefix: str) -> Any:
    """Efficient Channel Attention (Wang et al. 2020) from stock layers only."""
    from keras import layers

    channels = int(x.shape[-1])
    k = eca_kernel_size(channels)
    w = layers.GlobalAveragePooling2D(name=f"{prefix}_eca_gap")(x)
    w = layers.Reshape((channels, 1), name=f"{prefix}_eca_reshape")(w)
    w = layers.Conv1D(
        1, k, padding="same", use_bias=False, activation="sigmoid", name=f"{prefix}_eca_conv"
    )(w)
    w = layers.Reshape((1, 1, channels), name=f"{prefix}_eca_weights")(w)
    return layers.Multiply(name=f"{prefix}_eca_scale")([x, w])


def _inverted_residual(
    x: Any, *, expansion: int, filters: int, stride: int, block_id: int, attention: bool
) -> Any:
    """MobileNetV2 bottleneck; with ``attention`` an ECA re-weights the depthwise output
    (Figure 4 of the paper) before the linear projection."""
    from keras import layers

    in_channels = int(x.shape[-1])
    prefix = f"block_{block_id}"
    inputs = x
    if expansion != 1:
        x = layers.Conv2D(
            in_channels * expansion, 1, padding="same", use_bias=False, name=f"{prefix}_expand"
        )(x)
        x = layers.BatchNormalization(name=f"{prefix}_expand_BN", **_BN)(x)
        x = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
    if stride == 2:
        # Explicit asymmetric padding, as keras.applications does, so the graph is the same
        # in every exporter ("same" padding with stride 2 differs between TF and ONNX).
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{prefix}_pad")(x)
    x = layers.DepthwiseConv2D(
        3,
        strides=stride,
        padding="same" if stride == 1 else "valid",
        use_bias=False,
        name=f"{prefix}_depthwise",
    )(x)
    x = layers.BatchNormalization(name=f"{prefix}_depthwise_BN", **_BN)(x)
    x = layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
    if attention:
        x = _eca(x, prefix)
    x = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{prefix}_project")(x)
    x = layers.BatchNormalization(name=f"{prefix}_project_BN", **_BN)(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}_add")([inputs, x])
    return x


def _head(x: Any, embedding_dim: int, last_channels: int = 1280) -> Any:
    from keras import layers

    x = layers.Conv2D(last_channels, 1, use_bias=False, name="conv_last")(x)
    x = layers.BatchNormalization(name="conv_last_BN", **_BN)(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    x = layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
    x = layers.Conv2D(embedding_dim, 1, use_bias=True, name="embedding_conv")(x)
    x = layers.Flatten(name="embedding_flatten")(x)
    # Unit length is part of the model contract: the server compares Euclidean distances
    # against a threshold calibrated on unit vectors.
    return layers.UnitNormalization(name="embedding")(x)


def _bottleneck_net(
    blocks: tuple[tuple[int, int, int, int], ...],
    *,
    embedding_dim: int,
    input_size: int,
    attention_blocks: frozenset[int],
    name: str,
) -> keras.Model:
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="stem_pad")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_BN", **_BN)(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    block_id = 0
    for t, c, n, s in blocks:
        for i in range(n):
            x = _inverted_residual(
                x,
                expansion=t,
                filters=c,
                stride=s if i == 0 else 1,
                block_id=block_id,
                attention=block_id in attention_blocks,
            )
            block_id += 1
    return keras.Model(inputs, _head(x, embedding_dim), name=name)


def build_ffem_am(
    embedding_dim: int = 128,
    attention: bool = True,
    input_size: int = 96,
    name: str | None = None,
) -> keras.Model:
    """Build FFEM-AM, the paper's Face Feature Extraction Model with Attention.

    Args:
      embedding_dim: length of the output feature vector (the shipped model uses 128).
      attention: put ECA in the first and the last bottleneck (FFEM-AM); ``False`` builds the
        paper's FFEM ablation, the same network without attention.
      input_size: side of the square RGB input, pixels scaled to [-1, 1]; the paper uses 96.
      name: model name; defaults to ``"ffem_am"`` or ``"ffem"``.

    Returns:
      An uncompiled ``keras.Model`` mapping ``(batch, input_size, input_size, 3)`` float
      images to L2-normalized ``(batch, embedding_dim)`` features.
    """
    _check_common(embedding_dim, input_size)
    n_blocks = sum(n for _, _, n, _ in FFEM_AM_BLOCKS)
    return _bottleneck_net(
        FFEM_AM_BLOCKS,
        embedding_dim=embedding_dim,
        input_size=input_size,
        attention_blocks=frozenset({0, n_blocks - 1}) if attention else frozenset(),
        name=name or ("ffem_am" if attention else "ffem"),
    )


def build_mobilenet_v2(
    embedding_dim: int = 128, input_size: int = 96, name: str = "mobilenet_v2"
) -> keras.Model:
    """Build the MobileNetV2 baseline (width 1.0, 17 bottlenecks) with the same embedding head.

    Args:
      embedding_dim: length of the output feature vector.
      input_size: side of the square RGB input; the paper compares at 96.
      name: model name.
    """
    _check_common(embedding_dim, input_size)
    return _bottleneck_net(
        MOBILENET_V2_BLOCKS,
        embedding_dim=embedding_dim,
        input_size=input_size,
        attention_blocks=frozenset(),
        name=name,
    )


def _channel_shuffle(x: Any, groups: int, prefix: str) -> Any:
    from keras import layers

    h, w, c = (int(d) for d in x.shape[1:])
    x = layers.Reshape((h, w, groups, c // groups), name=f"{prefix}_shuffle_split")(x)
    x = layers.Permute((1, 2, 4, 3), name=f"{prefix}_shuffle_permute")(x)
    return layers.Reshape((h, w, c), name=f"{prefix}_shuffle_merge")(x)


def _shuffle_branch(x: Any, out_channels: int, stride: int, prefix: str) -> Any:
    from keras import layers

    x = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_pw1")(x)
    x = layers.BatchNormalization(name=f"{prefix}_pw1_BN", **_BN)(x)
    x = layers.ReLU(name=f"{prefix}_pw1_relu")(x)
    x = layers.DepthwiseConv2D(
        3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_dw"
    )(x)
    x = layers.BatchNormalization(name=f"{prefix}_dw_BN", **_BN)(x)
    x = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{prefix}_pw2")(x)
    x = layers.BatchNormalization(name=f"{prefix}_pw2_BN", **_BN)(x)
    return layers.ReLU(name=f"{prefix}_pw2_relu")(x)


def _shuffle_unit(x: Any, out_channels: int, stride: int, prefix: str) -> Any:
    from keras import layers

    half = out_channels // 2
    if stride == 1:
        c = int(x.shape[-1])
        # Channel split by slicing: the baseline is only trained and evaluated here, never
        # exported, so a sliced KerasTensor (a Keras op, not a Lambda) is acceptable.
        a = x[..., : c // 2]
        b = _shuffle_branch(x[..., c // 2 :], half, 1, f"{prefix}_right")
        out = layers.Concatenate(name=f"{prefix}_concat")([a, b])
    else:
        a = layers.DepthwiseConv2D(
            3, strides=2, padding="same", use_bias=False, name=f"{prefix}_left_dw"
        )(x)
        a = layers.BatchNormalization(name=f"{prefix}_left_dw_BN", **_BN)(a)
        a = layers.Conv2D(half, 1, use_bias=False, name=f"{prefix}_left_pw")(a)
        a = layers.BatchNormalization(name=f"{prefix}_left_pw_BN", **_BN)(a)
        a = layers.ReLU(name=f"{prefix}_left_relu")(a)
        b = _shuffle_branch(x, half, 2, f"{prefix}_right")
        out = layers.Concatenate(name=f"{prefix}_concat")([a, b])
    return _channel_shuffle(out, 2, prefix)


def build_shufflenet_v2(
    embedding_dim: int = 128, input_size: int = 96, name: str = "shufflenet_v2"
) -> keras.Model:
    """Build the ShuffleNetV2 1.0x baseline (Ma et al. 2018) with the same embedding head.

    Args:
      embedding_dim: length of the output feature vector.
      input_size: side of the square RGB input; the paper compares at 96.
      name: model name.
    """
    import keras
    from keras import layers

    _check_common(embedding_dim, input_size, minimum=64)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_BN", **_BN)(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (channels, repeats) in enumerate(((116, 4), (232, 8), (464, 4)), start=2):
        for i in range(repeats):
            x = _shuffle_unit(x, channels, 2 if i == 0 else 1, f"stage{stage}_unit{i}")
    return keras.Model(inputs, _head(x, embedding_dim, last_channels=1024), name=name)
