"""FFEM-AM in PyTorch, trained on a GPU from a pack made by :mod:`faceid_sdk.training.gpu`.

This file runs on its own: ``python3 faceid_sdk/training/torch_student.py PACK --out DIR``
imports only the standard library, NumPy, OpenCV and PyTorch, never ``faceid_sdk`` (whose
core needs FAISS, absent on a bare GPU machine). Everything it must agree on with the Keras
model comes from the pack's ``pack.json``: the bottleneck table, where the attention sits, the
batch-norm constants, the view parameters' columns; the weights start from the pack's
``init.npz`` (Keras weight paths) and end in ``weights.npz`` with the same keys, which
``python -m faceid_sdk.training.gpu import`` loads into the Keras FFEM-AM that ships.

What the GPU does per step, from an online pack (the default): picks crops, draws fresh view
parameters from the pack's view distribution, renders them (the similarity warp, mirror,
colour and blur that ``render_views`` applies with OpenCV on the CPU, to within a level or
two), blends the run's share of them with another view of the batch as the CPU trainer does,
and runs the teacher (:class:`IRProgram`, the OpenVINO IR as PyTorch ops) on exactly those
inputs for the targets. From a pack of views (``--views``), it picks (crop, view) pairs and
replays their targets, computed beforehand on the CPU. The loss either way:
``1 - cosine`` plus ``relational_weight`` times the mean squared difference of the in-batch
cosine-similarity matrices. The learning rate follows a warm-up and a cosine decay over the
*time* budget, so the run ends on schedule whatever the GPU's speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("faceid_sdk.torch_student")


# ------------------------------------------------------------------------------------ model


class FFEMAM(nn.Module):
    """The Keras FFEM-AM layer for layer, its layers keyed by the Keras layer names.

    ``arch`` is ``pack.json``'s ``architecture``: ``blocks`` (t, c, n, s), ``attention_blocks``,
    ``eca_kernels`` (block id to kernel size), ``embedding_dim``, ``last_channels``,
    ``bn_epsilon`` and ``bn_momentum`` (Keras's convention: the moving average keeps that much).
    Input: NCHW float images already scaled to [-1, 1]; output: unit-length embeddings.
    """

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        eps, momentum = float(arch["bn_epsilon"]), 1.0 - float(arch["bn_momentum"])
        self.layer = nn.ModuleDict()
        self.plan: list[dict[str, Any]] = []
        self.bn_of: dict[str, str] = {}

        def conv(name: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                 bn: str | None = None) -> None:
            self.layer[name] = nn.Conv2d(cin, cout, k, stride, 0, groups=groups, bias=False)
            self.bn_of[name] = bn or name + "_BN"
            self.layer[self.bn_of[name]] = nn.BatchNorm2d(cout, eps=eps, momentum=momentum)

        conv("stem_conv", 3, 32, 3, 2, bn="stem_BN")
        channels, block_id = 32, 0
        attention = {int(b) for b in arch["attention_blocks"]}
        for t, c, n, s in arch["blocks"]:
            for i in range(n):
                p = f"block_{block_id}"
                stride = s if i == 0 else 1
                hidden = channels * t
                if t != 1:
                    conv(f"{p}_expand", channels, hidden, 1)
                conv(f"{p}_depthwise", hidden, hidden, 3, stride, groups=hidden)
                if block_id in attention:
                    k = int(arch["eca_kernels"][str(block_id)])
                    self.layer[f"{p}_eca_conv"] = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
                conv(f"{p}_project", hidden, c, 1)
                self.plan.append({"prefix": p, "expand": t != 1, "stride": stride,
                                  "eca": block_id in attention,
                                  "residual": stride == 1 and channels == c})
                channels, block_id = c, block_id + 1
        last = int(arch["last_channels"])
        conv("conv_last", channels, last, 1)
        self.layer["embedding_conv"] = nn.Conv2d(last, int(arch["embedding_dim"]), 1, bias=True)

    def _cbr(self, name: str, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        x = self.layer[self.bn_of[name]](self.layer[name](x))
        return F.relu6(x) if relu else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._cbr("stem_conv", F.pad(x, (0, 1, 0, 1)))
        for b in self.plan:
            p, inputs = b["prefix"], x
            if b["expand"]:
                x = self._cbr(f"{p}_expand", x)
            # Keras: "same" (1 each side) at stride 1, explicit (0, 1) padding at stride 2.
            x = F.pad(x, (1, 1, 1, 1) if b["stride"] == 1 else (0, 1, 0, 1))
            x = self._cbr(f"{p}_depthwise", x)
            if b["eca"]:
                w = x.mean((2, 3))[:, None, :]  # (N, 1, C): Keras's (N, C, 1) as a sequence
                w = torch.sigmoid(self.layer[f"{p}_eca_conv"](w))
                x = x * w[:, 0, :, None, None]
            x = self._cbr(f"{p}_project", x, relu=False)
            if b["residual"]:
                x = x + inputs
        x = self._cbr("conv_last", x).mean((2, 3), keepdim=True)
        x = self.layer["embedding_conv"](x).flatten(1)
        return F.normalize(x.float(), dim=1, eps=1e-12)


class ShuffleNetV2(nn.Module):
    """The Keras ShuffleNetV2 1.0x baseline (``build_shufflenet_v2``), layers keyed by the
    Keras names; ``arch``: ``stages`` ((channels, units) per stage), ``stem_channels``,
    ``last_channels``, ``embedding_dim``, batch-norm constants. TF's "same" padding at
    stride 2 on an even size pads one pixel after, none before, and so does this."""

    def __init__(self, arch: dict[str, Any]) -> None:
        super().__init__()
        eps, momentum = float(arch["bn_epsilon"]), 1.0 - float(arch["bn_momentum"])
        self.layer = nn.ModuleDict()

        def conv(name: str, cin: int, cout: int, k: int, stride: int = 1,
                 depthwise: bool = False) -> None:
            self.layer[name] = nn.Conv2d(cin, cout, k, stride, 0, groups=cin if depthwise else 1,
                                         bias=False)
            self.layer[name + "_BN"] = nn.BatchNorm2d(cout, eps=eps, momentum=momentum)

        stem = int(arch["stem_channels"])
        conv("stem_conv", 3, stem, 3, 2)
        self.layer["stem_BN"] = self.layer.pop("stem_conv_BN")
        self.units: list[tuple[str, int]] = []
        channels = stem
        for stage, (out, units) in enumerate(arch["stages"], start=2):
            half = out // 2
            for i in range(units):
                p, stride = f"stage{stage}_unit{i}", 2 if i == 0 else 1
                if stride == 2:
                    conv(f"{p}_left_dw", channels, channels, 3, 2, depthwise=True)
                    conv(f"{p}_left_pw", channels, half, 1)
                cin = channels if stride == 2 else channels // 2
                conv(f"{p}_right_pw1", cin, half, 1)
                conv(f"{p}_right_dw", half, half, 3, stride, depthwise=True)
                conv(f"{p}_right_pw2", half, half, 1)
                self.units.append((p, stride))
                channels = out
        conv("conv_last", channels, int(arch["last_channels"]), 1)
        self.layer["embedding_conv"] = nn.Conv2d(int(arch["last_channels"]),
                                                 int(arch["embedding_dim"]), 1, bias=True)

    def _bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer[name + "_BN"](self.layer[name](x))
        return out

    @staticmethod
    def _same(x: torch.Tensor, stride: int) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))

    def _branch(self, p: str, x: torch.Tensor, stride: int) -> torch.Tensor:
        x = F.relu(self._bn(f"{p}_right_pw1", x))
        x = self._bn(f"{p}_right_dw", self._same(x, stride))
        return F.relu(self._bn(f"{p}_right_pw2", x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.layer["stem_BN"](self.layer["stem_conv"](F.pad(x, (0, 1, 0, 1)))))
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        for p, stride in self.units:
            if stride == 1:
                c = x.shape[1] // 2
                out = torch.cat([x[:, :c], self._branch(p, x[:, c:], 1)], 1)
            else:
                left = self._bn(f"{p}_left_dw", self._same(x, 2))
                left = F.relu(self._bn(f"{p}_left_pw", left))
                out = torch.cat([left, self._branch(p, x, 2)], 1)
            n, c, h, w = out.shape  # channel shuffle, 2 groups (Keras: reshape, permute)
            x = out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        x = F.relu6(self._bn("conv_last", x)).mean((2, 3), keepdim=True)
        x = self.layer["embedding_conv"](x).flatten(1)
        return F.normalize(x.float(), dim=1, eps=1e-12)


def build_twin(arch: dict[str, Any]) -> nn.Module:
    """The PyTorch twin of the Keras network *arch* describes (``pack.json``)."""
    return ShuffleNetV2(arch) if arch["name"] == "shufflenet_v2" else FFEMAM(arch)


_DEPTHWISE = ("_depthwise", "_dw")
_BN_KEYS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
            "moving_variance": "running_var"}


def _to_torch(key: str, a: np.ndarray) -> tuple[str, np.ndarray]:
    """A Keras weight (``layer/name``) as the twin's state-dict entry."""
    layer, name = key.split("/")
    if name in _BN_KEYS:
        return f"layer.{layer}.{_BN_KEYS[name]}", a
    if name == "bias":
        return f"layer.{layer}.bias", a
    if a.ndim == 3:  # Conv1D (k, in, out) -> (out, in, k)
        return f"layer.{layer}.weight", a.transpose(2, 1, 0)
    if layer.endswith(_DEPTHWISE):  # (kh, kw, C, 1) -> (C, 1, kh, kw)
        return f"layer.{layer}.weight", a.transpose(2, 3, 0, 1)
    return f"layer.{layer}.weight", a.transpose(3, 2, 0, 1)  # (kh, kw, in, out)


_KERAS_BN_KEYS = {v: k for k, v in _BN_KEYS.items()}


def _to_keras(name: str, a: np.ndarray) -> tuple[str, np.ndarray]:
    _, layer, attr = name.split(".")
    if attr in _KERAS_BN_KEYS and layer.endswith("_BN"):
        return f"{layer}/{_KERAS_BN_KEYS[attr]}", a
    if attr == "bias":
        return f"{layer}/bias", a
    if a.ndim == 3:
        return f"{layer}/kernel", a.transpose(2, 1, 0)
    if layer.endswith(_DEPTHWISE):
        return f"{layer}/kernel", a.transpose(2, 3, 0, 1)
    return f"{layer}/kernel", a.transpose(2, 3, 1, 0)


def load_keras_weights(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Set *model* from Keras-keyed arrays; every key must fit exactly (no silent skips)."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mapped = dict(_to_torch(k, np.asarray(a, np.float32)) for k, a in arrays.items())
    if mapped.keys() != state.keys():
        missing, extra = state.keys() - mapped.keys(), mapped.keys() - state.keys()
        raise ValueError(f"weights do not fit: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(extra)[:3]}")
    for k, a in mapped.items():
        if tuple(a.shape) != tuple(state[k].shape):
            raise ValueError(f"{k}: shape {a.shape}, the model has {tuple(state[k].shape)}")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(a))
                           for k, a in mapped.items()}, strict=False)


def keras_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights keyed and shaped as Keras's (float32)."""
    return dict(_to_keras(k, v.detach().float().cpu().numpy())
                for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked"))


# ---------------------------------------------------------------------------------- teacher


#: The IR ops :class:`IRProgram` runs (the teacher's: a MobileNetV2 with squeeze-excitation).
IR_OPS = frozenset({"Convolution", "GroupConvolution", "Add", "Multiply", "PReLU", "Sigmoid",
                    "ReLU", "AvgPool"})


class IRProgram(nn.Module):
    """An OpenVINO IR run by PyTorch, from the program the pack carries (``teacher.json``'s
    steps and ``teacher.npz``'s constants, made by ``faceid_adapters.openvino_graph.program``):
    the teacher labels views on the GPU itself. Input: NCHW float, the IR's own convention
    (the teacher: BGR 0..255 at 128x128); output: the last step's, flattened per image."""

    def __init__(self, steps: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        unknown = {s["op"] for s in steps} - IR_OPS
        if unknown:
            raise ValueError(f"the teacher's program uses {sorted(unknown)}, which this "
                             f"executor does not run; it runs {sorted(IR_OPS)}")
        self.steps = steps
        for name, a in arrays.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(a, np.float32)))

    def _value(self, ref: str, values: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if ref == "x":
            return x
        if ref.startswith("v"):
            return values[int(ref[1:])]
        return getattr(self, ref)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor] = []
        for step in self.steps:
            op, a = step["op"], step["attrs"]
            args = [self._value(r, values, x) for r in step["inputs"]]
            if op in ("Convolution", "GroupConvolution"):
                inp, w = args
                groups = 1
                if op == "GroupConvolution":  # (G, O/G, I/G, kh, kw) -> (O, I/G, kh, kw)
                    groups = w.shape[0]
                    w = w.reshape(-1, *w.shape[2:])
                (pt, pl), (pb, pr) = a["pads_begin"], a["pads_end"]
                if (pt, pl) != (pb, pr):
                    inp, pad = F.pad(inp, (pl, pr, pt, pb)), (0, 0)
                else:
                    pad = (pt, pl)
                out = F.conv2d(inp, w, None, a["strides"], pad, a["dilations"], groups)
            elif op == "Add":
                out = args[0] + args[1]
            elif op == "Multiply":
                out = args[0] * args[1]
            elif op == "PReLU":
                slope = args[1].reshape(1, -1, *([1] * (args[0].dim() - 2)))
                out = torch.where(args[0] >= 0, args[0], args[0] * slope)
            elif op == "Sigmoid":
                out = torch.sigmoid(args[0])
            elif op == "ReLU":
                out = F.relu(args[0])
            else:  # AvgPool
                if any(a["pads_begin"]) or any(a["pads_end"]) or a.get("rounding_type") == "ceil":
                    raise ValueError("only unpadded, floor-rounded AvgPool is supported")
                out = F.avg_pool2d(args[0], a["kernel"], a["strides"])
            values.append(out)
        return values[-1].flatten(1)


def load_teacher(pack: Path) -> IRProgram:
    """The pack's teacher program (``teacher.json`` + ``teacher.npz``)."""
    steps = json.loads((pack / "teacher.json").read_text())
    with np.load(pack / "teacher.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return IRProgram(steps, arrays).eval()


# ------------------------------------------------------------------------------------ views


def _gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample 1-D Gaussian kernels of OpenCV's width for float images; a unit impulse
    where sigma is 0 (no blur), so every sample takes the same path."""
    r = torch.arange(size, device=sigma.device, dtype=torch.float32) - size // 2
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    half = torch.round(safe * 4 * 2 + 1).long() | 1
    k = torch.exp(-(r[None] ** 2) / (2 * safe[:, None] ** 2))
    k = torch.where(r[None].abs() <= (half[:, None] // 2), k, torch.zeros_like(k))
    k = k / k.sum(1, keepdim=True)
    impulse = (r == 0).float()[None].expand_as(k)
    return torch.where((sigma > 0)[:, None], k, impulse)


#: Per-device constant tensors of the renderer (reflection indices, area-shrink matrices).
_CONSTANTS: dict[tuple[str, int, int], torch.Tensor] = {}


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    """OpenCV's default border (BORDER_REFLECT_101: ...2 1 | 0 1 2 ... n-1 | n-2 ...)."""
    i = np.abs(i)
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


def _blur_matrices(kernels: torch.Tensor, n: int) -> torch.Tensor:
    """(N, n, n) matrices B with ``B @ column`` = the column blurred by each kernel, borders
    reflected as OpenCV's GaussianBlur does (a matrix product: no TF32 convolution)."""
    size = kernels.shape[1]
    key = (f"reflect-{kernels.device}", n, size)
    if key not in _CONSTANTS:  # built once per device, not copied to it every step
        taps = np.arange(size) - size // 2
        _CONSTANTS[key] = torch.from_numpy(
            _reflect101(np.arange(n)[:, None] + taps[None], n)).to(kernels.device)
    cols = _CONSTANTS[key]
    out = torch.zeros(kernels.shape[0], n, n, device=kernels.device)
    return out.scatter_add_(2, cols[None].expand(kernels.shape[0], -1, -1),
                            kernels[:, None, :].expand(-1, n, -1))


def _area(device: torch.device, src: int, dst: int) -> torch.Tensor:
    key = (str(device), src, dst)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.from_numpy(area_matrix(src, dst)).to(device)
    return _CONSTANTS[key]


def area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of OpenCV's INTER_AREA shrink along one axis: each output pixel
    averages the source interval it covers, partial pixels by their overlap."""
    scale = src / dst
    m = np.zeros((dst, src), np.float64)
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), src)):
            m[i, j] = min(hi, j + 1) - max(lo, j)
    return (m / scale).astype(np.float32)


def render_views(crops: torch.Tensor, params: torch.Tensor, columns: list[str],
                 centre: float, out: int = 96) -> torch.Tensor:
    """Student views of uint8 NHWC square crops as float NCHW in [-1, 1] (see module doc)."""
    return student_pixels(render_full(crops, params, columns, centre), out) / 127.5 - 1.0


def render_full(crops: torch.Tensor, params: torch.Tensor, columns: list[str],
                centre: float) -> torch.Tensor:
    """The views at the crops' size, NCHW RGB levels (whole numbers in 0..255, as the uint8
    view ``render_views`` makes with OpenCV on the CPU).

    Static shapes and no host synchronisation: every sample is warped, coloured and blurred
    (an impulse kernel where it has no blur), the blur as matrix products.
    """
    p = {c: params[:, i].float() for i, c in enumerate(columns)}
    n, h, w = crops.shape[0], crops.shape[1], crops.shape[2]
    x = crops.permute(0, 3, 1, 2).float()
    # cv2.getRotationMatrix2D + shift: view = A @ source + t; sample the source at
    # A^-1 (view - t), A = [[a, b], [-b, a]] so A^-1 = [[a, -b], [b, a]] / (a^2 + b^2).
    ang = torch.deg2rad(p["angle"])
    alpha, beta = p["scale"] * torch.cos(ang), p["scale"] * torch.sin(ang)
    tx = (1 - alpha) * centre - beta * centre + p["shift_x"]
    ty = beta * centre + (1 - alpha) * centre + p["shift_y"]
    det = alpha * alpha + beta * beta
    ia, ib = alpha / det, beta / det
    inv = torch.stack([torch.stack([ia, -ib, -(ia * tx - ib * ty)], 1),
                       torch.stack([ib, ia, -(ib * tx + ia * ty)], 1)], 1)  # (n, 2, 3) pixels
    # pixel centres to grid_sample's [-1, 1] (align_corners=False): u = (2 x + 1) / w - 1
    sx, sy = 2.0 / w, 2.0 / h
    theta = torch.empty_like(inv)
    theta[:, 0, 0], theta[:, 0, 1] = inv[:, 0, 0], inv[:, 0, 1] * (sx / sy)
    theta[:, 1, 0], theta[:, 1, 1] = inv[:, 1, 0] * (sy / sx), inv[:, 1, 1]
    cx, cy = 1 / sx - 0.5, 1 / sy - 0.5  # the pixel coordinate of normalised 0
    theta[:, 0, 2] = sx * (inv[:, 0, 0] * cx + inv[:, 0, 1] * cy + inv[:, 0, 2]) + sx / 2 - 1
    theta[:, 1, 2] = sy * (inv[:, 1, 0] * cx + inv[:, 1, 1] * cy + inv[:, 1, 2]) + sy / 2 - 1
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = torch.round(x)
    x = torch.where(p["flip"][:, None, None, None] > 0.5, x.flip(3), x)
    grey = x.mean(1, keepdim=True)
    x = grey + (x - grey) * p["saturation"][:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * p["contrast"][:, None, None, None] + mean
    x = x + p["brightness"][:, None, None, None]
    b = _blur_matrices(_gaussian_kernels(p["blur_sigma"], 11), h)[:, None]  # (n, 1, h, h)
    x = b @ x @ b.transpose(-1, -2)
    return torch.floor(x.clamp(0, 255))


def student_pixels(view: torch.Tensor, out: int = 96) -> torch.Tensor:
    """The student's input levels (0..255) of :func:`render_full` views: OpenCV's area shrink."""
    a = _area(view.device, view.shape[-1], out)
    return torch.round(a @ view @ a.T)


def teacher_pixels(view: torch.Tensor, frame: dict[str, Any]) -> torch.Tensor:
    """The teacher's input (NCHW BGR levels) of :func:`render_full` views, framed as the
    pack's ``teacher_frame`` says (the CPU trainer's ``TEACHER_COLUMNS``, stretched
    bilinearly to a ``TEACHER_SIZE`` square), rounded to levels as OpenCV's uint8 stretch."""
    lo, hi = frame["columns"]
    x = F.interpolate(view[..., lo:hi], size=(frame["size"], frame["size"]), mode="bilinear",
                      align_corners=False)
    return torch.round(x).flip(1)


def sample_views(n: int, distribution: dict[str, dict[str, float]], gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """*n* random view parameters drawn as the pack's ``view_distribution`` says (the CPU
    trainer's table, ``_online.VIEW_DISTRIBUTION``), columns in its order."""
    columns = []
    for d in distribution.values():
        c = torch.rand(n, generator=gen, device=device) * (d["high"] - d["low"]) + d["low"]
        if "p" in d:
            keep = torch.rand(n, generator=gen, device=device) < d["p"]
            c = torch.where(keep, c, torch.full_like(c, d["otherwise"]))
        columns.append(c)
    return torch.stack(columns, 1)


def mix_views(student: torch.Tensor, teacher: torch.Tensor, fraction: float,
              weights: tuple[float, float], gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """*fraction* of the views (rounded) each blended with another view of the batch, the
    student's levels (rounded) and the teacher's input with the same weight, drawn from
    *weights*: what the CPU trainer's ``_online.mix_views`` does."""
    n = len(student)
    k = round(fraction * n)
    if k == 0 or n < 2:
        return student, teacher
    dev = student.device
    rows = torch.randperm(n, generator=gen, device=dev)[:k]
    partners = (rows + torch.randint(1, n, (k,), generator=gen, device=dev)) % n
    w = (torch.rand(k, generator=gen, device=dev) * (weights[1] - weights[0]) + weights[0]
         )[:, None, None, None]
    student, teacher = student.clone(), teacher.clone()
    student[rows] = torch.round(w * student[rows] + (1 - w) * student[partners]).clamp(0, 255)
    teacher[rows] = w * teacher[rows] + (1 - w) * teacher[partners]
    return student, teacher


# ------------------------------------------------------------------------------------- pack


def load_pack(pack: Path, threads: int = 16) -> dict[str, Any]:
    """``pack.json`` plus the decoded crops (N x 112 x 112 x 3 uint8 RGB), view parameters and
    targets (unit float32) of the first crops (all of them, or a Table 2 pack's training
    photos; ``None`` in an online pack, whose teacher labels views as they are drawn), and the
    initial weights (``None`` in a Table 2 pack)."""
    import cv2

    meta = json.loads((pack / "pack.json").read_text())
    with np.load(pack / "crops.npz") as z:
        blob, offsets = z["blob"], z["offsets"]

    def decode(i: int) -> np.ndarray:
        img = cv2.imdecode(blob[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"crop {i} of {pack / 'crops.npz'} does not decode; rebuild the pack")
        return img[:, :, ::-1]

    with ThreadPoolExecutor(threads) as ex:
        crops = np.stack(list(ex.map(decode, range(len(offsets) - 1))))
    params = targets = None
    if meta.get("kind") != "online":  # an online pack's teacher labels fresh views instead
        with np.load(pack / "views.npz") as z:
            params = z["params"].astype(np.float32)
            targets = z["targets"].astype(np.float32) / float(meta["target_scale"])
        targets /= np.maximum(np.linalg.norm(targets, axis=-1, keepdims=True), 1e-12)
    if crops.shape[1:] != (112, 112, 3):
        raise ValueError(f"the pack's crops are {crops.shape[1:]}, not 112 x 112 x 3")
    init = None
    if (pack / "init.npz").is_file():  # a Table 2 pack trains from scratch and has none
        with np.load(pack / "init.npz") as z:
            init = {k: z[k] for k in z.files}
    elif meta.get("kind", "distill") in ("distill", "online"):
        raise ValueError(f"{pack} has no init.npz: rebuild it with "
                         "`python -m faceid_sdk.training.gpu pack`")
    return {"meta": meta, "crops": crops, "params": params, "targets": targets, "init": init}


# ------------------------------------------------------------------------------------ train


def fit(model: nn.Module, crops: torch.Tensor, params: torch.Tensor, targets: torch.Tensor, *,
        columns: list[str], centre: float, **schedule: Any) -> dict[str, Any]:
    """Fit *model* to the teacher's *targets* (crops x views x dim) of views rendered from
    *crops* and *params* (packed beforehand); *schedule*: :func:`fit_batches`'s options."""
    n_crops, n_views = targets.shape[0], targets.shape[1]

    def batches(gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        ci = torch.randint(0, n_crops, (batch,), generator=gen, device=crops.device)
        vi = torch.randint(0, n_views, (batch,), generator=gen, device=crops.device)
        return render_views(crops[ci], params[ci, vi], columns, centre), targets[ci, vi]

    return fit_batches(model, batches, crops.device, **schedule)


def fit_online(model: nn.Module, teacher: nn.Module, crops: torch.Tensor,
               pca: tuple[torch.Tensor, torch.Tensor], *, distribution: dict[str, Any],
               teacher_frame: dict[str, Any], centre: float, mix_faces: float,
               mix_weights: tuple[float, float],
               **schedule: Any) -> dict[str, Any]:
    """Fit *model* to *teacher* on fresh views: every step draws new view parameters from
    *distribution*, renders them, frames the teacher's input as *teacher_frame* says, blends
    *mix_faces* of them with another view of the batch,
    and the teacher labels exactly those inputs (its unit output, *pca*'s projection, unit
    length again: ``_online.unit_targets``). Nothing is computed beforehand."""
    columns = list(distribution)
    teacher.to(crops.device).eval()

    def batches(gen: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        ci = torch.randint(0, len(crops), (batch,), generator=gen, device=crops.device)
        view = render_full(crops[ci], sample_views(batch, distribution, gen, crops.device),
                           columns, centre)
        student, tin = mix_views(student_pixels(view), teacher_pixels(view, teacher_frame),
                                 mix_faces, mix_weights, gen)
        return student / 127.5 - 1.0, online_targets(teacher, pca, tin)

    summary = fit_batches(model, batches, crops.device, **schedule)
    return {**summary, "teacher": "on the device, every step", "mix_faces": mix_faces}


def online_targets(teacher: nn.Module, pca: tuple[torch.Tensor, torch.Tensor],
                   teacher_input: torch.Tensor) -> torch.Tensor:
    """The student's targets for the teacher's inputs: the teacher's output at unit length,
    *pca*'s (mean, basis) projection, unit length again (``_online.unit_targets``)."""
    mean, basis = pca
    t = F.normalize(teacher(teacher_input).float(), dim=1)
    return F.normalize((t - mean) @ basis.T, dim=1)


def fit_batches(model: nn.Module, batches: Any, dev: torch.device, *, batch: int, lr: float,
                weight_decay: float, relational_weight: float, warmup: float, seed: int,
                seconds: float | None = None, max_steps: int | None = None,
                channels_last: bool = True, snapshot: Any = None, snapshots: int = 0,
                amp: bool | None = None) -> dict[str, Any]:
    """Fit *model* to ``batches(generator, batch)``'s (inputs, unit targets) for *seconds* or
    *max_steps*; the schedule spans whichever is given. ``snapshot(model, at)`` is called
    *snapshots* times, evenly spaced before the end (``at`` in seconds or steps). *amp*:
    bfloat16 autocast (default: on CUDA only)."""
    if (seconds is None) == (max_steps is None):
        raise ValueError("give exactly one of seconds and max_steps")
    if (seconds is not None and seconds <= 0) or (max_steps is not None and max_steps < 1):
        raise ValueError(f"the budget must be positive (seconds={seconds}, "
                         f"max_steps={max_steps})")
    budget = float(seconds if seconds is not None else max_steps)  # type: ignore[arg-type]
    # Indices drawn on the device: no host round trip per step.
    gen = torch.Generator(device=dev).manual_seed(seed)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model.to(dev).train()
    model.to(memory_format=memory)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    amp = dev.type == "cuda" if amp is None else amp
    off = 1.0 - torch.eye(batch, device=dev)
    start, step = time.time(), 0
    history: list[dict[str, float]] = []
    marks = [budget * k / (snapshots + 1) for k in range(1, snapshots + 1)]
    t_log, losses = time.time(), []
    while True:
        used = time.time() - start if seconds is not None else float(step)
        while snapshot is not None and marks and used >= marks[0]:
            snapshot(model, marks.pop(0))
            model.train()
        done = used / budget
        if done >= 1.0:
            break
        rate = lr * (done / warmup if done < warmup  # (warmup 0: straight to the cosine)
                     else 0.5 * (1 + math.cos(math.pi * (done - warmup) / (1 - warmup))))
        for g in opt.param_groups:
            g["lr"] = rate
        with torch.no_grad():
            x, t = batches(gen, batch)
            x = x.contiguous(memory_format=memory)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            s = model(x)
        cos_loss = (1.0 - (s * t).sum(1)).mean()
        rel = (((s @ s.T) - (t @ t.T)) ** 2 * off).sum() / (batch * (batch - 1))
        loss = cos_loss + relational_weight * rel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(torch.stack([cos_loss.detach(), rel.detach()]))
        if step % 100 == 0 or time.time() - t_log > 30:
            lc, lrel = torch.stack(losses).mean(0).tolist()
            ips = len(losses) * batch / (time.time() - t_log)
            log.info("step %d (%.0f%% of the schedule) loss cos %.4f rel %.4f | %.0f img/s | "
                     "lr %.2e", step, 100 * done, lc, lrel, ips, rate)
            history.append({"step": step, "seconds": round(time.time() - start, 1),
                            "cos": lc, "rel": lrel, "img_per_s": ips, "lr": rate})
            t_log, losses = time.time(), []
    return {"steps": step, "samples": step * batch, "seconds": round(time.time() - start, 1),
            "batch": batch, "lr": lr, "weight_decay": weight_decay, "warmup": warmup,
            "relational_weight": relational_weight, "seed": seed, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "bfloat16_autocast": amp, "schedule": "time" if seconds is not None else "steps",
            "torch": torch.__version__, "history": history}


def train(pack: Path, out: Path, *, minutes: float, batch: int, lr: float,
          weight_decay: float, relational_weight: float, warmup: float, seed: int,
          snapshots: int, device: str, channels_last: bool = True,
          max_steps: int | None = None) -> dict[str, Any]:
    """Train from *pack* for *minutes* (or *max_steps*) and write ``out/weights.npz``."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = load_pack(pack)
    meta = data["meta"]
    dev = torch.device(device)
    torch.manual_seed(seed)
    if int(meta["architecture"]["input_size"]) != 96:
        raise ValueError("the views are rendered at 96x96; the pack's model takes "
                         f"{meta['architecture']['input_size']}")
    model = build_twin(meta["architecture"])
    load_keras_weights(model, data["init"])

    unit = "steps" if max_steps is not None else "s"

    def snapshot(m: nn.Module, at: float) -> None:
        np.savez(out / f"snapshot-{int(at)}{unit}.npz",
                 **keras_weights(m))  # type: ignore[arg-type]

    schedule = {"batch": batch, "lr": lr, "weight_decay": weight_decay,
                "relational_weight": relational_weight, "warmup": warmup, "seed": seed,
                "seconds": None if max_steps is not None else minutes * 60.0,
                "max_steps": max_steps, "channels_last": channels_last, "snapshot": snapshot,
                "snapshots": snapshots}
    crops = torch.from_numpy(data["crops"]).to(dev)
    if meta.get("kind") == "online":
        log.info("online pack %s: %d crops, the teacher on %s; loaded in %.1fs", pack,
                 len(crops), dev, time.time() - t0)
        with np.load(pack / "teacher_pca.npz") as z:
            pca = (torch.from_numpy(z["mean"]).float().to(dev),
                   torch.from_numpy(z["basis"]).float().to(dev))
        summary = fit_online(model, load_teacher(pack), crops, pca,
                             distribution=meta["view_distribution"],
                             teacher_frame=meta["teacher_frame"],
                             centre=float(meta["view_centre"]),
                             mix_faces=float(meta["mix_faces"]),
                             mix_weights=tuple(meta["mix_weights"]), **schedule)
    else:
        log.info("pack %s: %d crops x %d views, loaded in %.1fs on %s", pack,
                 *data["targets"].shape[:2], time.time() - t0, dev)
        summary = fit(model, crops, torch.from_numpy(data["params"]).to(dev),
                      torch.from_numpy(data["targets"]).to(dev), columns=meta["view_params"],
                      centre=float(meta["view_centre"]), **schedule)
    np.savez(out / "weights.npz", **keras_weights(model))  # type: ignore[arg-type]
    summary["pack"] = meta["pack_id"]
    (out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%d steps, %d samples in %.0fs; weights in %s", summary["steps"],
             summary["samples"], summary["seconds"], out / "weights.npz")
    return summary


#: View parameters that leave a crop as it is (the plain 112 -> 96 area resize).
NEUTRAL_VIEW = {"scale": 1.0, "saturation": 1.0, "contrast": 1.0}


def embed_crops(model: nn.Module, crops: torch.Tensor, columns: list[str], centre: float,
                batch: int = 512) -> np.ndarray:
    """Embeddings of un-augmented crops (the model input the product makes from a crop)."""
    neutral = torch.tensor([NEUTRAL_VIEW.get(c, 0.0) for c in columns], device=crops.device)
    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            part = crops[i : i + batch]
            x = render_views(part, neutral.expand(len(part), -1), columns, centre)
            parts.append(model(x.contiguous(memory_format=torch.channels_last)).cpu().numpy())
    return np.concatenate(parts).astype(np.float32)


def table2(pack: Path, out: Path, *, archs: list[str], seeds: list[int],
           minutes: float | None, max_steps: int | None, batch: int, lr: float,
           weight_decay: float, relational_weight: float, warmup: float,
           device: str) -> dict[str, Any]:
    """Each architecture x seed from scratch on a Table 2 pack; every crop's embedding in
    ``out/table2.npz`` (keys ``ARCH-sSEED``), measured back home by ``table2 report``."""
    out.mkdir(parents=True, exist_ok=True)
    data = load_pack(pack)
    meta = data["meta"]
    unknown = set(archs) - set(meta["architectures"])
    if unknown:
        raise ValueError(f"{sorted(unknown)} not in the pack: {sorted(meta['architectures'])}")
    dev = torch.device(device)
    crops = torch.from_numpy(data["crops"]).to(dev)
    params = torch.from_numpy(data["params"]).to(dev)
    targets = torch.from_numpy(data["targets"]).to(dev)
    n_train, columns, centre = int(meta["train"]), meta["view_params"], float(meta["view_centre"])
    # One untimed step first, so that the first run does not pay CUDA's and cuDNN's start-up.
    fit(build_twin(meta["architectures"][archs[0]]), crops[:n_train], params, targets,
        columns=columns, centre=centre, batch=batch, lr=lr, weight_decay=weight_decay,
        relational_weight=relational_weight, warmup=warmup, seed=0, max_steps=1)
    results: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    report: dict[str, Any] = {"pack": meta["pack_id"], "runs": runs}
    # Seeds outside, architectures inside, and the results rewritten after every run: a
    # command cut short still brings back every architecture for the seeds it finished.
    for seed in seeds:
        for arch in archs:
            torch.manual_seed(seed)
            model = build_twin(meta["architectures"][arch])
            log.info("table 2: %s, seed %d", arch, seed)
            summary = fit(model, crops[:n_train], params, targets, columns=columns,
                          centre=centre, batch=batch, lr=lr, weight_decay=weight_decay,
                          relational_weight=relational_weight, warmup=warmup, seed=seed,
                          seconds=None if max_steps is not None else (minutes or 1.0) * 60.0,
                          max_steps=max_steps)
            results[f"{arch}-s{seed}"] = embed_crops(model, crops, columns, centre)
            runs.append({"arch": arch, **{k: v for k, v in summary.items() if k != "history"},
                         "final_loss": summary["history"][-1] if summary["history"] else None})
            _write_atomically(out / "table2.npz", lambda f: np.savez(
                f, **{k: v.astype(np.float16) for k, v in results.items()}))
            _write_atomically(out / "table2.json",
                              lambda f: f.write((json.dumps(report, indent=2) + "\n").encode()))
    return report


def _write_atomically(path: Path, write: Any) -> None:
    """*write(file)* into a sibling temporary file, then renamed over *path*."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        write(f)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pack", type=Path, help="a folder made by `python -m faceid_sdk.training.gpu "
                    "pack`")
    ap.add_argument("--out", type=Path, required=True, help="where weights.npz is written")
    ap.add_argument("--minutes", type=float, default=7.0,
                    help="training time (a Table 2 pack: per run); the schedule spans it")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop after this many steps instead (a Table 2 pack: per run)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--relational-weight", type=float, default=1.0)
    ap.add_argument("--warmup", type=float, default=0.05, help="fraction of the budget")
    ap.add_argument("--snapshots", type=int, default=2,
                    help="also write this many snapshot-*.npz, evenly spaced before the end "
                    "(diagnostics; the machine sends back 8 files at most)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archs", default="ffem,mobilenet_v2,shufflenet_v2,ffem_am",
                    help="Table 2 pack: the networks, each trained from scratch")
    ap.add_argument("--seeds", default="0,1,2", help="Table 2 pack: the seeds of each")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout)])
    if not 0 <= args.warmup < 1 or args.minutes <= 0 or args.batch < 2 or (
            args.max_steps is not None and args.max_steps < 1):
        ap.error("--warmup must be in [0, 1), --minutes > 0, --max-steps >= 1 and --batch >= 2 "
                 "(the relational loss compares the batch's pairs)")
    if not (args.pack / "pack.json").is_file():
        ap.error(f"{args.pack} is not a pack (no pack.json); make one with "
                 "`python -m faceid_sdk.training.gpu pack RUN_DIR --out DIR`")
    kind = json.loads((args.pack / "pack.json").read_text()).get("kind", "distill")
    if kind == "table2":
        table2(args.pack, args.out, archs=args.archs.split(","),
               seeds=[int(v) for v in args.seeds.split(",")], minutes=args.minutes,
               max_steps=args.max_steps, batch=args.batch, lr=args.lr,
               weight_decay=args.weight_decay, relational_weight=args.relational_weight,
               warmup=args.warmup, device=args.device)
        return 0
    train(args.pack, args.out, minutes=args.minutes, batch=args.batch, lr=args.lr,
          weight_decay=args.weight_decay, relational_weight=args.relational_weight,
          warmup=args.warmup, seed=args.seed, snapshots=args.snapshots, device=args.device,
          max_steps=args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
