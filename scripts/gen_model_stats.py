"""Write faceid_sdk/model/stats.json: `faceid-sdk model-info` for the four architectures at
their default sizes, so the command answers without building a model (a test checks the file).

    python scripts/gen_model_stats.py
"""

from __future__ import annotations

import json

from faceid_sdk._cli_model import STATS_FILE


def compute() -> dict[str, dict[str, object]]:
    from faceid_sdk.model import build_ffem_am, build_mobilenet_v2, build_shufflenet_v2, model_stats

    builders = {
        "ffem_am": lambda: build_ffem_am(128, True, 96),
        "ffem": lambda: build_ffem_am(128, False, 96),
        "mobilenet_v2": lambda: build_mobilenet_v2(128, 96),
        "shufflenet_v2": lambda: build_shufflenet_v2(128, 96),
    }
    return {f"{arch}/128/96": model_stats(build()).as_dict() for arch, build in builders.items()}


if __name__ == "__main__":
    STATS_FILE.write_text(json.dumps(compute(), indent=2) + "\n")
