"""The paper's Table 2 under the distillation recipe, several seeds, on a lent GPU.

The paper trains each network on 1,440 photos of 52 people and reports the accuracy on 2
held-out photos per person. Here, with the online recipe's distillation instead of its
softmax: 52 people with at least 10 photos (CelebA, Glint, Pins; never the unseen CelebA
people), at most 27 photos each, 2 per person held out; each network trained from scratch on
the teacher's targets for ``--views`` augmented views of every training photo; then

* **closed set**: the training photos enrolled in the product's ``Matcher``, each held-out
  photo identified (nearest identity, no threshold), as the paper's protocol with the
  product's matcher in place of a classifier;
* **unseen people**: verification accuracy and TAR at FAR 1e-3 on the 60 CelebA unseen
  people, which the paper does not measure and which is what the product needs.

Three steps, as for the shipped model's GPU run (:mod:`faceid_sdk.training.gpu`):

1. ``python -m faceid_sdk.training.table2 pack --teacher XML --teacher-pca PCA --data ...``
   (here: the split, crops WebP-packed, views and the teacher's targets; ~5 MiB);
2. ``bash scripts/gpu_table2.sh`` on the GPU machine (``torch_student.py`` on a Table 2
   pack: each architecture x seed from scratch for the same number of steps, the embeddings
   of every packed crop in ``table2.npz``);
3. ``python -m faceid_sdk.training.table2 report DIR --pack PACK`` (here: the table, measured
   with the product's own ``Matcher`` and metrics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._data import closed_set_split, select_identities, unseen_celeba_ids
from ._metrics import make_pairs, pair_distances, tar_at_far, verification_10fold
from ._online import VIEW_CENTRE, VIEW_PARAMS, Teacher, load_crops, sample_view_params
from .gpu import (
    TARGET_SCALE,
    decode_crops,
    describe_architecture,
    encode_crops,
    load_pca,
    teacher_targets,
)
from .ship import closed_set_accuracy

__all__ = ["ARCHS", "PAPER_TABLE_2", "make_table2_pack", "report"]

#: The paper's Table 2 networks, in its order (each has a PyTorch twin).
ARCHS = ("ffem", "mobilenet_v2", "shufflenet_v2", "ffem_am")
#: The paper's Table 2 (closed-set accuracy %, 52 people).
PAPER_TABLE_2 = {"ffem": 90.4, "mobilenet_v2": 96.1, "shufflenet_v2": 97.1, "ffem_am": 98.1}

log = logging.getLogger("faceid_sdk.training.table2")


def _build(arch: str) -> Any:
    from faceid_sdk.model import build_ffem_am, build_mobilenet_v2, build_shufflenet_v2

    if arch == "mobilenet_v2":
        return build_mobilenet_v2(128)
    if arch == "shufflenet_v2":
        return build_shufflenet_v2(128)
    return build_ffem_am(128, attention=arch == "ffem_am")


def split_paper_sized(
    labels: npt.NDArray[np.str_], *, people: int, per_person: int, min_images: int,
    held_out: int, seed: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(train, test) indices: the paper-sized subset of ``faceid-sdk train --max-identities``
    (:func:`select_identities`), *held_out* photos per person for the closed-set test."""
    keep_idx = np.flatnonzero(select_identities(
        labels, max_identities=people, max_per_identity=per_person, min_images=min_images,
        seed=seed))
    found = len(np.unique(labels[keep_idx]))
    if found < people:
        raise ValueError(f"only {found} people have >= {min_images} photos; "
                         f"--people {people} needs more data or a lower --min-images")
    test = closed_set_split(labels[keep_idx], held_out, seed=seed)
    return keep_idx[~test], keep_idx[test]


def make_table2_pack(
    caches: tuple[str, ...], out: Path, *, teacher_pca: Path, teacher: Any = None,
    teacher_xml: str | None = None, people: int = 52, per_person: int = 27,
    min_images: int = 10, held_out: int = 2, views: int = 16, quality: int = 75,
    seed: int = 0, threads: int = 2,
) -> dict[str, Any]:
    """Write the Table 2 pack into *out* (module docstring); returns its ``pack.json``."""
    pca = load_pca(teacher_pca)
    if teacher is None:
        if teacher_xml is None:
            raise ValueError("give --teacher (the OpenVINO .xml) to label the views")
        teacher = Teacher(teacher_xml, threads=threads)
    images, labels = load_crops(caches)
    unseen = np.isin(labels, [f"celeba/{i}" for i in unseen_celeba_ids()])
    pool = np.flatnonzero(~unseen)
    train, test = split_paper_sized(labels[pool], people=people, per_person=per_person,
                                    min_images=min_images, held_out=held_out, seed=seed)
    order = np.concatenate([pool[train], pool[test], np.flatnonzero(unseen)])
    blob, offsets = encode_crops(images[order], quality)
    crops = decode_crops(blob, offsets)
    rng = np.random.default_rng(seed)
    n_train = len(train)
    params = sample_view_params(n_train * views, rng).astype(np.float16).astype(np.float32)
    params = params.reshape(n_train, views, -1)
    targets = teacher_targets(crops[:n_train], params, pca, teacher)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.savez(partial / "crops.npz", blob=np.frombuffer(blob, np.uint8), offsets=offsets)
    np.savez(partial / "views.npz", params=params.astype(np.float16), targets=targets)
    np.savez(partial / "split.npz", labels=labels[order].astype(str))
    digest = hashlib.sha256()
    for name in ("crops.npz", "views.npz", "split.npz"):
        digest.update((partial / name).read_bytes())
    meta = {
        "kind": "table2",
        "pack_id": digest.hexdigest()[:12],
        "architectures": {a: describe_architecture(_build(a)) for a in ARCHS},
        "view_params": list(VIEW_PARAMS),
        "view_centre": VIEW_CENTRE,
        "target_scale": TARGET_SCALE,
        "train": n_train, "test": len(test), "unseen": int(unseen.sum()),
        "people": people, "per_person": per_person, "held_out": held_out,
        "views_per_crop": views, "caches": list(caches), "teacher_pca": str(teacher_pca),
        "seed": seed,
        "size_mib": round(sum(f.stat().st_size for f in partial.iterdir()) / 2**20, 2),
    }
    (partial / "pack.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return meta


def report(results: Path, pack: Path) -> dict[str, Any]:
    """Every run of *results* (``table2.npz``) measured; per architecture mean and std."""
    meta = json.loads((pack / "pack.json").read_text())
    ran = results.with_name("table2.json")
    if ran.is_file() and json.loads(ran.read_text())["pack"] != meta["pack_id"]:
        raise ValueError(f"{results} was trained on another pack than {pack} "
                         f"({json.loads(ran.read_text())['pack']} vs {meta['pack_id']})")
    with np.load(pack / "split.npz") as z:
        labels = z["labels"].astype(str)
    n_train, n_test = int(meta["train"]), int(meta["test"])
    unseen = slice(n_train + n_test, None)
    pairs, same = make_pairs(labels[unseen], seed=0)
    runs: dict[str, list[dict[str, float]]] = {}
    with np.load(results) as z:
        for key in sorted(z.files):
            arch, _, seed = key.rpartition("-s")
            emb = z[key].astype(np.float32)
            if len(emb) != len(labels):
                raise ValueError(f"{key}: {len(emb)} embeddings for {len(labels)} packed photos; "
                                 "the results are not of this pack")
            d = pair_distances(emb[unseen], pairs)
            runs.setdefault(arch, []).append({
                "seed": int(seed),
                "closed_set": closed_set_accuracy(
                    emb[:n_train], labels[:n_train], emb[n_train : n_train + n_test],
                    labels[n_train : n_train + n_test]),
                "unseen_accuracy": float(verification_10fold(d, same)["accuracy"]),
                "unseen_tar_1e-3": float(tar_at_far(d, same, 1e-3)),
            })
    summary = {}
    for arch, rows in runs.items():
        summary[arch] = {"seeds": [r["seed"] for r in rows], "runs": rows}
        for k in ("closed_set", "unseen_accuracy", "unseen_tar_1e-3"):
            v = np.array([r[k] for r in rows])
            summary[arch][k] = {"mean": float(v.mean()), "std": float(v.std())}
    return {"pack": meta["pack_id"], "train": n_train, "test": n_test, "archs": summary}


def markdown(rep: dict[str, Any]) -> str:
    """The report as docs/evaluation.md's table."""
    lines = ["| model | paper's Table 2 % | closed set % (Matcher) | unseen verif. acc % "
             "| unseen TAR@FAR 1e-3 % | seeds |", "|---|---|---|---|---|---|"]
    for arch in ARCHS:
        if arch not in rep["archs"]:
            continue
        a = rep["archs"][arch]

        def cell(k: str, a: dict[str, Any] = a) -> str:
            return f"{100 * a[k]['mean']:.1f} ± {100 * a[k]['std']:.1f}"

        lines.append(f"| {arch} | {PAPER_TABLE_2[arch]} | {cell('closed_set')} "
                     f"| {cell('unseen_accuracy')} | {cell('unseen_tar_1e-3')} "
                     f"| {len(a['seeds'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="the paper-sized split, its views and the teacher's targets")
    p.add_argument("--data", action="append", required=True,
                   help="CACHE.npz=prefix/ (112x112 crops from faceid_sdk.training.prepare)")
    p.add_argument("--teacher", required=True, help="the teacher's OpenVINO .xml")
    p.add_argument("--teacher-pca", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("gpu-table2"))
    p.add_argument("--people", type=int, default=52)
    p.add_argument("--per-person", type=int, default=27)
    p.add_argument("--min-images", type=int, default=10,
                   help="only people with at least this many photos (default 10)")
    p.add_argument("--held-out", type=int, default=2, help="test photos per person (default 2)")
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--quality", type=int, default=75, help="WebP quality (default 75)")
    p.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("report", help="measure the runs brought back from the GPU")
    r.add_argument("results", type=Path, help="table2.npz")
    r.add_argument("--pack", type=Path, required=True)
    r.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        if args.command == "pack":
            meta = make_table2_pack(tuple(args.data), args.out, teacher_pca=args.teacher_pca,
                                    teacher_xml=args.teacher, people=args.people,
                                    per_person=args.per_person, min_images=args.min_images,
                                    held_out=args.held_out, views=args.views,
                                    quality=args.quality, seed=args.seed)
            print(json.dumps({k: meta[k] for k in ("pack_id", "train", "test", "unseen",
                                                   "size_mib")}))
        else:
            rep = report(args.results, args.pack)
            if args.json:
                args.json.write_text(json.dumps(rep, indent=2) + "\n")
            print(markdown(rep))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
