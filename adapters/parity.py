"""Do the backends agree? The same golden faces through TensorFlow, ONNX Runtime and TF.js.

The golden file (``tests/golden/parity.json`` + ``faces.npy``) holds the inputs, the
evaluation split and the tolerances; the Node script reads the same files. TensorFlow (the
Keras weights) is the reference. For each other backend the report gives the largest
absolute difference, the smallest cosine similarity, and whether every identify decision
is the same: each backend's vectors fill their own :class:`faceid_sdk.Matcher` (the
``enroll`` faces), then each ``query`` face is identified; a decision is the pair (nearest
identity, accepted).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKENDS",
    "BackendParity",
    "Golden",
    "ParityReport",
    "Tolerance",
    "compare",
    "default_golden_path",
    "reference_path",
    "run_parity",
    "write_reference",
]

BACKENDS = ("onnx", "tfjs")
_REPO = Path(__file__).resolve().parent.parent


def default_golden_path() -> Path:
    """``tests/golden/parity.json`` of the source checkout."""
    return _REPO / "tests" / "golden" / "parity.json"


@attrs.frozen
class Tolerance:
    """How far a backend at one weight precision may stray from the reference."""

    max_abs_diff: float
    min_cosine: float
    decisions_must_agree: bool = True


@attrs.frozen(eq=False)
class Golden:
    """The parity golden file: faces, labels, evaluation split and tolerances."""

    path: Path
    faces: npt.NDArray[np.uint8] = attrs.field(repr=False)
    labels: tuple[str, ...] = attrs.field(repr=False)
    enroll: tuple[int, ...] = attrs.field(repr=False)
    query: tuple[int, ...] = attrs.field(repr=False)
    threshold: float
    tolerances: dict[str, Tolerance] = attrs.field(repr=False)

    @property
    def faces_path(self) -> Path:
        return self.path.parent / str(self._doc()["faces"]["file"])

    def _doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.path.read_text("utf-8"))
        return doc

    @classmethod
    def load(cls, path: str | Path | None = None) -> Golden:
        """Read and check the golden file (faces' shape and SHA-256 must match the JSON)."""
        path = Path(path) if path is not None else default_golden_path()
        doc = json.loads(path.read_text("utf-8"))
        meta = doc["faces"]
        faces = np.load(path.parent / meta["file"], allow_pickle=False)
        if list(faces.shape) != list(meta["shape"]) or faces.dtype != np.uint8:
            raise ValueError(
                f"golden faces must be uint8 {tuple(meta['shape'])} as {path.name} says "
                f"(got {faces.dtype} {faces.shape}): regenerate with make_parity_golden.py"
            )
        digest = hashlib.sha256(faces.tobytes()).hexdigest()
        if digest != meta["sha256"]:
            raise ValueError(
                f"golden faces must have sha256 {meta['sha256'][:12]}... as {path.name} says "
                f"(got {digest[:12]}...): the .npy and the .json were changed separately"
            )
        ev = doc["evaluation"]
        return cls(
            path=path,
            faces=faces,
            labels=tuple(meta["labels"]),
            enroll=tuple(int(i) for i in ev["enroll"]),
            query=tuple(int(i) for i in ev["query"]),
            threshold=float(ev["threshold"]),
            tolerances={k: Tolerance(**v) for k, v in doc["tolerances"].items()},
        )


@attrs.frozen
class BackendParity:
    """One backend against the reference on the golden faces."""

    backend: str
    weights: str
    max_abs_diff: float
    min_cosine: float
    decisions_agree: int
    decisions_total: int
    tolerance: Tolerance = attrs.field(repr=False)
    size_bytes: int | None = None
    note: str = ""
    #: Median milliseconds per face at batch 1 and batch 32, when timed (``repeats`` > 0).
    ms_per_face: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        t = self.tolerance
        decisions = self.decisions_agree == self.decisions_total or not t.decisions_must_agree
        return self.max_abs_diff <= t.max_abs_diff and self.min_cosine >= t.min_cosine and decisions

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else "DIVERGES"
        return (
            f"<BackendParity {self.backend} {self.weights} max|d|={self.max_abs_diff:.2e} "
            f"min cos={self.min_cosine:.9f} decisions {self.decisions_agree}/"
            f"{self.decisions_total} {verdict}>"
        )


@attrs.frozen
class ParityReport:
    """Every compared backend; ``ok`` only when all are within their tolerances."""

    model_id: str
    n_faces: int
    results: tuple[BackendParity, ...]
    #: TensorFlow's median milliseconds per face at batch 1 and 32, when timed.
    reference_ms_per_face: tuple[float, float] | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def __repr__(self) -> str:
        return f"<ParityReport {self.model_id} {len(self.results)} backends ok={self.ok}>"

    def to_text(self) -> str:
        """A table for people; the last line says whether the backends agree."""
        lines = [
            f"model {self.model_id}, {self.n_faces} golden faces, reference: tensorflow",
            f"{'backend':<10} {'weights':<8} {'max |diff|':>11} {'min cosine':>12} "
            f"{'decisions':>10} {'size MB':>8}  verdict",
        ]
        for r in self.results:
            t = r.tolerance
            size = f"{r.size_bytes / 1e6:8.2f}" if r.size_bytes is not None else f"{'-':>8}"
            verdict = "ok" if r.ok else (
                f"DIVERGES (allowed max |diff| {t.max_abs_diff:g}, min cosine {t.min_cosine:g}"
                + (", identical decisions)" if t.decisions_must_agree else ")")
            )
            lines.append(
                f"{r.backend:<10} {r.weights:<8} {r.max_abs_diff:11.2e} {r.min_cosine:12.9f} "
                f"{r.decisions_agree:>4}/{r.decisions_total:<5} {size}  {verdict}"
                + (f"  [{r.note}]" if r.note else "")
            )
        timed = [("tensorflow", self.reference_ms_per_face)] + [
            (r.backend, r.ms_per_face) for r in self.results
        ]
        if any(ms for _, ms in timed):
            lines.append("latency, ms per face:  batch 1   batch 32")
            lines += [f"  {b:<20} {ms[0]:8.2f}  {ms[1]:8.2f}" for b, ms in timed if ms]
        lines.append("all backends agree" if self.ok else "BACKENDS DIVERGE")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "n_faces": self.n_faces,
            "ok": self.ok,
            "reference_ms_per_face": self.reference_ms_per_face,
            "results": [
                {**attrs.asdict(r), "ok": r.ok} for r in self.results
            ],
        }


def decisions(
    vectors: npt.NDArray[np.float32], golden: Golden
) -> list[tuple[str | None, bool]]:
    """(nearest identity, accepted) for every query face, with *vectors* as the gallery."""
    from faceid_sdk import Matcher

    matcher = Matcher(vectors.shape[1], threshold=golden.threshold)
    for i in golden.enroll:
        matcher.add(golden.labels[i], vectors[i])
    found = matcher.identify_batch(vectors[list(golden.query)])
    return [(r.identity, r.accepted) for r in found]


def compare(
    backend: str,
    weights: str,
    reference: npt.NDArray[np.float32],
    candidate: npt.NDArray[np.float32],
    golden: Golden,
    *,
    size_bytes: int | None = None,
    note: str = "",
    ms_per_face: tuple[float, float] | None = None,
) -> BackendParity:
    """Measure *candidate* against *reference* (same faces, same order)."""
    if candidate.shape != reference.shape:
        raise ValueError(
            f"{backend} output must have the reference's shape {reference.shape} "
            f"(got {candidate.shape})"
        )
    ref = reference.astype(np.float64)
    got = candidate.astype(np.float64)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    ref_dec, got_dec = decisions(reference, golden), decisions(candidate, golden)
    return BackendParity(
        backend=backend,
        weights=weights,
        max_abs_diff=float(np.abs(ref - got).max()),
        min_cosine=float(cos.min()),
        decisions_agree=sum(a == b for a, b in zip(ref_dec, got_dec, strict=True)),
        decisions_total=len(ref_dec),
        tolerance=golden.tolerances[weights],
        size_bytes=size_bytes,
        note=note,
        ms_per_face=ms_per_face,
    )


def run_parity(
    *,
    weights: str | Path | None = None,
    golden: str | Path | None = None,
    backends: Sequence[str] = BACKENDS,
    quantize: str | None = None,
    onnx_path: str | Path | None = None,
    tfjs_dir: str | Path | None = None,
    workdir: str | Path | None = None,
    repeats: int = 0,
) -> ParityReport:
    """Run the golden faces through TensorFlow and each of *backends*, and compare.

    Args:
      weights: the Keras weights (reference and source of fresh exports); ``None``: shipped.
      golden: the golden ``parity.json``; default ``tests/golden/parity.json``.
      backends: any of ``"onnx"``, ``"tfjs"``.
      quantize: compare ``"float16"`` or ``"uint8"`` exports (their tolerances apply).
      onnx_path: an existing ONNX file to check instead of exporting one.
      tfjs_dir: an existing TF.js graph-model folder to check instead of exporting one.
      workdir: where fresh exports go (kept); default a temporary folder (removed).
      repeats: when > 0, also time every backend at batch 1 and 32 (median of *repeats*).
    """
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"'backends' must be among {BACKENDS} (got {sorted(unknown)})")
    gold = Golden.load(golden)
    from .export import export_model
    from .tensorflow import KerasExtractor

    keras_ex = KerasExtractor(weights)
    reference = keras_ex.embed_aligned(gold.faces)
    ref_ms = _timings(keras_ex.embed_aligned, gold.faces, repeats)
    level = quantize or "float32"
    results = []
    with tempfile.TemporaryDirectory(prefix="faceid-parity-") as tmp:
        out = Path(workdir) if workdir is not None else Path(tmp)
        if "onnx" in backends:
            from .onnx import OnnxExtractor, default_onnx_path

            if onnx_path is None and weights is None and quantize is None:
                # Checking the shipped weights: check the shipped ONNX file, if there is one.
                shipped = default_onnx_path()
                onnx_path = shipped if shipped.is_file() else None
            if onnx_path is None:
                onnx_path = export_model("onnx", out, quantize, model=keras_ex.loaded).path
            onnx_ex = OnnxExtractor(onnx_path, model_id=keras_ex.model_id)
            results.append(
                compare("onnx", level, reference, onnx_ex.embed_aligned(gold.faces), gold,
                        size_bytes=Path(onnx_path).stat().st_size,
                        ms_per_face=_timings(onnx_ex.embed_aligned, gold.faces, repeats))
            )
        if "tfjs" in backends:
            from .tfjs import run_node

            if tfjs_dir is None:
                tfjs_dir = export_model("tfjs", out, quantize, model=keras_ex.loaded).path
            tfjs_dir = Path(tfjs_dir)
            outputs, info = run_node(tfjs_dir, gold.faces_path, repeats=repeats)
            node_ms = info.get("ms_per_face")
            size = sum(f.stat().st_size for f in tfjs_dir.iterdir() if f.is_file())
            meta = info.get("metadata") or {}
            note = ""
            if meta.get("model_id") not in (None, keras_ex.model_id):
                note = f"export says model_id {meta['model_id']!r}"
            results.append(
                compare(f"tfjs-{info['backend']}", level, reference, outputs, gold,
                        size_bytes=size, note=note,
                        ms_per_face=(node_ms["batch1"], node_ms["batch32"]) if node_ms else None)
            )
    return ParityReport(keras_ex.model_id, len(gold.faces), tuple(results), ref_ms)


def reference_path(golden: Golden, model_id: str) -> Path:
    """Where TensorFlow's vectors of the golden faces for *model_id* are kept."""
    return golden.path.parent / f"reference-{model_id}.npy"


def write_reference(
    *, weights: str | Path | None = None, golden: str | Path | None = None
) -> Path:
    """Store TensorFlow's vectors of the golden faces beside the golden file.

    With them, the ONNX backend is checked without TensorFlow installed
    (``tests/adapters/test_shipped.py``), as a server with ``faceid-sdk[onnx]`` runs.
    """
    from .tensorflow import KerasExtractor

    gold = Golden.load(golden)
    keras_ex = KerasExtractor(weights)
    path = reference_path(gold, keras_ex.model_id)
    np.save(path, keras_ex.embed_aligned(gold.faces))
    return path


def _timings(embed: Any, faces: npt.NDArray[np.uint8], repeats: int) -> tuple[float, float] | None:
    if repeats <= 0:
        return None
    return (time_per_face(embed, faces, 1, repeats),
            time_per_face(embed, faces, 32, max(1, repeats // 4)))


def time_per_face(embed: Any, faces: npt.NDArray[np.uint8], batch: int, repeats: int) -> float:
    """Median milliseconds per face of ``embed`` on batches of *batch* faces (after a warm-up)."""
    idx = np.arange(batch) % len(faces)
    x = faces[idx]
    embed(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        embed(x)
        times.append((time.perf_counter() - t0) / batch * 1e3)
    return float(np.median(times))
