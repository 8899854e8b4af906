"""Put everything the page loads under clients/web/vendor/ (gitignored); re-runnable.

    cd clients/web && npm ci          # face-api (detector + landmark models, bundled tfjs 4.22)
    python clients/web/prepare.py     # copy vendor files, export FFEM-AM to TF.js

What lands in ``vendor/``:

* ``face-api.esm.js``: @vladmandic/face-api with TF.js 4.22 (cpu, webgl, wasm backends) bundled;
  the page uses only its ``tf`` (one TF.js instance runs the detector, the landmark model and
  FFEM-AM); face-api's own models are not used.
* ``tfjs-wasm/``: the wasm backend's binaries from @tensorflow/tfjs-backend-wasm 4.22.0 (must be
  the version bundled in face-api).
* ``ffem_am/``: the FFEM-AM TF.js graph model (``faceid-sdk export --format tfjs``), ``mixed``
  weights by default: uint8 with float16 where rounding hurts (``faceid_adapters.tfjs.
  MIXED_FLOAT16``), 2.5 MB instead of 4.4 MB for float16, and a third of uint8's distance
  from the server's vectors (docs/client.md).
* ``detector/`` and ``landmarks/``: the server's face detector (``face-detection-retail-0004``,
  its convolutions; pipeline.js decodes the SSD output) and five-point landmark model
  (``landmarks-regression-retail-0009``), Apache-2.0, shipped in ``faceid_sdk/models/face/``,
  rebuilt from their OpenVINO IR as TF.js graph models (``faceid_adapters.tfjs.openvino_ir``),
  so the page finds the server's faces and points.
* ``manifest.json``: model id, dimension, where the weights came from, file sizes.

The model is the shipped one (``faceid_sdk/models/ffem_am``) when it exists; otherwise, for
development and tests, deterministic random weights with calibrated batch norm, marked
``"source": "random"`` so the page can say so. Re-run after the shipped model changes: the
export is redone whenever the model id differs from the one in ``vendor/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
MODULES = HERE / "node_modules"
FACE_API = MODULES / "@vladmandic" / "face-api"
TFJS_WASM = MODULES / "@tensorflow" / "tfjs-backend-wasm"
RANDOM_SEED = 0


def copy_vendor() -> dict[str, Any]:
    """Copy the browser files from node_modules into vendor/; returns their versions."""
    if not (FACE_API / "dist" / "face-api.esm.js").is_file() or not TFJS_WASM.is_dir():
        raise SystemExit(
            f"prepare.py: {MODULES} lacks @vladmandic/face-api or @tensorflow/tfjs-backend-wasm: "
            "run `npm ci` in clients/web first (or `make web-setup`)"
        )
    face_api_version = json.loads((FACE_API / "package.json").read_text())["version"]
    wasm_version = json.loads((TFJS_WASM / "package.json").read_text())["version"]
    bundled = (FACE_API / "dist" / "tfjs.version.js").read_text()
    if f'"{wasm_version}"' not in bundled:
        raise SystemExit(
            f"prepare.py: @tensorflow/tfjs-backend-wasm {wasm_version} does not match the TF.js "
            f"bundled in face-api {face_api_version}: pin the same version in package.json"
        )
    shutil.rmtree(VENDOR / "face-api-models", ignore_errors=True)  # no longer used
    (VENDOR / "tfjs-wasm").mkdir(parents=True, exist_ok=True)
    shutil.copy2(FACE_API / "dist" / "face-api.esm.js", VENDOR / "face-api.esm.js")
    shutil.copy2(FACE_API / "LICENSE", VENDOR / "face-api.LICENSE")
    for wasm in sorted((TFJS_WASM / "dist").glob("*.wasm")):
        shutil.copy2(wasm, VENDOR / "tfjs-wasm" / wasm.name)
    return {"face-api": face_api_version, "tfjs": wasm_version}


def _source(weights: str | None) -> tuple[str, Path | None]:
    """(kind, weights path) of the model to export: given, shipped, or random."""
    if weights is not None:
        return "given", Path(weights)
    from faceid_sdk.model._weights import load_model_info

    try:
        load_model_info()
    except FileNotFoundError:
        return "random", None
    return "shipped", None


def _random_weights(cache: Path) -> Path:
    """Deterministic random FFEM-AM weights with calibrated batch norm (tests only), cached."""
    if (cache / "model.json").is_file():
        return cache
    from faceid_adapters._keras_model import calibrated_model_dir

    return calibrated_model_dir(cache, seed=RANDOM_SEED)


def export_model(weights: str | None, quantize: str | None, force: bool) -> dict[str, Any]:
    """Export FFEM-AM to vendor/ffem_am/ unless the same model and quantization are there."""
    kind, path = _source(weights)
    if kind == "random":
        path = _random_weights(VENDOR / ".random-weights")
    target = VENDOR / "ffem_am"
    old = _read_metadata(target)
    from faceid_adapters._keras_model import load_keras

    # Loading is cheap next to exporting, and it yields the model id to compare with.
    loaded = load_keras(path)
    if (
        not force
        and old.get("model_id") == loaded.model_id
        and old.get("weights") == (quantize or "float32")
    ):
        print(f"prepare.py: vendor/ffem_am is up to date ({loaded.model_id})")
    else:
        from faceid_adapters.export import export_model as export

        with tempfile.TemporaryDirectory(dir=VENDOR, prefix=".export-") as tmp:
            result = export("tfjs", tmp, quantize, model=loaded)
            if target.exists():
                shutil.rmtree(target)
            result.path.rename(target)
        print(f"prepare.py: exported {loaded.model_id} ({kind} weights) to {target}")
    info = {"model_id": loaded.model_id, "dim": loaded.dim, "source": kind,
            "weights": quantize or "float32"}
    if path is not None:
        # The Keras weights the export came from, for the browser-vs-server consistency test.
        info["weights_path"] = str(path.resolve())
    return info


def export_face_model(kind: str, force: bool) -> dict[str, Any]:
    """Rebuild the server's landmark model or detector for TF.js into vendor/<kind>/ unless the
    same IR is there already (the detector without its SSD decoding, which pipeline.js does)."""
    from faceid_adapters.tfjs.openvino_ir import CONVERSION, DETECTOR_HEADS, export_ir_tfjs

    from faceid_sdk.face_models import DETECTOR_FILE, LANDMARKS_FILE, MODELS_DIR

    xml = MODELS_DIR / (LANDMARKS_FILE if kind == "landmarks" else DETECTOR_FILE)
    target = VENDOR / kind
    digest = hashlib.sha256(xml.with_suffix(".bin").read_bytes()).hexdigest()
    old = _read_metadata(target)
    if not force and old.get("sha256") == digest and old.get("conversion") == CONVERSION:
        print(f"prepare.py: vendor/{kind} is up to date ({xml.name})")
        return old
    # The IR stores float16 weights: a float16 export of the detector keeps them (half the
    # download); the landmark model is small and stays float32.
    detector = kind == "detector"
    info = export_ir_tfjs(xml, target, DETECTOR_HEADS if detector else None,
                          "float16" if detector else None)
    print(f"prepare.py: rebuilt {xml.name} for TF.js in {target}")
    return info


def _read_metadata(target: Path) -> dict[str, Any]:
    try:
        model = json.loads((target / "model.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    meta: dict[str, Any] = model.get("userDefinedMetadata", {}).get("faceid", {})
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="model folder or weights file to export "
                        "(default: the shipped model, else random test weights)")
    parser.add_argument("--quantize", choices=["none", "float16", "uint8", "mixed"],
                        default="mixed",
                        help="TF.js weight storage (default: mixed, uint8 with float16 where "
                        "rounding hurts, 2.5 MB; uint8 2.2 MB, float16 4.4 MB; "
                        "benchmarks/bench_quantized_accuracy.py measures what it costs)")
    parser.add_argument("--vendor-only", action="store_true", help="copy files, skip the model")
    parser.add_argument("--force", action="store_true", help="export even when up to date")
    args = parser.parse_args(argv)
    versions = copy_vendor()
    manifest_path = VENDOR / "manifest.json"
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
    manifest["versions"] = versions
    if not args.vendor_only:
        quantize = None if args.quantize == "none" else args.quantize
        manifest["model"] = export_model(args.weights, quantize, args.force)
        manifest["landmarks"] = export_face_model("landmarks", args.force)
        manifest["detector"] = export_face_model("detector", args.force)
    manifest["bytes"] = {
        str(f.relative_to(VENDOR)): f.stat().st_size
        for f in sorted(VENDOR.rglob("*"))
        if f.is_file() and not f.name.startswith(".") and not any(
            p.startswith(".") for p in f.relative_to(VENDOR).parts)
        and f.name != "manifest.json"
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    model = manifest.get("model", {})
    if model and model["source"] != "shipped":
        # `serve` defaults to the shipped model; a store for these weights must be told.
        print("prepare.py: serve a new store for these weights with: faceid-sdk serve "
              f"--store web-dev.db --model-id {model['model_id']} --dim {model['dim']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
