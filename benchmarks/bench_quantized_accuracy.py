"""Accuracy cost of quantized ONNX exports on identities held out of training.

    python benchmarks/bench_quantized_accuracy.py [--cache data-cache/celeba.npz]

Exports the shipped weights as float32, float16 and uint8 ONNX, embeds the aligned crops of
the unseen CelebA identities (the cache written by `faceid-sdk train`'s data preparation)
with each, and prints file size, verification accuracy (10-fold), accuracy at the default
threshold 0.5, TAR@FAR=1e-3 and the largest distance shift from float32, as a table with
ratios against float32 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="data-cache/celeba.npz")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from faceid_adapters.export import export_model
    from faceid_adapters.onnx import OnnxExtractor

    from faceid_sdk.training._evaluate import evaluate_embeddings

    unseen_ids = set(
        resources.files("faceid_sdk.training").joinpath("splits/celeba_unseen_ids.txt")
        .read_text().split()
    )
    with np.load(args.cache, allow_pickle=False) as data:
        keep = np.isin(data["labels"], sorted(unseen_ids))
        faces, labels = data["images"][keep], data["labels"][keep]

    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (None, "float16", "uint8"):
            exported = export_model("onnx", Path(tmp), quantize=quantize)
            path = exported.path
            extractor = OnnxExtractor(model_path=path)
            emb = extractor.embed_aligned(faces)
            report, _ = evaluate_embeddings(None, None, (emb, labels))
            shift = 0.0 if reference is None else float(
                np.linalg.norm(emb - reference, axis=1).max())
            reference = emb if reference is None else reference
            unseen = report["unseen"]
            rows.append({
                "weights": quantize or "float32", "mb": path.stat().st_size / 1e6,
                "accuracy": unseen["verification_accuracy"],
                "accuracy_at_0.5": unseen["accuracy_at_0.5"],
                "tar_at_far_1e-3": unseen["tar_at_far_1e-3"], "max_shift": shift,
            })
    base = rows[0]
    print(f"{len(labels)} aligned crops of {len(set(labels))} unseen identities")
    print(f"{'weights':8} {'MB':>6} {'size':>6} {'acc':>7} {'acc@0.5':>8} {'TAR@1e-3':>9} "
          f"{'max shift':>9}")
    for r in rows:
        print(f"{r['weights']:8} {r['mb']:6.2f} {r['mb'] / base['mb']:5.2f}x "
              f"{r['accuracy']:7.4f} {r['accuracy_at_0.5']:8.4f} {r['tar_at_far_1e-3']:9.4f} "
              f"{r['max_shift']:9.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
