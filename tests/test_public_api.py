"""The public surface: exactly the documented names, cheap to import."""

from __future__ import annotations

import subprocess
import sys

import faceid_sdk

PUBLIC = {
    "BackendUnavailableError", "Candidate", "Enroller", "Enrollment", "FaceIDError",
    "FeatureCodec", "Identification", "IdentityRecord", "IndexFileError",
    "InvalidFeatureError", "InvalidIdentityError", "Matcher", "ModelMismatchError",
    "PossibleDuplicateWarning", "RebuildReport", "StoreError", "UnknownIdentityError",
    "__version__", "rebuild_index",
    # trust (issue 7): template protection and open-set calibration
    "Calibration", "ProtectionKeyError", "TemplateProtector", "calibrate_threshold",
    "fmr_for_fpir", "impostor_match_probability",
    # scale (issue 6): approximate search behind the Matcher API
    "ApproxMatcher",
    # photos and calibrated decisions (issues 10, 13, 15)
    "InvalidImageError", "PAPER_THRESHOLD", "Threshold", "resolve_threshold",
    # one decision everywhere, galleries behind one contract (issue 11)
    "DecisionPolicy", "Gallery",
}


def test_all_is_the_documented_surface():
    """__all__ lists exactly the public names, sorted, and each one resolves."""
    assert set(faceid_sdk.__all__) == PUBLIC
    assert faceid_sdk.__all__ == sorted(faceid_sdk.__all__)
    for name in faceid_sdk.__all__:
        assert getattr(faceid_sdk, name) is not None


def test_every_error_is_a_faceid_error():
    """Every exported error subclasses FaceIDError, and leaves subclass a builtin too."""
    errors = [getattr(faceid_sdk, n) for n in PUBLIC if n.endswith("Error")]
    for error in errors:
        assert issubclass(error, faceid_sdk.FaceIDError)
    assert issubclass(faceid_sdk.InvalidFeatureError, ValueError)
    assert issubclass(faceid_sdk.UnknownIdentityError, KeyError)


def test_core_never_imports_heavy_backends():
    """Using the core (codec, matcher, enroller, CLI) imports no TensorFlow or ONNX Runtime."""
    code = (
        "import sys, faceid_sdk, faceid_sdk.cli\n"
        "from faceid_sdk import FeatureCodec, Matcher, Enroller, rebuild_index\n"
        "import faceid_sdk.extractors as e; e.available_backends()\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'tf2onnx', 'dlib',"
        " 'openvino', 'cv2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
