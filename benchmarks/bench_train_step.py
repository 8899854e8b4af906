"""Images/s of FFEM-AM's training step: the Keras trainer against the PyTorch twin.

    python benchmarks/bench_train_step.py [--batch 64] [--steps 20] [--threads 2]

One step = forward, the distillation loss (1 - cosine to a unit target plus the relational
term), backward and an AdamW update, at 96x96, float32, on the CPU. The baseline is the Keras
step that ``faceid-sdk train --recipe online`` runs (a ``tf.function``); the rows after it are
the PyTorch twin (``faceid_sdk/training/torch_student.py``, the GPU trainer's model) in NCHW
and channels-last memory layouts, each with its ratio to the baseline, all measured in this
run. Stop any training first: the numbers are only comparable on idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def _keras_step(batch: int, threads: int) -> Any:
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    from faceid_sdk.model import build_ffem_am

    model = build_ffem_am(128)
    opt = keras.optimizers.AdamW(5e-4, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (batch, 96, 96, 3)).astype(np.float32))
    t = rng.normal(size=(batch, 128)).astype(np.float32)
    t = tf.constant(t / np.linalg.norm(t, axis=1, keepdims=True))

    @tf.function  # type: ignore[untyped-decorator]
    def step() -> Any:
        with tf.GradientTape() as tape:
            s = model(x, training=True)
            cos = tf.reduce_mean(1.0 - tf.reduce_sum(s * t, 1))
            off = 1.0 - tf.eye(batch)
            rel = tf.reduce_sum(tf.square((s @ tf.transpose(s) - t @ tf.transpose(t)) * off))
            loss = cos + rel / (batch * (batch - 1))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    return lambda: float(step())


def _torch_step(batch: int, threads: int, channels_last: bool) -> Any:
    import torch

    torch.set_num_threads(threads)
    from faceid_sdk.model import build_ffem_am
    from faceid_sdk.training import torch_student
    from faceid_sdk.training.gpu import describe_architecture

    model = torch_student.FFEMAM(describe_architecture(build_ffem_am(128))).train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory)  # type: ignore[call-overload]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, 3, 96, 96, generator=gen) * 2 - 1).contiguous(memory_format=memory)
    t = torch.nn.functional.normalize(torch.randn(batch, 128, generator=gen), dim=1)
    off = 1.0 - torch.eye(batch)

    def step() -> float:
        s = model(x)
        cos = (1.0 - (s * t).sum(1)).mean()
        rel = (((s @ s.T) - (t @ t.T)) ** 2 * off).sum() / (batch * (batch - 1))
        loss = cos + rel
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    return step


def _time(step: Any, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cases = [
        ("Keras (faceid-sdk train --recipe online)", lambda: _keras_step(args.batch, args.threads)),
        ("PyTorch twin, NCHW", lambda: _torch_step(args.batch, args.threads, False)),
        ("PyTorch twin, channels-last", lambda: _torch_step(args.batch, args.threads, True)),
    ]
    rows: list[dict[str, Any]] = []
    for name, make in cases:
        seconds = _time(make(), args.steps, args.warmup)
        rows.append({"case": name, "img_per_s": args.steps * args.batch / seconds})
    base = rows[0]["img_per_s"]
    print(f"FFEM-AM training step, batch {args.batch}, {args.threads} threads, "
          f"{args.steps} timed steps after {args.warmup}")
    print(f"{'case':<44} {'img/s':>8} {'vs Keras':>9}")
    for r in rows:
        r["vs_keras"] = r["img_per_s"] / base
        print(f"{r['case']:<44} {r['img_per_s']:>8.1f} {r['vs_keras']:>8.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "threads": args.threads,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
