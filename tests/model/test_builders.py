"""The Keras builders: sizes from the paper, stock layers only, names that load by path."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from faceid_sdk.model import (  # noqa: E402
    build_ffem_am,
    build_mobilenet_v2,
    build_shufflenet_v2,
    eca_kernel_size,
    model_stats,
)

pytestmark = pytest.mark.tensorflow


@pytest.fixture(scope="module")
def ffem_am() -> keras.Model:
    return build_ffem_am()


def test_ffem_am_size_matches_the_issue(ffem_am: keras.Model) -> None:
    """FFEM-AM 128-d has 2.23 M parameters, 8.9 MB in float32 and fits 6.5 MB in float16."""
    stats = model_stats(ffem_am)
    assert round(stats.parameters / 1e6, 2) == 2.23
    assert round(stats.weight_bytes_float32 / 1e6, 1) == 8.9
    assert stats.weight_bytes_float16 <= 6.5e6
    assert "2.23 M params" in repr(stats)


def test_fourteen_bottlenecks_with_eca_in_first_and_last(ffem_am: keras.Model) -> None:
    """Table 1 has 14 bottlenecks; Figure 4 puts ECA only in the first and the last."""
    names = [layer.name for layer in ffem_am.layers]
    blocks = {n.split("_")[1] for n in names if n.startswith("block_")}
    assert len(blocks) == 14
    eca = sorted({n.split("_eca")[0] for n in names if "_eca_" in n})
    assert eca == ["block_0", "block_13"]


def test_eca_kernel_sizes() -> None:
    """ECA's kernel is the odd number nearest (log2 C + 1) / 2."""
    assert eca_kernel_size(32) == 3
    assert eca_kernel_size(960) == 5
    assert all(eca_kernel_size(c) % 2 == 1 for c in range(2, 4096, 7))


def test_only_stock_layers(ffem_am: keras.Model) -> None:
    """No Lambda or custom layer, so ONNX and TF.js exporters see only known ops."""
    for layer in ffem_am.layers:
        assert type(layer).__module__.startswith("keras."), layer
        assert type(layer).__name__ != "Lambda"


def test_layer_names_unique_and_prefixed(ffem_am: keras.Model) -> None:
    """Every weight has a unique path, so float16 npz weights load by name."""
    paths = [w.path for w in ffem_am.weights]
    assert len(paths) == len(set(paths))
    assert "block_3_expand/kernel" in paths


def test_output_is_unit_length(ffem_am: keras.Model) -> None:
    """The model contract: L2-normalized 128-d features for 96x96x3 inputs in [-1, 1]."""
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 96, 3)).astype(np.float32)
    y = np.asarray(ffem_am(x, training=False))
    assert y.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)


def test_ffem_ablation_differs_only_by_attention() -> None:
    """FFEM (attention=False) has the same weights minus the two ECA convolutions."""
    with_eca = model_stats(build_ffem_am()).parameters
    without = model_stats(build_ffem_am(attention=False)).parameters
    assert with_eca - without == 3 + 5


@pytest.mark.slow
def test_baselines_build() -> None:
    """MobileNetV2 (17 bottlenecks) and ShuffleNetV2 1.0x build at 96x96 with the same head."""
    assert 2.3e6 < model_stats(build_mobilenet_v2()).parameters < 2.5e6
    assert 1.2e6 < model_stats(build_shufflenet_v2()).parameters < 1.6e6


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_rejects_bad_embedding_dim(bad: object) -> None:
    """The builder validates before building, with the field and the value in the message."""
    with pytest.raises(ValueError, match="embedding_dim"):
        build_ffem_am(bad)  # type: ignore[arg-type]
