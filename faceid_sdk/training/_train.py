"""Training loop for FFEM-AM and the baselines: two recipes, checkpoints, resume, logs.

Recipes:

``paper``
    The paper's: softmax over training identities on the (pre-normalization) features,
    SGD, learning rate 0.1 decayed by 0.96 each epoch, batch 32, 30 epochs, no augmentation.
``distill``
    What generalizes to unseen people with a few hundred identities: regression to dlib's
    ResNet descriptor (``1 - cosine``, the teacher saw 7,485 people) plus a CosFace margin
    softmax over the training identities, light augmentation, AdamW with cosine decay.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._data import FaceSet, closed_set_split, load_cache, select_identities, unseen_celeba_ids
from ._metrics import make_pairs, pair_distances, verification_10fold

__all__ = ["TrainConfig", "build_arch", "embed_images", "load_training_data", "train"]

ARCHS = ("ffem_am", "ffem", "mobilenet_v2", "shufflenet_v2")


@attrs.frozen
class TrainConfig:
    """Everything that determines a training run; written to ``config.json`` in the run dir."""

    name: str
    caches: tuple[str, ...] = ("data-cache/celeba.npz=celeba/", "data-cache/glint.npz=glint/")
    arch: str = attrs.field(default="ffem_am", validator=attrs.validators.in_(ARCHS))
    recipe: str = attrs.field(
        default="distill", validator=attrs.validators.in_(("distill", "paper"))
    )
    embedding_dim: int = 128
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    distill_weight: float = 1.0
    teacher_centering: float = 0.5
    cls_weight: float = 0.1
    margin: float = 0.25
    scale: float = 30.0
    seed: int = 0
    exclude_unseen: bool = True
    holdout_per_identity: int = 2
    max_identities: int | None = None
    max_images_per_identity: int | None = None
    eval_every: int = 2
    runs_dir: str = "runs"
    init_weights: str | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def build_arch(arch: str, embedding_dim: int = 128) -> Any:
    from faceid_sdk.model import build_ffem_am, build_mobilenet_v2, build_shufflenet_v2

    if arch == "ffem_am":
        return build_ffem_am(embedding_dim)
    if arch == "ffem":
        return build_ffem_am(embedding_dim, attention=False)
    if arch == "mobilenet_v2":
        return build_mobilenet_v2(embedding_dim)
    return build_shufflenet_v2(embedding_dim)


def load_training_data(cfg: TrainConfig) -> tuple[FaceSet, FaceSet, FaceSet]:
    """Return (train, closed-set test, unseen) sets as the config defines them."""
    sets = []
    for spec in cfg.caches:
        path, _, prefix = spec.partition("=")
        sets.append(load_cache(path, prefix))
    data = FaceSet.concat(sets)
    unseen_ids = {f"celeba/{i}" for i in unseen_celeba_ids()}
    is_unseen = np.isin(data.labels, list(unseen_ids))
    unseen = data.subset(is_unseen)
    pool = data.subset(~is_unseen) if cfg.exclude_unseen else data
    if cfg.max_identities is not None or cfg.max_images_per_identity is not None:
        pool = pool.subset(select_identities(
            pool.labels, max_identities=cfg.max_identities,
            max_per_identity=cfg.max_images_per_identity, seed=cfg.seed))
    test_mask = closed_set_split(pool.labels, cfg.holdout_per_identity, seed=cfg.seed)
    return pool.subset(~test_mask), pool.subset(test_mask), unseen


def to_model_input(images: Any) -> Any:
    """uint8 RGB -> float32 in [-1, 1]: the pixel normalization of every FFEM-AM model."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 127.5 - 1.0


def embed_images(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Embeddings of uint8 96x96 RGB crops (N x 96 x 96 x 3) as float32 (N x D)."""
    out = []
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i : i + batch_size])
        out.append(np.asarray(model(x, training=False)))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _augment(images: Any, seed_gen: Any) -> Any:
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    n = tf.shape(x)[0]
    flip = seed_gen.uniform([n, 1, 1, 1]) < 0.5
    x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    # small shifts: reflect-pad 6 px and crop back at a random offset (same for the batch
    # slice is not enough variety, so each image gets its own offset via crop_and_resize)
    pad = 6
    xp = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    size = 96 + 2 * pad
    off = seed_gen.uniform([n, 2], 0, 2 * pad)
    y0 = off[:, 0] / (size - 1)
    x0 = off[:, 1] / (size - 1)
    boxes = tf.stack([y0, x0, y0 + 95.0 / (size - 1), x0 + 95.0 / (size - 1)], axis=1)
    x = tf.image.crop_and_resize(xp, boxes, tf.range(n), [96, 96])
    bright = seed_gen.uniform([n, 1, 1, 1], -25.0, 25.0)
    contrast = seed_gen.uniform([n, 1, 1, 1], 0.75, 1.25)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * contrast + mean + bright
    gray = seed_gen.uniform([n, 1, 1, 1]) < 0.1
    x = tf.where(gray, tf.repeat(tf.reduce_mean(x, axis=3, keepdims=True), 3, axis=3), x)
    return tf.clip_by_value(x, 0.0, 255.0) / 127.5 - 1.0


def _centered_targets(teacher: np.ndarray, run_dir: Path, alpha: float) -> np.ndarray:
    """Teacher descriptors minus *alpha* times their training-set mean, re-normalized.

    dlib's descriptors share a large common component (two random faces have cosine 0.83
    after plain normalization), so regressing onto them lets a student score well by
    predicting the mean face. Removing all of it makes the cosine target lose the teacher's
    tail (TAR@FAR=1e-3 on unseen CelebA: 0.85 raw, 0.71 fully centred); alpha = 0.5 keeps
    it (0.87) while random pairs drop to cosine 0.56.
    """
    mean = teacher.mean(0, keepdims=True)
    np.save(run_dir / "teacher_mean.npy", mean)
    centered = teacher - alpha * mean
    out: np.ndarray = (centered / np.linalg.norm(centered, axis=1, keepdims=True)).astype(
        np.float32
    )
    return out


def _setup_logging(run_dir: Path) -> logging.Logger:
    log = logging.getLogger(f"faceid_sdk.train.{run_dir.name}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(sh)
    return log


def quick_unseen_eval(model: Any, unseen: FaceSet) -> dict[str, float]:
    emb = embed_images(model, unseen.images)
    pairs, issame = make_pairs(unseen.labels, seed=0)
    return verification_10fold(pair_distances(emb, pairs), issame)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns a summary and leaves weights in the run directory."""
    import keras
    import tensorflow as tf

    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _setup_logging(run_dir)
    (run_dir / "config.json").write_text(json.dumps(attrs.asdict(cfg), indent=2))
    keras.utils.set_random_seed(cfg.seed)

    train_set, test_set, unseen = load_training_data(cfg)
    if cfg.recipe == "distill" and train_set.teacher is None:
        raise ValueError(
            "recipe 'distill' needs caches with teacher embeddings (prepare without --no-teacher)"
        )
    classes = np.unique(train_set.labels)
    y = np.searchsorted(classes, train_set.labels).astype(np.int32)
    (run_dir / "classes.txt").write_text("\n".join(classes) + "\n")
    log.info(
        "data: train %d images / %d ids, closed-set test %d, unseen %d images / %d ids",
        len(train_set),
        len(classes),
        len(test_set),
        len(unseen),
        len(np.unique(unseen.labels)),
    )

    model = build_arch(cfg.arch, cfg.embedding_dim)
    if cfg.init_weights:
        model.load_weights(cfg.init_weights)
        log.info("initialized from %s", cfg.init_weights)
    n_cls = len(classes)
    steps_per_epoch = len(train_set) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs

    if cfg.recipe == "paper":
        feat_model = keras.Model(model.input, [model.get_layer("embedding_flatten").output])
        head = keras.layers.Dense(n_cls, name="softmax_fc")
        head.build((None, cfg.embedding_dim))
        schedule = keras.optimizers.schedules.ExponentialDecay(
            cfg.lr, decay_steps=steps_per_epoch, decay_rate=0.96, staircase=True
        )
        opt = keras.optimizers.SGD(schedule)
        head_vars = head.trainable_variables
    else:
        feat_model = model
        head_w = tf.Variable(
            tf.random.normal([cfg.embedding_dim, n_cls], stddev=0.01, seed=cfg.seed),
            name="cosface_w",
        )
        head_vars = [head_w]
        warm = steps_per_epoch

        class WarmCosine(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
            def __call__(self, step: Any) -> Any:
                s = tf.cast(step, tf.float32)
                w = cfg.lr * (s + 1.0) / warm
                c = (
                    0.5
                    * cfg.lr
                    * (
                        1.0
                        + tf.cos(math.pi * tf.minimum(1.0, (s - warm) / max(1, total_steps - warm)))
                    )
                )
                return tf.where(s < warm, w, c)

        opt = keras.optimizers.AdamW(WarmCosine(), weight_decay=cfg.weight_decay)

    variables = model.trainable_variables + list(head_vars)
    opt.build(variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, name="epoch")
    ckpt = tf.train.Checkpoint(model=model, head=head_vars, opt=opt, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "ckpt"), max_to_keep=2)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        log.info("resumed from %s at epoch %d", manager.latest_checkpoint, int(epoch_var.numpy()))

    seed_gen = tf.random.Generator.from_seed(cfg.seed)
    teacher = (
        _centered_targets(train_set.teacher, run_dir, cfg.teacher_centering)
        if train_set.teacher is not None
        else np.zeros((len(train_set), 1), np.float32)
    )
    ds = tf.data.Dataset.from_tensor_slices((train_set.images, y, teacher))

    @tf.function  # type: ignore[untyped-decorator]
    def step(images: Any, labels: Any, targets: Any) -> Any:
        x = to_model_input(images) if cfg.recipe == "paper" else _augment(images, seed_gen)
        with tf.GradientTape() as tape:
            feats = feat_model(x, training=True)
            if cfg.recipe == "paper":
                logits = head(feats)
                ce = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                )
                kd = tf.constant(0.0)
                loss = ce
            else:
                w = tf.math.l2_normalize(head_vars[0], axis=0)
                cos = feats @ w
                onehot = tf.one_hot(labels, n_cls)
                logits = cfg.scale * (cos - cfg.margin * onehot)
                ce = tf.reduce_mean(
                    tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits)
                )
                kd = tf.reduce_mean(1.0 - tf.reduce_sum(feats * targets, axis=1))
                loss = cfg.distill_weight * kd + cfg.cls_weight * ce
            loss += tf.add_n(model.losses) if model.losses else 0.0
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        return loss, ce, kd

    summary: dict[str, Any] = {"epochs": []}
    start_epoch = int(epoch_var.numpy())
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        batches = (
            ds.shuffle(len(train_set), seed=cfg.seed + epoch, reshuffle_each_iteration=False)
            .batch(cfg.batch_size, drop_remainder=True)
            .prefetch(2)
        )
        agg = np.zeros(3)
        for k, (xb, yb, tb) in enumerate(batches):
            agg += [float(v) for v in step(xb, yb, tb)]
            if (k + 1) % 50 == 0:
                rate = (k + 1) * cfg.batch_size / (time.time() - t0)
                log.info(
                    "epoch %d step %d/%d loss %.4f ce %.3f kd %.4f  %.0f img/s",
                    epoch + 1,
                    k + 1,
                    steps_per_epoch,
                    agg[0] / (k + 1),
                    agg[1] / (k + 1),
                    agg[2] / (k + 1),
                    rate,
                )
        epoch_var.assign(epoch + 1)
        manager.save()
        model.save_weights(run_dir / "latest.weights.h5")
        rec: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": agg[0] / max(1, steps_per_epoch),
            "ce": agg[1] / max(1, steps_per_epoch),
            "kd": agg[2] / max(1, steps_per_epoch),
            "seconds": time.time() - t0,
        }
        if len(unseen) and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
            rec["unseen"] = quick_unseen_eval(model, unseen)
        log.info("epoch %d done: %s", epoch + 1, json.dumps(rec))
        with open(run_dir / "history.jsonl", "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        summary["epochs"].append(rec)
    model.save_weights(run_dir / "final.weights.h5")
    if len(test_set):
        # The paper's own number: the training classifier on the 2 held-out images per person.
        known = np.isin(test_set.labels, classes)
        yt = np.searchsorted(classes, test_set.labels[known])
        feats = np.concatenate(
            [
                np.asarray(
                    feat_model(to_model_input(test_set.images[known][i : i + 256]), training=False)
                )
                for i in range(0, int(known.sum()), 256)
            ]
        )
        if cfg.recipe == "paper":
            pred = np.argmax(np.asarray(head(feats)), 1)
        else:
            pred = np.argmax(feats @ np.asarray(head_vars[0]), 1)
        summary["closed_set_classifier_accuracy"] = float(np.mean(pred == yt))
        (run_dir / "closed_set.json").write_text(
            json.dumps(
                {
                    "classifier_accuracy": summary["closed_set_classifier_accuracy"],
                    "test_images": int(known.sum()),
                }
            )
            + "\n"
        )
        log.info("closed-set classifier accuracy %.4f", summary["closed_set_classifier_accuracy"])
    log.info("finished: %s", run_dir / "final.weights.h5")
    return summary


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--cache", action="append", default=None)
    for f in attrs.fields(TrainConfig):
        if f.name in ("name", "caches"):
            continue
        typ = {int: int, float: float, str: str, bool: None}.get(type(f.default), str)
        if isinstance(f.default, bool):
            ap.add_argument(
                "--" + f.name.replace("_", "-"),
                type=lambda s: s.lower() in ("1", "true", "yes"),
                default=None,
            )
        else:
            ap.add_argument("--" + f.name.replace("_", "-"), type=typ or str, default=None)
    args = vars(ap.parse_args(argv))
    kw: dict[str, Any] = {
        k: v for k, v in args.items() if v is not None and k not in ("name", "cache")
    }
    for k in ("max_identities", "max_images_per_identity"):
        if k in kw:
            kw[k] = int(kw[k])
    if args["cache"]:
        kw["caches"] = tuple(args["cache"])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    train(TrainConfig(name=args["name"], **kw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
