"""Online distillation: the teacher labels every augmented view the student sees.

Recipe ``online`` of ``faceid-sdk train``:

* **Data**: 112x112 crops made by the product's own pipeline (:mod:`.prepare`), every photo of
  every source. Held out, never trained on: the 60 unseen CelebA identities (the fixed list in
  ``splits/``) and every person of LFW-dev pair folds 4 and 5 (LFW's protocol is reported on
  those folds).
* **Views**: each sample gets one random similarity warp (scale, rotation, shift, mirror) and
  photometric change (brightness, contrast, saturation, grey, blur) of its 112x112 crop; the
  student sees that view resized to 96x96 and the teacher sees the *same* view in its own
  framing (columns 8..104 stretched to 128x128, BGR).
* **Teacher**: Intel's ``face-reidentification-retail-0095`` (Apache-2.0) through OpenVINO, in
  a separate producer process so that it and the augmentation overlap the training step.
  Training only: the product never loads it; its path is an argument of the command.
* **Targets**: the teacher's 256-d unit output projected by a PCA to the student's dimension
  (fitted once per run on the teacher's embeddings of un-augmented training crops) and
  re-normalized; the loss is ``1 - cosine`` to that target plus ``relational_weight`` times the
  mean squared difference of the two in-batch cosine-similarity matrices (student vs the
  teacher's full 256-d output).
* **Warm start** from the shipped weights, with the last 1x1 convolution refitted by ridge
  regression onto the PCA targets before the first step (the shipped embedding space is not
  the teacher's).
* Checkpoint every ``checkpoint_every`` steps (the batch stream is seeded by step number, so a
  resumed run sees the batches it would have seen), evaluation on the held-out people every
  ``eval_every`` steps, the best weights kept in ``best/`` (``weights.npz`` + ``model.json``),
  the weights at the end of the schedule in ``final/``.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import shutil
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from ..vectors import l2_normalize
from ._data import unseen_celeba_ids
from ._metrics import make_pairs, pair_distances, tar_at_far, verification_10fold

__all__ = ["OnlineConfig", "lfw_heldout_pairs", "load_crops", "train_online"]

LFW_HELDOUT_FOLDS = (4, 5)


@attrs.frozen
class OnlineConfig:
    """Everything that determines an online-distillation run (written to ``config.json``)."""

    name: str
    teacher: str
    caches: tuple[str, ...] = (
        "data-cache/celeba112.npz=celeba/",
        "data-cache/glint112.npz=glint/",
        "data-cache/pins112.npz=pins/",
        "data-cache/lfw112.npz=lfw/",
    )
    lfw_pairs: str = "../shared/data/lfw-dev/pairs-folds-1-5.txt"
    embedding_dim: int = 128
    batch_size: int = 64
    steps: int = 6000
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    relational_weight: float = 1.0
    #: Fraction of each batch whose view is a blend of two different photos (weights drawn in
    #: [0.3, 0.7]), labelled by the teacher like any view: inputs no photo holds, against the
    #: student's memorising of its training photos (docs/evaluation.md, mixing cycle).
    mix_faces: float = 0.0
    init_weights: str | None = "shipped"
    #: Start from this run's teacher PCA (``teacher_pca.npz``) instead of fitting a new one;
    #: with it the warm-started head already speaks that basis and is kept, not refitted.
    teacher_pca: str | None = None
    checkpoint_every: int = 200
    eval_every: int = 500
    seed: int = 0
    runs_dir: str = "runs"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


# --------------------------------------------------------------------------------------- data


def load_crops(specs: tuple[str, ...]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.str_]]:
    """112x112 crops and prefixed identity labels of every cache ``path=prefix``."""
    images, labels = [], []
    for spec in specs:
        path, _, prefix = spec.partition("=")
        with np.load(path) as z:
            ok = z["found"]
            images.append(z["images"][ok])
            labels.append(np.char.add(prefix, z["labels"][ok].astype(str)))
    return np.concatenate(images), np.concatenate(labels)


def _read_lfw_pairs(path: str | Path) -> list[tuple[int, str, int, str, int]]:
    """``(fold, name_a, image_a, name_b, image_b)`` of LFW's pairs file (1-based image numbers)."""
    lines = Path(path).read_text().split("\n")
    _, per = (int(v) for v in lines[0].split())
    rows = []
    for k, line in enumerate(x for x in lines[1:] if x.strip()):
        parts = line.split("\t")
        fold = k // (2 * per) + 1
        if len(parts) == 3:
            rows.append((fold, parts[0], int(parts[1]), parts[0], int(parts[2])))
        else:
            rows.append((fold, parts[0], int(parts[1]), parts[2], int(parts[3])))
    return rows


def lfw_heldout_pairs(
    path: str | Path, folds: tuple[int, ...] = LFW_HELDOUT_FOLDS
) -> tuple[set[str], list[tuple[str, str, bool]]]:
    """The people of *folds* and their pairs as ``(relative_path_a, relative_path_b, same)``."""
    people: set[str] = set()
    pairs = []
    for fold, a, ia, b, ib in _read_lfw_pairs(path):
        if fold in folds:
            people.update((a, b))
            pairs.append((f"{a}/{a}_{ia:04d}.jpg", f"{b}/{b}_{ib:04d}.jpg", a == b))
    return people, pairs


# --------------------------------------------------------------------------------------- views


#: How each parameter of a view is drawn, in column order (:data:`VIEW_PARAMS`): uniformly
#: between ``low`` and ``high``, or, where ``p`` is given, so only with probability ``p`` and
#: ``otherwise`` the rest of the time. A similarity warp about the crop's centre (scale,
#: degrees, shift in pixels), a mirror (1) or not (0), then colour: saturation (0 = grey),
#: contrast, brightness (added levels) and Gaussian blur sigma (0 = none). The one table both
#: samplers read: this module's and the GPU trainer's (through the pack).
VIEW_DISTRIBUTION: dict[str, dict[str, float]] = {
    "scale": {"low": 0.9, "high": 1.1},
    "angle": {"low": -10.0, "high": 10.0},
    "shift_x": {"low": -4.0, "high": 4.0},
    "shift_y": {"low": -4.0, "high": 4.0},
    "flip": {"low": 1.0, "high": 1.0, "p": 0.5, "otherwise": 0.0},
    "saturation": {"low": 0.7, "high": 1.3, "p": 0.9, "otherwise": 0.0},
    "contrast": {"low": 0.7, "high": 1.3},
    "brightness": {"low": -30.0, "high": 30.0},
    "blur_sigma": {"low": 0.5, "high": 1.3, "p": 0.15, "otherwise": 0.0},
}
#: Columns of a view's parameters (:func:`sample_view_params`).
VIEW_PARAMS = tuple(VIEW_DISTRIBUTION)
#: Centre of the similarity warp in a 112x112 crop (pixel centres, as ``cv2.warpAffine``).
VIEW_CENTRE = 55.5


def sample_view_params(n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Parameters of *n* random views (columns :data:`VIEW_PARAMS`), one per crop."""
    out = np.empty((n, len(VIEW_PARAMS)), np.float32)
    for j, d in enumerate(VIEW_DISTRIBUTION.values()):
        column = rng.uniform(d["low"], d["high"], n)
        if "p" in d:
            column = np.where(rng.random(n) < d["p"], column, d["otherwise"])
        out[:, j] = column
    return out


def view_matrix(params: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The 2x3 warp (source to view pixels) of one view's parameters."""
    import cv2

    scale, angle, sx, sy = (float(v) for v in params[:4])
    m = np.asarray(cv2.getRotationMatrix2D((VIEW_CENTRE, VIEW_CENTRE), angle, scale), np.float64)
    m[:, 2] += (sx, sy)
    return m


def render_views(
    crops: npt.NDArray[np.uint8], params: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """The views of 112x112 crops: (student 96x96 uint8 RGB, the teacher's framing of each
    (:data:`TEACHER_COLUMNS`), N x 3 x 128 x 128 BGR)."""
    import cv2

    n = len(crops)
    student = np.empty((n, 96, 96, 3), np.uint8)
    teacher = np.empty((n, 3, TEACHER_SIZE, TEACHER_SIZE), np.float32)
    for i in range(n):
        _, _, _, _, flip, saturation, contrast, brightness, sigma = (float(v) for v in params[i])
        view = cv2.warpAffine(crops[i], view_matrix(params[i]), (112, 112),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if flip:
            view = view[:, ::-1]
        x = view.astype(np.float32)
        grey = x.mean(2, keepdims=True)
        x = grey + (x - grey) * np.float32(saturation)
        mean = x.mean()
        x = (x - mean) * np.float32(contrast) + mean + np.float32(brightness)
        if sigma > 0:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        view = np.clip(x, 0, 255).astype(np.uint8)
        student[i] = cv2.resize(view, (96, 96), interpolation=cv2.INTER_AREA)
        teacher[i] = _frame_for_teacher(view)
    return student, teacher


#: The teacher's framing of a 112x112 crop or view: these columns (all rows), stretched
#: bilinearly to a square of this size, BGR, channels first.
TEACHER_COLUMNS = (8, 104)
TEACHER_SIZE = 128


def _frame_for_teacher(view: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    import cv2

    lo, hi = TEACHER_COLUMNS
    framed = cv2.resize(view[:, lo:hi], (TEACHER_SIZE, TEACHER_SIZE),
                        interpolation=cv2.INTER_LINEAR)
    return np.asarray(framed[:, :, ::-1].transpose(2, 0, 1), np.uint8)


def augment_views(
    crops: npt.NDArray[np.uint8], rng: np.random.Generator
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """One random view per 112x112 crop (:func:`sample_view_params`, :func:`render_views`)."""
    return render_views(crops, sample_view_params(len(crops), rng))


#: The range a blended view's weight on its own photo is drawn from (the partner gets the rest).
MIX_WEIGHTS = (0.3, 0.7)


def mix_views(
    student: npt.NDArray[np.uint8], teacher: npt.NDArray[np.float32], fraction: float,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """*fraction* of the views (rounded) each blended with another view of the batch, the
    student's and the teacher's inputs with the same weight; the others left as they were."""
    n = len(student)
    k = round(fraction * n)
    if k == 0 or n < 2:
        return student, teacher
    rows = rng.choice(n, k, replace=False)
    partners = (rows + rng.integers(1, n, k)) % n  # never the view itself
    w = rng.uniform(*MIX_WEIGHTS, k).astype(np.float32)
    student, teacher = student.copy(), teacher.copy()
    ws = w[:, None, None, None]
    student[rows] = np.clip(np.rint(ws * student[rows] + (1 - ws) * student[partners]), 0, 255
                            ).astype(np.uint8)
    teacher[rows] = ws * teacher[rows] + (1 - ws) * teacher[partners]
    return student, teacher


def teacher_input(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The teacher's framing of un-augmented 112x112 crops (N x 3 x 128 x 128 BGR)."""
    out = np.empty((len(crops), 3, TEACHER_SIZE, TEACHER_SIZE), np.float32)
    for i, c in enumerate(crops):
        out[i] = _frame_for_teacher(c)
    return out


class Teacher:
    """The OpenVINO teacher (float32, *threads* CPU threads); unit-length 256-d outputs."""

    def __init__(self, xml: str | Path, threads: int = 1) -> None:
        import openvino

        from ..face_models import openvino_cpu_config

        self._model = openvino.Core().compile_model(str(xml), "CPU", openvino_cpu_config(threads))

    def __call__(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = np.concatenate(
            [np.asarray(self._model(batch[i : i + 1])[0]).reshape(1, -1) for i in range(len(batch))]
        )
        unit: npt.NDArray[np.float32] = (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(
            np.float32
        )
        return unit


def _producer(
    crops: Any, teacher_xml: str, batch: int, seed: int, start: int, queue: Any,
    mix_faces: float = 0.0,
) -> None:
    import cv2

    cv2.setNumThreads(1)
    teach = Teacher(teacher_xml)
    step = start
    while True:
        rng = np.random.default_rng([seed, step])
        idx = rng.integers(0, len(crops), batch)
        student, tin = mix_views(*augment_views(crops[idx], rng), mix_faces, rng)
        queue.put((step, student, teach(tin)))
        step += 1


# --------------------------------------------------------------------------------------- train


#: The trainer's progress line in ``train.log``, every 50 steps; :func:`logged_throughput` reads it.
PROGRESS_LINE = "step %d loss cos %.4f rel %.4f | %.1f img/s, waiting on data %.0f%% | lr %.2e"


def logged_throughput(log_text: str) -> list[float]:
    """The images/s of every :data:`PROGRESS_LINE` in a run's ``train.log``."""
    import re

    return [float(rate) for rate in re.findall(r"\| ([0-9.]+) img/s, waiting on data", log_text)]


def _log(run_dir: Path) -> logging.Logger:
    log = logging.getLogger(f"faceid_sdk.train_online.{run_dir.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        for h in (logging.FileHandler(run_dir / "train.log"), logging.StreamHandler()):
            h.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            log.addHandler(h)
    return log


def _embed(model: Any, crops96: npt.NDArray[np.uint8], batch: int = 256) -> npt.NDArray[np.float32]:
    parts = [
        np.asarray(model(crops96[i : i + batch].astype(np.float32) / 127.5 - 1.0, training=False))
        for i in range(0, len(crops96), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


def resize_to_input(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    import cv2

    return np.stack([cv2.resize(c, (96, 96), interpolation=cv2.INTER_AREA) for c in crops])


def unit_targets(
    t256: npt.NDArray[np.float32], mean: npt.NDArray[np.float32], basis: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """The teacher's outputs as the student's targets: its PCA, then unit length."""
    return l2_normalize((t256 - mean) @ basis.T)


def fit_teacher_pca(
    t256: npt.NDArray[np.float32], dim: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The mean and the top *dim* principal directions (rows) of the teacher's outputs."""
    mean = t256.mean(0)
    _, _, vt = np.linalg.svd(t256 - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:dim].astype(np.float32)


def rotate_basis_onto(
    basis: npt.NDArray[np.float32], targets: npt.NDArray[np.float32],
    outputs: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """*basis* turned within its span so that its *targets* best match a model's unit *outputs*
    on the same crops (orthogonal Procrustes): a warm start then keeps its head, even when the
    PCA it was trained on is gone (a fresh checkout), and the targets keep the teacher's
    geometry (a rotation changes no distance)."""
    u, _, vt = np.linalg.svd(targets.T @ outputs)
    turned: npt.NDArray[np.float32] = ((u @ vt).T @ basis).astype(np.float32)
    return turned


def cosine_loss(embeddings: npt.NDArray[np.float32], targets: npt.NDArray[np.float32]) -> float:
    """Mean ``1 - cosine`` between *embeddings* (any length) and unit-length *targets*."""
    return float(1.0 - (l2_normalize(embeddings) * targets).sum(1).mean())


def distillation_loss(model: Any, crops96: npt.NDArray[np.uint8],
                      targets: npt.NDArray[np.float32]) -> float:
    """Mean ``1 - cosine`` between the student's embeddings of *crops96* and *targets*."""
    return cosine_loss(_embed(model, crops96), targets)


def evaluate_heldout(
    model: Any, val: dict[str, Any]
) -> dict[str, float]:
    """Verification on the unseen CelebA people and LFW's protocol on the held-out folds; with
    ``val["celeba_targets"]`` and ``val["train_probe"]`` (crops96, targets), the distillation
    loss on the unseen people's and on training crops too (un-augmented: the two together show
    the generalization gap)."""
    out = {}
    emb = _embed(model, val["celeba_images"])
    if "celeba_targets" in val:
        out["celeba_distill"] = cosine_loss(emb, val["celeba_targets"])
    if "train_probe" in val:
        out["train_distill"] = distillation_loss(model, *val["train_probe"])
    d = pair_distances(emb, val["celeba_pairs"])
    v = verification_10fold(d, val["celeba_same"])
    out["celeba_acc"] = float(v["accuracy"])
    out["celeba_tar_1e-3"] = float(tar_at_far(d, val["celeba_same"], 1e-3))
    emb = _embed(model, val["lfw_images"])
    d = pair_distances(emb, val["lfw_pairs"])
    out["lfw_acc"] = float(verification_10fold(d, val["lfw_same"])["accuracy"])
    return out


def split_heldout(cfg: OnlineConfig, log: logging.Logger) -> tuple[Any, Any, dict[str, Any]]:
    images, labels = load_crops(cfg.caches)
    unseen = np.isin(labels, [f"celeba/{i}" for i in unseen_celeba_ids()])
    people, lfw_pairs = lfw_heldout_pairs(cfg.lfw_pairs)
    lfw_held = np.isin(labels, [f"lfw/{p}" for p in people])
    train = ~(unseen | lfw_held)
    # LFW pair images by path
    with np.load(next(s for s in cfg.caches if "lfw" in s).partition("=")[0]) as z:
        paths = z["paths"].astype(str)
        lfw_images = z["images"]
    where = {p: i for i, p in enumerate(paths)}
    needed = sorted({p for a, b, _ in lfw_pairs for p in (a, b)})
    pos = {p: k for k, p in enumerate(needed)}
    val = {
        "celeba_images": resize_to_input(images[unseen]),
        "celeba_crops": images[unseen],
        "lfw_images": resize_to_input(lfw_images[[where[p] for p in needed]]),
        "lfw_pairs": np.array([(pos[a], pos[b]) for a, b, _ in lfw_pairs], np.int64),
        "lfw_same": np.array([s for _, _, s in lfw_pairs], bool),
    }
    val["celeba_pairs"], val["celeba_same"] = make_pairs(labels[unseen], seed=0)
    log.info(
        "data: train %d crops / %d people; held out: %d unseen CelebA crops, %d LFW people "
        "(folds %s, %d pairs)",
        int(train.sum()), len(np.unique(labels[train])), int(unseen.sum()), len(people),
        LFW_HELDOUT_FOLDS, len(lfw_pairs),
    )
    return images[train], labels[train], val


def train_online(cfg: OnlineConfig) -> dict[str, Any]:
    """Run or resume an online-distillation run; returns the best held-out evaluation."""
    import keras
    import tensorflow as tf

    from faceid_sdk.model import build_ffem_am, load_default_keras, save_weights_npz
    from faceid_sdk.model._weights import load_weights_npz

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _log(run_dir)
    (run_dir / "config.json").write_text(json.dumps(attrs.asdict(cfg), indent=2))
    keras.utils.set_random_seed(cfg.seed)
    train_images, _, val = split_heldout(cfg, log)

    if cfg.init_weights == "shipped":
        model = load_default_keras()
    else:
        model = build_ffem_am(cfg.embedding_dim)
        if cfg.init_weights:
            load_weights_npz(model, cfg.init_weights)

    pca_file = run_dir / "teacher_pca.npz"
    if cfg.teacher_pca and not pca_file.exists():
        shutil.copyfile(cfg.teacher_pca, pca_file)
    if not pca_file.exists():
        t0 = time.time()
        rng = np.random.default_rng(cfg.seed)
        sample = rng.choice(len(train_images), min(4000, len(train_images)), replace=False)
        t256 = Teacher(cfg.teacher, threads=2)(teacher_input(train_images[sample]))
        mean, basis = fit_teacher_pca(t256, cfg.embedding_dim)
        crops96 = resize_to_input(train_images[sample])
        if cfg.init_weights:
            # A warm start keeps its head: turn the fresh basis onto what the model already says.
            basis = rotate_basis_onto(basis, unit_targets(t256, mean, basis),
                                      l2_normalize(_embed(model, crops96)))
            np.savez(pca_file, mean=mean, basis=basis)
            how = "rotated onto the warm start's outputs (head kept)"
        else:
            # From scratch: refit the last layer onto the targets (ridge on pooled features).
            feats_model = keras.Model(model.input, model.get_layer("global_pool").output)
            x = _embed(feats_model, crops96).reshape(len(sample), -1)
            target = unit_targets(t256, mean, basis)
            xb = np.hstack([x, np.ones((len(x), 1), np.float32)])
            w = np.linalg.solve(xb.T @ xb + 1.0 * np.eye(xb.shape[1]), xb.T @ target)
            np.savez(pca_file, mean=mean, basis=basis, head_w=w)
            how = "head refit"
        log.info("teacher PCA on %d crops, %s, in %.0fs", len(sample), how, time.time() - t0)
    with np.load(pca_file) as z:
        pca_mean, pca_basis = z["mean"], z["basis"]
        head_w = z["head_w"] if "head_w" in z.files and not cfg.teacher_pca else None
    # The distillation loss on un-augmented crops of the unseen people and of as many training
    # crops, at every evaluation: the training log's loss alone cannot show memorisation.
    t0, teacher = time.time(), Teacher(cfg.teacher, threads=2)
    probe = np.random.default_rng(cfg.seed + 1).choice(
        len(train_images), min(len(val["celeba_crops"]), len(train_images)), replace=False)
    val["celeba_targets"] = unit_targets(teacher(teacher_input(val.pop("celeba_crops"))),
                                         pca_mean, pca_basis)
    val["train_probe"] = (resize_to_input(train_images[probe]), unit_targets(
        teacher(teacher_input(train_images[probe])), pca_mean, pca_basis))
    del teacher
    log.info("distillation-loss probes (%d unseen, %d training crops) in %.0fs",
             len(val["celeba_targets"]), len(probe), time.time() - t0)

    emb_layer = model.get_layer("embedding_conv")
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    best = {"score": tf.Variable(-1.0, dtype=tf.float64, name="best")}
    total, warm, lr = cfg.steps, cfg.warmup_steps, cfg.lr

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
        def __call__(self, step: Any) -> Any:
            s = tf.cast(step, tf.float32)
            cos = 0.5 * lr * (1 + tf.cos(math.pi * tf.minimum(1.0, (s - warm) / (total - warm))))
            return tf.where(s < warm, lr * (s + 1) / warm, cos)

    opt = keras.optimizers.AdamW(Schedule(), weight_decay=cfg.weight_decay)
    opt.build(model.trainable_variables)
    ckpt = tf.train.Checkpoint(model=model, opt=opt, step=step_var, best=best["score"])
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        log.info("resumed from %s at step %d", manager.latest_checkpoint, int(step_var.numpy()))
    else:
        if head_w is not None:
            k, _ = emb_layer.get_weights()
            emb_layer.set_weights([head_w[:-1].reshape(k.shape).astype(np.float32),
                                   head_w[-1].astype(np.float32)])
        metrics = evaluate_heldout(model, val)
        how = ("head refit" if head_w is not None else
               "kept head, PCA of " + (cfg.teacher_pca or "this run, rotated onto it"))
        log.info("step 0 (warm start, %s): %s", how, json.dumps(metrics))

    basis_t = tf.constant(pca_basis, tf.float32)
    mean_t = tf.constant(pca_mean, tf.float32)
    rel_w = cfg.relational_weight

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def train_step(images: Any, t256: Any) -> Any:
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        target = tf.linalg.l2_normalize(tf.matmul(t256 - mean_t, basis_t, transpose_b=True), 1)
        with tf.GradientTape() as tape:
            s = model(x, training=True)
            cos_loss = tf.reduce_mean(1.0 - tf.reduce_sum(s * target, 1))
            n = tf.cast(tf.shape(s)[0], tf.float32)
            off = 1.0 - tf.eye(tf.shape(s)[0])
            diff = (tf.matmul(s, s, transpose_b=True) - tf.matmul(t256, t256, transpose_b=True))
            rel_loss = tf.reduce_sum(tf.square(diff) * off) / (n * (n - 1))
            loss = cos_loss + rel_w * rel_loss
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return cos_loss, rel_loss

    start = int(step_var.numpy())
    ctx = mp.get_context("fork")
    queue = ctx.Queue(maxsize=6)
    producer = ctx.Process(
        target=_producer,
        args=(train_images, cfg.teacher, cfg.batch_size, cfg.seed, start, queue, cfg.mix_faces),
        daemon=True,
    )
    producer.start()
    t_last, seen, wait = time.time(), 0, 0.0
    losses: list[tuple[float, float]] = []
    summary: dict[str, Any] = {}
    try:
        for step in range(start, total):
            tw = time.time()
            got_step, images, t256 = queue.get(timeout=600)
            wait += time.time() - tw
            assert got_step == step, (got_step, step)
            c, r = train_step(images, t256)
            losses.append((float(c), float(r)))
            seen += len(images)
            step_var.assign(step + 1)
            if (step + 1) % 50 == 0:
                dt = time.time() - t_last
                lc, lr_ = np.mean(losses, 0)
                log.info(
                    PROGRESS_LINE,
                    step + 1, lc, lr_, seen / dt, 100 * wait / dt,
                    float(opt.learning_rate.numpy()) if hasattr(opt.learning_rate, "numpy")
                    else float(Schedule()(step)),
                )
                t_last, seen, wait, losses = time.time(), 0, 0.0, []
            if (step + 1) % cfg.eval_every == 0 or step + 1 == total:
                metrics = evaluate_heldout(model, val)
                score = metrics["celeba_acc"] + metrics["lfw_acc"]
                log.info("step %d held-out: %s", step + 1, json.dumps(metrics))
                if score > float(best["score"].numpy()):
                    best["score"].assign(score)
                    save_weights_npz(model, run_dir / "best")
                    (run_dir / "best.json").write_text(
                        json.dumps({"step": step + 1, **metrics}, indent=2)
                    )
                    log.info("new best at step %d", step + 1)
                summary = metrics
                t_last = time.time()
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
                manager.save()
    finally:
        producer.terminate()
        producer.join()
    if int(step_var.numpy()) == total and not (run_dir / "final.json").exists():
        # The weights at the end of the schedule, what ship.py ships by default (no choice
        # made on the held-out people); written on a re-run too if a session ended first.
        metrics = summary or evaluate_heldout(model, val)
        save_weights_npz(model, run_dir / "final")
        (run_dir / "final.json").write_text(json.dumps({"step": total, **metrics}, indent=2))
        log.info("final weights (step %d) in %s", total, run_dir / "final")
    best_file = run_dir / "best.json"
    return json.loads(best_file.read_text()) if best_file.exists() else summary
