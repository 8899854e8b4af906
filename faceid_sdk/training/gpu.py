"""Train on a lent GPU: pack the data here, train there, bring the weights back.

A GPU machine is lent briefly (minutes), receives at most 64 MiB with the working tree, and
has PyTorch but neither TensorFlow, OpenVINO nor the data. So the work is split in three:

1. ``python -m faceid_sdk.training.gpu pack RUN_DIR --out gpu-pack`` (here, on the CPU):
   the training crops of *RUN_DIR*'s split (held-out people excluded, at most
   ``--max-per-person`` photos each), WebP-packed; the teacher, read from its IR into a
   program of steps and float16 constants (:func:`teacher_program`), with the run's teacher
   PCA, the view distribution (``_online.VIEW_DISTRIBUTION``) and the run's face mixing; the
   weights to start from; and ``pack.json``, which describes the Keras FFEM-AM (read off the
   built model) so that the PyTorch twin on the other side is built from it, not from a copy.
   With ``--views N`` instead, N random views per crop are drawn here and the teacher's
   target for each is computed here (PCA-projected, int8): the GPU then only replays them.
2. ``scripts/gpu_train.sh`` on the GPU machine: ``faceid_sdk/training/torch_student.py``
   (PyTorch only) draws, renders and mixes fresh views on the GPU, the teacher labels them
   there (or it replays the packed views), and it fits the student for a time budget,
   writing ``weights.npz`` keyed by Keras weight paths.
3. ``python -m faceid_sdk.training.gpu import WEIGHTS RUN_DIR --from SOURCE_RUN`` (here):
   loads them into the Keras FFEM-AM, evaluates on the held-out people, and writes
   ``RUN_DIR/final`` so that ``scripts/ship_model.sh RUN_DIR`` ships it like any run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._data import select_identities
from ._online import (
    MIX_WEIGHTS,
    TEACHER_COLUMNS,
    TEACHER_SIZE,
    VIEW_CENTRE,
    VIEW_DISTRIBUTION,
    VIEW_PARAMS,
    OnlineConfig,
    Teacher,
    evaluate_heldout,
    render_views,
    sample_view_params,
    split_heldout,
    unit_targets,
)

__all__ = [
    "decode_crops",
    "describe_architecture",
    "encode_crops",
    "import_weights",
    "load_pca",
    "make_pack",
    "teacher_program",
    "teacher_targets",
]

#: Targets are unit vectors stored as int8: round(127 x component).
TARGET_SCALE = 127.0
#: Default size limit of a pack: the machine takes 64 MiB with the working tree (~18 MiB).
DEFAULT_BUDGET_MIB = 44.0

log = logging.getLogger("faceid_sdk.training.gpu")


def _config(run_dir: Path) -> OnlineConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give the folder of an online run "
                                "(`faceid-sdk train NAME --recipe online` writes it)")
    raw = json.loads(path.read_text())
    raw["caches"] = tuple(raw["caches"])
    return OnlineConfig(**raw)


def describe_architecture(model: Any) -> dict[str, Any]:
    """What ``torch_student.build_twin`` needs to rebuild *model*, read off the built Keras
    model: FFEM-AM, FFEM (no attention) or MobileNetV2 (bottleneck blocks), or ShuffleNetV2."""
    from faceid_sdk.model import FFEM_AM_BLOCKS, MOBILENET_V2_BLOCKS

    bn = model.get_layer("stem_BN")
    common = {
        "name": model.name,
        "input_size": int(model.input_shape[1]),
        "last_channels": int(model.get_layer("conv_last").filters),
        "embedding_dim": int(model.output_shape[-1]),
        "bn_epsilon": float(bn.epsilon),
        "bn_momentum": float(bn.momentum),
        "pixel_normalization": "x / 127.5 - 1",
    }
    if model.name == "shufflenet_v2":  # stages read off the layers: stageS_unitI_right_pw2
        units: dict[int, list[int]] = {}
        for layer in model.layers:
            if layer.name.endswith("_right_pw2"):
                stage = int(layer.name.split("_")[0].removeprefix("stage"))
                units.setdefault(stage, []).append(2 * int(layer.filters))
        return {**common, "stem_channels": int(model.get_layer("stem_conv").filters),
                "stages": [[units[s][0], len(units[s])] for s in sorted(units)]}
    tables = {"ffem_am": FFEM_AM_BLOCKS, "ffem": FFEM_AM_BLOCKS,
              "mobilenet_v2": MOBILENET_V2_BLOCKS}
    if model.name not in tables:
        raise ValueError(f"no PyTorch twin for {model.name!r}; one of {sorted(tables)}")
    eca = {name.split("_eca_conv")[0].removeprefix("block_"): int(layer.kernel_size[0])
           for layer in model.layers if (name := layer.name).endswith("_eca_conv")}
    return {**common, "blocks": [list(b) for b in tables[model.name]],
            "attention_blocks": sorted(int(b) for b in eca), "eca_kernels": eca}


def encode_crops(
    crops: npt.NDArray[np.uint8], quality: int
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """WebP bytes of RGB crops, one after another, and the offsets that cut them apart."""
    import cv2

    parts = []
    for c in crops:
        ok, buf = cv2.imencode(".webp", np.ascontiguousarray(c[:, :, ::-1]),
                               [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode WebP; install opencv-python-headless")
        parts.append(buf.tobytes())
    offsets = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    return b"".join(parts), offsets


def decode_crops(blob: bytes, offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """The crops of :func:`encode_crops`, as the GPU machine will decode them."""
    import cv2

    raw = np.frombuffer(blob, np.uint8)
    out = np.empty((len(offsets) - 1, 112, 112, 3), np.uint8)
    for i in range(len(out)):
        img = cv2.imdecode(raw[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError(f"crop {i} does not decode after encoding; check OpenCV's WebP")
        out[i] = img[:, :, ::-1]
    return out


def make_pack(
    run_dir: Path,
    out: Path,
    *,
    views: int | None = None,
    max_per_person: int = 40,
    quality: int = 75,
    budget_mib: float = DEFAULT_BUDGET_MIB,
    init: Path | None = None,
    seed: int = 0,
    threads: int = 2,
    teacher: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None = None,
) -> dict[str, Any]:
    """Write the pack for *run_dir* into *out* (module docstring); returns ``pack.json``.

    *views* None (an online pack): the teacher goes with the crops, as a program the GPU runs
    (:func:`teacher_program`), and labels fresh views, mixed as the run mixes them, at every
    step. *views* N: N views per crop drawn here, each labelled here by *teacher* (the
    teacher's framing of views, N x 3 x 128 x 128 BGR, to unit 256-d outputs; by default the
    run's OpenVINO teacher on *threads* threads).
    """
    from faceid_sdk.model import build_ffem_am

    online = views is None
    views = views or 0
    if (not online and views < 1) or max_per_person < 1 or not 1 <= quality <= 100:
        raise ValueError(f"--views ({views}) and --max-per-person ({max_per_person}) must be "
                         f">= 1 and --quality ({quality}) within 1..100")
    cfg = _config(run_dir)
    pca = load_pca(run_dir / "teacher_pca.npz")
    t0 = time.time()
    images, labels, _ = split_heldout(cfg, log)
    rng = np.random.default_rng(seed)
    pick = np.flatnonzero(select_identities(labels, max_per_identity=max_per_person, seed=seed))
    blob, offsets = encode_crops(images[pick], quality)
    init_path = init or _default_init(run_dir)
    dim = pca[1].shape[0]
    program = teacher_program(cfg.teacher) if online else None
    # Every size is known before the teacher's minutes: refuse an oversized pack first.
    expected = (len(blob) + offsets.nbytes + len(pick) * views * (2 * len(VIEW_PARAMS) + dim)
                + init_path.stat().st_size
                + (sum(a.nbytes for a in program[1].values()) if program else 0)
                + ((run_dir / "teacher_pca.npz").stat().st_size if program else 0)) / 2**20
    if expected > budget_mib:
        raise ValueError(
            f"the pack would be {expected:.1f} MiB, over the {budget_mib:g} MiB budget (the GPU "
            "machine takes 64 MiB with the working tree): lower --max-per-person, --views or "
            "--quality")
    # Written beside *out* and moved into place at the end: a failure leaves an older pack.
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.savez(partial / "crops.npz", blob=np.frombuffer(blob, np.uint8), offsets=offsets)
    shutil.copyfile(init_path, partial / "init.npz")
    if program is not None:
        steps, arrays = program
        (partial / "teacher.json").write_text(json.dumps(steps) + "\n")
        np.savez(partial / "teacher.npz", **arrays)  # type: ignore[arg-type]
        shutil.copyfile(run_dir / "teacher_pca.npz", partial / "teacher_pca.npz")
        files: tuple[str, ...] = ("crops.npz", "init.npz", "teacher.json", "teacher.npz",
                                  "teacher_pca.npz")
        kind: dict[str, Any] = {
            "kind": "online", "view_distribution": VIEW_DISTRIBUTION,
            "teacher_frame": {"columns": list(TEACHER_COLUMNS), "size": TEACHER_SIZE},
            "mix_faces": cfg.mix_faces, "mix_weights": list(MIX_WEIGHTS),
            "target": "the teacher's 256-d unit output for each fresh view, the run's PCA to "
                      "the student's dimension, re-normalized (on the GPU, every step)"}
    else:
        crops = decode_crops(blob, offsets)  # the teacher labels exactly what the GPU decodes
        # float16 in the pack, so the teacher labels the views exactly as the GPU renders them
        params = sample_view_params(len(crops) * views, rng).astype(np.float16).astype(
            np.float32).reshape(len(crops), views, -1)
        targets = teacher_targets(crops, params, pca,
                                   teacher or Teacher(cfg.teacher, threads=threads))
        np.savez(partial / "views.npz", params=params.astype(np.float16), targets=targets)
        files = ("crops.npz", "views.npz", "init.npz")
        kind = {"views_per_crop": views, "target_scale": TARGET_SCALE,
                "target": "teacher 256-d unit output, the run's PCA to the student's "
                          "dimension, re-normalized"}
    digest = hashlib.sha256()
    for name in files:
        digest.update((partial / name).read_bytes())
    meta = {
        "pack_id": digest.hexdigest()[:12],
        "architecture": describe_architecture(build_ffem_am(cfg.embedding_dim)),
        "view_params": list(VIEW_PARAMS),
        "view_centre": VIEW_CENTRE,
        "crop_size": 112,
        "crops": len(pick),
        "people": len(np.unique(labels[pick])),
        **kind,
        "target_dim": dim,
        "image_format": f"webp quality {quality}",
        "init_weights": str(init_path),
        "source_run": str(run_dir),
        "teacher": cfg.teacher,
        "teacher_pca": str(run_dir / "teacher_pca.npz"),
        "caches": list(cfg.caches),
        "max_per_person": max_per_person,
        "seed": seed,
        "built_in_s": round(time.time() - t0, 1),
        "size_mib": round(sum(f.stat().st_size for f in partial.iterdir()) / 2**20, 2),
    }
    (partial / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return meta


def _default_init(run_dir: Path) -> Path:
    for pick in ("final", "best"):
        if (run_dir / pick / "weights.npz").is_file():
            return run_dir / pick / "weights.npz"
    from .ship import SHIPPED_DIR

    log.warning("%s has no final/ or best/ weights yet: the pack starts from the shipped model "
                "(give --init to choose)", run_dir)
    return SHIPPED_DIR / "weights.npz"


def teacher_program(xml: str | Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The teacher IR as the GPU trainer's executor runs it (``torch_student.IRProgram``):
    steps and constants, the constants float16 where that loses nothing (the IR's own)."""
    from faceid_adapters.openvino_graph import STRUCTURAL_OPS, program, read_ir

    from .torch_student import IR_OPS

    steps, arrays = program(read_ir(xml, IR_OPS | STRUCTURAL_OPS))
    return steps, {k: a.astype(np.float16) if np.array_equal(a.astype(np.float16), a) else a
                   for k, a in arrays.items()}


def load_pca(pca_file: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The teacher PCA (mean, basis) that turns the teacher's output into a target."""
    if not pca_file.is_file():
        raise FileNotFoundError(f"{pca_file} not found: the run's teacher PCA defines the "
                                "targets; start the run (`faceid-sdk train`) first")
    with np.load(pca_file) as z:
        return z["mean"], z["basis"]


def teacher_targets(
    crops: npt.NDArray[np.uint8], params: npt.NDArray[np.float32],
    pca: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    teacher: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
) -> npt.NDArray[np.int8]:
    mean, basis = pca
    n, v, _ = params.shape
    out = np.empty((n, v, basis.shape[0]), np.int8)
    t0, chunk = time.time(), 256
    flat_crops = np.repeat(np.arange(n), v)
    flat_params = params.reshape(n * v, -1)
    for i in range(0, n * v, chunk):
        sl = slice(i, i + chunk)
        _, tin = render_views(crops[flat_crops[sl]], flat_params[sl])
        t = unit_targets(teacher(tin), mean, basis)
        out.reshape(n * v, -1)[sl] = np.round(t * TARGET_SCALE).astype(np.int8)
        if (i // chunk) % 40 == 0:
            log.info("teacher: %d / %d views, %.0f views/s", i + chunk, n * v,
                     (i + chunk) / (time.time() - t0))
    return out


def import_weights(weights: Path, run_dir: Path, source_run: Path) -> dict[str, Any]:
    """Load GPU-trained *weights* into the Keras FFEM-AM, evaluate on the held-out people and
    write *run_dir* (``final/``, ``final.json``, ``config.json``) for ``ship.py``."""
    from faceid_sdk.model import build_ffem_am, load_weights_npz, save_weights_npz

    cfg = _config(source_run)
    train_json = weights.parent / "train.json"
    trained = json.loads(train_json.read_text()) if train_json.is_file() else {}
    model = build_ffem_am(cfg.embedding_dim)
    load_weights_npz(model, weights)
    _, _, val = split_heldout(cfg, log)
    metrics = evaluate_heldout(model, val)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_weights_npz(model, run_dir / "final")
    steps = int(trained.get("steps", 0))
    (run_dir / "final.json").write_text(json.dumps({"step": steps, **metrics}, indent=2) + "\n")
    config = json.loads((source_run / "config.json").read_text())
    config.update({
        "name": run_dir.name, "trainer": "torch-gpu", "steps": steps,
        "batch_size": int(trained.get("batch", config["batch_size"])),
        "lr": trained.get("lr", config["lr"]),
        "weight_decay": trained.get("weight_decay", config["weight_decay"]),
        "relational_weight": trained.get("relational_weight", config["relational_weight"]),
        "seed": trained.get("seed", config["seed"]),
        "gpu": {k: v for k, v in trained.items() if k != "history"},
        "source_run": str(source_run),
    })
    (run_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    pca = source_run / "teacher_pca.npz"
    if pca.is_file():
        (run_dir / "teacher_pca.npz").write_bytes(pca.read_bytes())
    log.info("imported %s: %s", weights, json.dumps(metrics))
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a run's data, views and teacher targets")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=Path("gpu-pack"))
    p.add_argument("--views", type=int, default=None,
                   help="pack N views per crop, labelled here by the teacher [default: none; "
                   "the teacher goes with the pack and labels fresh views on the GPU]")
    p.add_argument("--max-per-person", type=int, default=40)
    p.add_argument("--quality", type=int, default=75, help="WebP quality (default 75)")
    p.add_argument("--budget-mib", type=float, default=DEFAULT_BUDGET_MIB)
    p.add_argument("--init", type=Path, default=None,
                   help="weights.npz to start from [default: RUN_DIR/final, else the shipped]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("import", help="evaluate GPU-trained weights and make a run to ship")
    i.add_argument("weights", type=Path, help="weights.npz brought back from the GPU")
    i.add_argument("run_dir", type=Path, help="new run folder (ship it with ship_model.sh)")
    i.add_argument("--from", dest="source", type=Path, required=True,
                   help="the run the pack was made from")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.command == "pack":
            meta = make_pack(args.run_dir, args.out, views=args.views,
                             max_per_person=args.max_per_person, quality=args.quality,
                             budget_mib=args.budget_mib, init=args.init, seed=args.seed,
                             threads=args.threads)
            print(json.dumps({k: meta.get(k) for k in ("pack_id", "kind", "crops", "people",
                                                       "views_per_crop", "size_mib")}))
        else:
            print(json.dumps(import_weights(args.weights, args.run_dir, args.source)))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
