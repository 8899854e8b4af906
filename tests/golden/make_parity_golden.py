"""Regenerate ``faces.npy`` of the parity golden file (run from the repository root).

Ten aligned CelebA crops (``/work/shared/data/celeba-aligned``, CelebA: Liu et al., ICCV 2015,
non-commercial research use) of identities held out from training
(``faceid_sdk/training/splits/celeba_unseen_ids.txt``): two photos each of four people, then one
photo each of two more people, resized 112 -> 96 with area interpolation exactly as
``faceid_sdk.alignment.crop_to_model_input`` does. Stored as an uncompressed ``.npy`` so that the
Node parity script reads it without a zip library.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data/celeba-aligned")
HERE = Path(__file__).resolve().parent
PAIRS, SINGLES = 4, 2


def main() -> None:
    from faceid_sdk.alignment import crop_to_model_input, load_image

    split = Path("faceid_sdk/training/splits/celeba_unseen_ids.txt").read_text().split("\n")
    ids = [line.strip() for line in split if line.strip() and not line.startswith("#")]
    faces, labels, sources = [], [], []
    for i, identity in enumerate(ids[: PAIRS + SINGLES]):
        files = sorted((DATA / identity).glob("*.jpg"))[: 2 if i < PAIRS else 1]
        for f in files:
            faces.append(crop_to_model_input(load_image(f)))
            labels.append(f"celeba-{identity}")
            sources.append(f"celeba-aligned/{identity}/{f.name}")
    array = np.stack(faces).astype(np.uint8)
    np.save(HERE / "faces.npy", array)
    golden = json.loads((HERE / "parity.json").read_text())
    golden["faces"].update(
        shape=list(array.shape),
        labels=labels,
        files=sources,
        sha256=hashlib.sha256(array.tobytes()).hexdigest(),
    )
    (HERE / "parity.json").write_text(json.dumps(golden, indent=2) + "\n")
    print(f"{array.shape} -> {HERE / 'faces.npy'}", file=sys.stderr)


if __name__ == "__main__":
    main()
