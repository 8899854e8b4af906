"""Model commands: ``train``, ``embed``, ``evaluate``, ``model-info``.

Defined here and registered on the ``faceid-sdk`` group by :mod:`faceid_sdk.cli`. TensorFlow
and dlib are imported inside the commands, so ``faceid-sdk --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._cli_settings import CONTEXT_SETTINGS, quiet_tensorflow

__all__ = ["evaluate_command", "model_info_command", "train_command"]

#: Sizes of the four architectures at their default settings (see model_info_command).
STATS_FILE = Path(__file__).parent / "model" / "stats.json"
ARCH_CHOICE = click.Choice(["ffem_am", "ffem", "mobilenet_v2", "shufflenet_v2"])


def _dataset_spec(spec: str, cache_dir: Path, raw: bool, teacher: bool) -> str:
    """``PATH[=prefix]``: a prepared ``.npz`` cache, or a folder per identity (cached first)."""
    path, _, prefix = spec.partition("=")
    p = Path(path)
    prefix = prefix or (p.stem if p.suffix == ".npz" else p.name) + "/"
    if p.suffix == ".npz":
        return f"{p}={prefix}"
    if not p.is_dir():
        raise click.BadParameter(f"{path!r} must be a folder of identity folders or an .npz cache")
    out = cache_dir / f"{p.name}.npz"
    if not out.exists():
        from faceid_sdk.training import prepare

        argv = (
            [str(p), str(out)] + (["--raw"] if raw else []) + ([] if teacher else ["--no-teacher"])
        )
        prepare.main(argv)
    return f"{out}={prefix}"


@click.command("train", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    help="PATH[=prefix]: a folder with one folder per identity, or a cache .npz.",
)
@click.option(
    "--raw", is_flag=True, help="Folders hold photos to detect and align (not 112x112 crops)."
)
@click.option("--arch", type=ARCH_CHOICE, default="ffem_am", show_default=True)
@click.option(
    "--recipe",
    type=click.Choice(["online", "distill", "paper"]),
    default="online",
    show_default=True,
    help="online: the teacher labels every augmented view (needs --teacher; --data are 112x112 "
    "caches from faceid_sdk.training.prepare); distill: dlib's cached targets + CosFace; "
    "paper: softmax, SGD 0.1 x 0.96/epoch.",
)
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False),
              help="online: the teacher's OpenVINO .xml (training only, never shipped).")
@click.option("--steps", type=click.IntRange(min=1), default=8000, show_default=True,
              help="online: optimizer steps (the cosine schedule ends there).")
@click.option("--teacher-pca", type=click.Path(exists=True, dir_okay=False),
              help="online: the teacher_pca.npz the warm start was trained on. Without it the "
                   "PCA is fitted afresh and rotated onto the shipped model's outputs; either "
                   "way its head is kept.")
@click.option("--mix-faces", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="online: fraction of each batch blended from two photos for the teacher "
                   "to label (against memorising the training photos).")
@click.option("--lfw-pairs", type=click.Path(dir_okay=False),
              default="../shared/data/lfw-dev/pairs-folds-1-5.txt", show_default=True,
              help="online: LFW pairs; the people of folds 4-5 are held out.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=None,
              help="Images per step [online: 64, distill and paper: 32].")
@click.option(
    "--lr", type=float, default=None, help="Peak learning rate [distill: 2e-3, paper: 0.1]."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-identities", type=int, default=None, help="Train on a random subset (paper-sized runs)."
)
@click.option("--max-images-per-identity", type=int, default=None)
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data-cache"),
    show_default=True,
)
def train_command(
    name: str,
    data: tuple[str, ...],
    raw: bool,
    arch: str,
    recipe: str,
    epochs: int,
    batch_size: int | None,
    lr: float | None,
    seed: int,
    max_identities: int | None,
    max_images_per_identity: int | None,
    runs_dir: str,
    cache_dir: Path,
    teacher: str | None,
    steps: int,
    teacher_pca: str | None,
    mix_faces: float,
    lfw_pairs: str,
) -> None:
    """Train a feature extractor into RUNS_DIR/NAME (resumes from its last checkpoint).

    Logs go to RUNS_DIR/NAME/train.log. online: checkpoints every 200 steps, held-out
    evaluation every 500, best weights in RUNS_DIR/NAME/best/ (ship them with
    python -m faceid_sdk.training.ship). CelebA identities of the committed unseen split and
    LFW-dev's pair folds 4-5 are never trained on.
    """
    quiet_tensorflow()
    if recipe == "online":
        from faceid_sdk.training._online import OnlineConfig, train_online

        if teacher is None:
            raise click.UsageError("--recipe online needs --teacher (the OpenVINO .xml)")
        online = OnlineConfig(
            name=name, teacher=teacher, caches=tuple(_npz_spec(s) for s in data),
            lfw_pairs=lfw_pairs, batch_size=batch_size or 64, steps=steps,
            lr=lr if lr is not None else 1e-3, seed=seed, runs_dir=runs_dir,
            teacher_pca=teacher_pca, mix_faces=mix_faces,
        )
        click.echo(json.dumps(train_online(online), indent=2))
        return
    from faceid_sdk.training._train import TrainConfig, train

    caches = tuple(_dataset_spec(s, cache_dir, raw, recipe == "distill") for s in data)
    cfg = TrainConfig(
        name=name,
        caches=caches,
        arch=arch,
        recipe=recipe,
        epochs=epochs,
        batch_size=batch_size or 32,
        lr=lr if lr is not None else (0.1 if recipe == "paper" else 2e-3),
        seed=seed,
        max_identities=max_identities,
        max_images_per_identity=max_images_per_identity,
        runs_dir=runs_dir,
    )
    train(cfg)
    click.echo(f"weights: {cfg.run_dir / 'final.weights.h5'}")


def _npz_spec(spec: str) -> str:
    path, _, prefix = spec.partition("=")
    if not path.endswith(".npz") or not Path(path).is_file():
        raise click.BadParameter(
            f"{path!r}: --recipe online reads 112x112 caches (.npz) made by "
            "python -m faceid_sdk.training.prepare", param_hint="--data")
    return f"{path}={prefix or Path(path).stem + '/'}"


def _load_model(weights: str | None, arch: str, dim: int) -> Any:
    from faceid_sdk.model import load_default_keras, load_weights_npz
    from faceid_sdk.training._train import build_arch

    if weights is None:
        return load_default_keras()
    p = Path(weights)
    if p.is_dir():
        return load_default_keras(p)
    model = build_arch(arch, dim)
    if p.suffix == ".npz":
        load_weights_npz(model, p)
    else:
        model.load_weights(p)
    return model


weights_option = click.option(
    "--weights",
    default=None,
    help="A .weights.h5, a float16 .npz, or a folder with model.json [default: shipped].",
)


def _resize(img: Any, size: int) -> Any:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@click.command("evaluate", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="A training run folder: its config defines the splits, its final weights are used.",
)
@weights_option
@click.option("--arch", type=ARCH_CHOICE, default="ffem_am", show_default=True)
@click.option("--name", default=None, help="Row name in the table.")
@click.option("--teacher", is_flag=True, help="Evaluate dlib's ResNet descriptor (cached) instead.")
@click.option(
    "--compare-teacher",
    is_flag=True,
    help="Also evaluate dlib's descriptor: a second row and curve.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/eval"),
    show_default=True,
)
def evaluate_command(
    run_dir: Path | None,
    weights: str | None,
    arch: str,
    name: str | None,
    teacher: bool,
    compare_teacher: bool,
    out: Path,
) -> None:
    """Paper protocol (closed-set), unseen identities (verification, TAR@FAR, ROC/DET, 1:N,
    FPIR) and threshold calibration; writes OUT/<name>.json, .md and ROC/DET PNGs."""
    quiet_tensorflow()
    from faceid_sdk.training._evaluate import (
        MARKDOWN_HEADER,
        evaluate_embeddings,
        markdown_row,
        plot_roc_det,
        write_report,
    )
    from faceid_sdk.training._train import TrainConfig, embed_images, load_training_data

    if run_dir is not None:
        cfg_dict = json.loads((run_dir / "config.json").read_text())
        cfg_dict["caches"] = tuple(cfg_dict["caches"])
        cfg = TrainConfig(**cfg_dict)
        if weights is None and not teacher:
            weights = str(run_dir / "final.weights.h5")
        arch = cfg.arch
    else:
        cfg = TrainConfig(name="eval")
    train_set, test_set, unseen = load_training_data(cfg)
    if teacher:

        def emb(s: Any) -> Any:
            return s.teacher

        label = name or "dlib ResNet (teacher)"
    else:
        model = _load_model(weights, arch, cfg.embedding_dim)

        def emb(s: Any) -> Any:
            return embed_images(model, s.images)

        label = name or (run_dir.name if run_dir else "shipped")
    report, curve = evaluate_embeddings(
        (emb(train_set), train_set.labels),
        (emb(test_set), test_set.labels),
        (emb(unseen), unseen.labels),
    )
    report["name"] = label
    report["weights"] = weights
    slug = label.replace(" ", "_").replace("/", "_").replace("(", "").replace(")", "")
    curves = {label: curve}
    rows = [markdown_row(label, report)]
    if compare_teacher and not teacher and train_set.teacher is not None:
        ref_label = "dlib ResNet (teacher)"
        ref, ref_curve = evaluate_embeddings(
            (train_set.teacher, train_set.labels),
            (test_set.teacher, test_set.labels),
            (unseen.teacher, unseen.labels),
        )
        report["reference"] = {**ref, "name": ref_label}
        curves[ref_label] = ref_curve
        rows.append(markdown_row(ref_label, ref))
    write_report(out / f"{slug}.json", report)
    plot_roc_det(curves, out / slug)
    table = MARKDOWN_HEADER + "\n" + "\n".join(rows) + "\n"
    (out / f"{slug}.md").write_text(table)
    click.echo(table, nl=False)


@click.command("model-info", context_settings=CONTEXT_SETTINGS)
@click.option("--arch", type=ARCH_CHOICE, default="ffem_am", show_default=True)
@click.option("--dim", type=int, default=128, show_default=True)
@click.option("--input-size", type=int, default=96, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def model_info_command(arch: str, dim: int, input_size: int, as_json: bool) -> None:
    """Parameters, weight bytes and multiply-adds of a model architecture.

    The four architectures at their default sizes are answered from faceid_sdk/model/stats.json
    at once (a test rebuilds each model and checks the file); other sizes build the model.
    """
    from faceid_sdk.model import ModelStats, model_stats

    cached = json.loads(STATS_FILE.read_text()).get(f"{arch}/{dim}/{input_size}")
    if cached is not None:
        stats = ModelStats(**cached)
    else:
        quiet_tensorflow()
        from faceid_sdk.model import build_ffem_am, build_mobilenet_v2, build_shufflenet_v2

        builders = {
            "ffem_am": lambda: build_ffem_am(dim, True, input_size),
            "ffem": lambda: build_ffem_am(dim, False, input_size),
            "mobilenet_v2": lambda: build_mobilenet_v2(dim, input_size),
            "shufflenet_v2": lambda: build_shufflenet_v2(dim, input_size),
        }
        stats = model_stats(builders[arch]())
    if as_json:
        click.echo(json.dumps(stats.as_dict(), indent=2))
        return
    click.echo(
        f"{stats.name}: {stats.parameters:,} parameters ({stats.parameters / 1e6:.2f} M), "
        f"{stats.weight_bytes_float32 / 1e6:.1f} MB float32, "
        f"{stats.weight_bytes_float16 / 1e6:.1f} MB float16, "
        f"{stats.multiply_adds / 1e6:.1f} M multiply-adds at {input_size}x{input_size}, "
        f"{dim}-d output"
    )
