"""An OpenVINO IR read into plain Python and NumPy: the layers in order, their inputs, their
constants. No framework here; :mod:`faceid_adapters.tfjs.openvino_ir` rebuilds a graph in
TensorFlow from it, and :func:`program` flattens it for executors that must not parse IR
themselves (the PyTorch teacher of the GPU trainer).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STRUCTURAL_OPS", "IRGraph", "program", "read_ir"]

#: Layers that carry no computation of their own: the input, constants, float conversions and
#: the output. Every reader supports them; :func:`program` turns them into references.
STRUCTURAL_OPS = frozenset({"Parameter", "Const", "Convert", "Result"})

_DTYPES = {"f16": np.float16, "f32": np.float32, "i64": np.int64, "i32": np.int32}


@dataclass(frozen=True)
class IRGraph:
    """The part of an IR that its outputs depend on.

    ``layers``: id to ``{"type", "name", "data"}`` (``data``: the layer's attributes, as
    strings); ``order``: the layer ids in a topological order; ``inputs``: id to the ids that
    feed it, in port order; ``consts``: id to the value of every Const, and of every Convert of
    a Const (float32); ``parameter``: the input layer's id; ``input_shape``: its NCHW shape;
    ``ends``: the output layer ids.
    """

    layers: dict[str, dict[str, Any]]
    order: list[str]
    inputs: dict[str, list[str]]
    consts: dict[str, np.ndarray]
    parameter: str
    input_shape: tuple[int, ...]
    ends: list[str]


def ints(text: str) -> list[int]:
    """An IR attribute list (``"1, 2"``) as integers."""
    return [int(v) for v in text.replace(" ", "").split(",") if v != ""]


def read_ir(
    xml: str | Path, supported: Collection[str], outputs: tuple[str, ...] | None = None
) -> IRGraph:
    """The IR *xml* (weights beside it in ``.bin``) up to its Result, or up to the layers
    named *outputs* (the graph cut there). An op outside *supported* that the outputs depend
    on is refused by name: a graph is rebuilt exactly or not at all."""
    xml = Path(xml)
    root = ET.parse(xml).getroot()
    layers: dict[str, dict[str, Any]] = {}
    for layer in root.find("layers"):  # type: ignore[union-attr]
        data = layer.find("data")
        layers[str(layer.get("id"))] = {"type": layer.get("type"), "name": layer.get("name"),
                                        "data": dict(data.attrib) if data is not None else {}}
    feeds: dict[str, list[tuple[int, str]]] = {lid: [] for lid in layers}
    for e in root.find("edges"):  # type: ignore[union-attr]
        feeds[str(e.get("to-layer"))].append((int(str(e.get("to-port"))), str(e.get("from-layer"))))
    inputs = {lid: [src for _, src in sorted(ports)] for lid, ports in feeds.items()}
    if outputs is None:
        ends = [lid for lid, layer in layers.items() if layer["type"] == "Result"]
    else:
        by_name = {layer["name"]: lid for lid, layer in layers.items()}
        missing = [n for n in outputs if n not in by_name]
        if missing:
            raise ValueError(f"{xml.name} has no layer named {missing}")
        ends = [by_name[n] for n in outputs]
    needed: set[str] = set()
    stack = list(ends)
    while stack:
        lid = stack.pop()
        if lid not in needed:
            needed.add(lid)
            stack.extend(inputs[lid])
    for lid in needed:
        kind = layers[lid]["type"]
        if kind not in supported:
            raise ValueError(f"{xml.name}: op {kind!r} ({layers[lid]['name']}) is not "
                             f"supported; supported: {sorted(supported)}")
    layers = {lid: layers[lid] for lid in needed}
    inputs = {lid: inputs[lid] for lid in needed}
    order = _topological(inputs)
    blob = xml.with_suffix(".bin").read_bytes()
    consts: dict[str, np.ndarray] = {}
    for lid in order:
        layer = layers[lid]
        if layer["type"] == "Const":
            d = layer["data"]
            off, size = int(d["offset"]), int(d["size"])
            consts[lid] = np.frombuffer(blob[off : off + size], _DTYPES[d["element_type"]]
                                        ).reshape(ints(d["shape"]))
        elif layer["type"] == "Convert" and inputs[lid][0] in consts:
            consts[lid] = consts[inputs[lid][0]].astype(np.float32)
    parameter = next(lid for lid in order if layers[lid]["type"] == "Parameter")
    shape = tuple(ints(layers[parameter]["data"]["shape"]))
    return IRGraph(layers, order, inputs, consts, parameter, shape, ends)


def _topological(inputs: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(inputs):
        ready = [lid for lid in inputs if lid not in done and set(inputs[lid]) <= done]
        if not ready:
            raise ValueError("the IR graph has a cycle")
        for lid in sorted(ready, key=int):
            order.append(lid)
            done.add(lid)
    return order


def program(graph: IRGraph) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The graph as a list of steps and their constants, for an executor that reads no IR.

    Each step is ``{"op", "inputs", "attrs"}``: ``inputs`` name the graph input (``"x"``), an
    earlier step's output (``"v3"``: the fourth step) or a constant (``"c12"``, a key of the
    returned arrays, float32); ``attrs`` are the layer's attributes, lists of integers where
    the IR has them (kernel, strides, pads, dilations). Const, Convert and Parameter layers
    become references; the last step is the (single) output."""
    if len(graph.ends) != 1:
        raise ValueError(f"a program has one output; this graph has {len(graph.ends)}")
    refs: dict[str, str] = {graph.parameter: "x"}
    arrays: dict[str, np.ndarray] = {}
    steps: list[dict[str, Any]] = []
    for lid in graph.order:
        layer = graph.layers[lid]
        if lid in graph.consts:
            refs[lid] = f"c{lid}"
            continue
        if layer["type"] == "Parameter":
            continue
        srcs = [refs[s] for s in graph.inputs[lid]]
        if layer["type"] in ("Convert", "Result"):  # float32 throughout: a pass-through
            refs[lid] = srcs[0]
            continue
        attrs: dict[str, Any] = {}
        for key, value in layer["data"].items():
            is_list = key in ("kernel", "strides", "pads_begin", "pads_end", "dilations")
            attrs[key] = ints(value) if is_list else value
        for src, ref in zip(graph.inputs[lid], srcs, strict=True):
            if ref.startswith("c"):  # only the constants a step reads (not a Convert's f16)
                arrays[ref] = graph.consts[src].astype(np.float32)
        steps.append({"op": layer["type"], "inputs": srcs, "attrs": attrs})
        refs[lid] = f"v{len(steps) - 1}"
    if not steps or refs[graph.ends[0]] != f"v{len(steps) - 1}":
        raise ValueError("the graph's output is not its last step")
    return steps, arrays
