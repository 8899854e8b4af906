"""The GPU path of training: pack here, train with the PyTorch twin, import into Keras.

The PyTorch twin must be the Keras FFEM-AM (same embeddings from the same weights), render the
views the CPU recipe renders, and the round trip must end in a run folder ``ship.py`` takes.
Run on the CPU here; the GPU machine runs the same code on CUDA.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from faceid_sdk.model import build_ffem_am, load_default_keras  # noqa: E402
from faceid_sdk.training import torch_student as ts  # noqa: E402
from faceid_sdk.training._online import (  # noqa: E402
    VIEW_CENTRE,
    VIEW_PARAMS,
    render_views,
    sample_view_params,
)
from faceid_sdk.training.gpu import TARGET_SCALE, describe_architecture, make_pack  # noqa: E402

FACES = Path(__file__).parents[1] / "fixtures" / "faces" / "aligned"
STUDENT = Path(ts.__file__)


def _crops() -> np.ndarray:
    import cv2

    files = sorted(FACES.glob("*/*.jpg"))
    return np.stack([cv2.imread(str(f))[:, :, ::-1] for f in files])


@pytest.fixture(scope="module")
def shipped():
    return load_default_keras()


def _twin(keras_model):
    model = ts.build_twin(describe_architecture(keras_model))
    ts.load_keras_weights(model, {w.path: w.numpy() for w in keras_model.weights})
    return model.eval()


@pytest.mark.parametrize("arch", ["ffem_am", "ffem", "mobilenet_v2", "shufflenet_v2"])
def test_the_twin_gives_the_keras_embeddings(arch):
    from faceid_sdk.model import build_mobilenet_v2, build_shufflenet_v2

    keras_model = {"ffem_am": lambda: build_ffem_am(128), "ffem": lambda: build_ffem_am(
        128, attention=False), "mobilenet_v2": lambda: build_mobilenet_v2(128),
        "shufflenet_v2": lambda: build_shufflenet_v2(128)}[arch]()
    rng = np.random.default_rng(0)
    for w in keras_model.weights:  # BN statistics away from 0/1 so that they matter
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype(np.float32))
        elif "moving_mean" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    x = rng.uniform(-1, 1, (4, 96, 96, 3)).astype(np.float32)
    twin = _twin(keras_model)
    with torch.no_grad():
        got = twin(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    want = np.asarray(keras_model(x, training=False))
    assert np.abs(got - want).max() < 1e-4
    if arch.startswith("ffem"):
        assert twin.plan[0]["eca"] is twin.plan[-1]["eca"] is (arch == "ffem_am")


def test_weights_go_back_to_keras_unchanged(shipped):
    arrays = {w.path: w.numpy() for w in shipped.weights}
    back = ts.keras_weights(_twin(shipped))
    assert back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_weights_that_do_not_fit_are_refused(shipped):
    arrays = {w.path: w.numpy() for w in shipped.weights}
    twin = ts.FFEMAM(describe_architecture(shipped))
    del arrays["block_13_eca_conv/kernel"]
    with pytest.raises(ValueError, match="missing"):
        ts.load_keras_weights(twin, arrays)


def test_views_rendered_by_torch_are_opencvs(shipped):
    crops = np.repeat(_crops(), 6, axis=0)
    rng = np.random.default_rng(3)
    params = sample_view_params(len(crops), rng)
    params[::3, VIEW_PARAMS.index("blur_sigma")] = rng.uniform(0.5, 1.3, len(params[::3]))
    params[1::4, VIEW_PARAMS.index("saturation")] = 0.0
    want, _ = render_views(crops, params)
    got = ts.render_views(torch.from_numpy(crops), torch.from_numpy(params), list(VIEW_PARAMS),
                          VIEW_CENTRE)
    got8 = ((got + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    diff = np.abs(got8 - want.astype(np.float32))
    assert diff.max() <= 2 and diff.mean() < 0.01, (diff.max(), diff.mean())


# ------------------------------------------------------------------------- pack round trip


def _fake_teacher(tin: np.ndarray) -> np.ndarray:
    """A deterministic stand-in for the OpenVINO teacher (a fixed projection of the pixels)."""
    small = tin[:, :, ::16, ::16].reshape(len(tin), -1) / 255.0
    w = np.random.default_rng(11).normal(size=(small.shape[1], 256))
    out = small @ w
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An online run over synthetic caches: 6 fixture crops as CelebA people (two of them
    unseen, so held out), and LFW people of which folds 4-5 are held out."""
    root = tmp_path_factory.mktemp("gpu")
    crops = _crops()
    many = np.concatenate([crops, crops[:, :, ::-1], np.roll(crops, 3, axis=2)])
    celeba_labels = np.array(["7203", "7225", "1", "2", "3", "4"] * 3)
    np.savez(root / "celeba112.npz", images=many, labels=celeba_labels,
             paths=np.array([f"{i}.jpg" for i in range(len(many))]),
             found=np.ones(len(many), bool))
    names = [f"P{i}" for i in range(10)]
    lfw_paths = [f"{n}/{n}_{k:04d}.jpg" for n in names for k in (1, 2)]
    np.savez(root / "lfw112.npz", images=np.concatenate([many, many[:2]]),
             labels=np.array([p.split("/")[0] for p in lfw_paths]), paths=np.array(lfw_paths),
             found=np.ones(len(lfw_paths), bool))
    lines = ["5\t1"]
    for fold in range(5):
        a, b = names[2 * fold], names[2 * fold + 1]
        lines += [f"{a}\t1\t2", f"{a}\t1\t{b}\t2"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    run = root / "run"
    run.mkdir()
    config = {"name": "run", "teacher": "unused.xml",
              "caches": [f"{root / 'celeba112.npz'}=celeba/", f"{root / 'lfw112.npz'}=lfw/"],
              "lfw_pairs": str(root / "pairs.txt"), "embedding_dim": 128, "batch_size": 64,
              "steps": 10, "lr": 5e-4, "warmup_steps": 2, "weight_decay": 1e-4,
              "relational_weight": 1.0, "init_weights": "shipped", "teacher_pca": "",
              "checkpoint_every": 200, "eval_every": 500, "seed": 0, "runs_dir": str(root)}
    (run / "config.json").write_text(json.dumps(config))
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(256, 128)))
    np.savez(run / "teacher_pca.npz", mean=np.zeros(256, np.float32),
             basis=q.T.astype(np.float32), head_w=np.zeros((1281, 128), np.float32))
    return run


@pytest.fixture(scope="module")
def pack(tiny_run):
    out = tiny_run.parent / "pack"
    meta = make_pack(tiny_run, out, views=3, max_per_person=2, teacher=_fake_teacher)
    return out, meta


def test_the_pack_holds_training_people_only_with_the_teachers_view_targets(tiny_run, pack):
    out, meta = pack
    # celeba 1-4 (2 crops each, capped from 3) and LFW P0-P5 (folds 1-3; 2 photos each)
    assert meta["crops"] == 4 * 2 + 6 * 2 and meta["people"] == 10
    assert meta["views_per_crop"] == 3 and meta["size_mib"] < 44
    data = ts.load_pack(out, threads=2)
    assert data["crops"].shape == (20, 112, 112, 3)
    # Each view's target is the (PCA-projected, int8) fake teacher of that very view.
    with np.load(tiny_run / "teacher_pca.npz") as z:
        basis = z["basis"]
    i, v = 7, 2
    _, tin = render_views(data["crops"][i : i + 1], data["params"][i, v][None])
    want = _fake_teacher(tin) @ basis.T
    want /= np.linalg.norm(want)
    assert np.abs(data["targets"][i, v] - want[0]).max() < 1.5 / TARGET_SCALE
    assert json.loads((out / "pack.json").read_text())["architecture"]["attention_blocks"] == [
        0, 13]


def test_a_pack_over_budget_is_refused_before_the_teacher_runs(tiny_run, pack):
    out, _ = pack
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def teacher(_: np.ndarray) -> np.ndarray:
        raise AssertionError("the teacher ran for a pack that cannot be sent")

    with pytest.raises(ValueError, match=r"would be .* MiB, over the 1 MiB budget"):
        make_pack(tiny_run, out, budget_mib=1, teacher=teacher)
    # the pack already there is left as it was
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def test_pack_train_import_round_trip(tiny_run, pack, tmp_path):
    from faceid_sdk.training.gpu import main

    out, _ = pack
    trained = tmp_path / "gpu-out"
    proc = _run_student_alone([str(out), "--out", str(trained), "--max-steps", "3",
                                "--batch", "8", "--snapshots", "1", "--device", "cpu"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((trained / "train.json").read_text())
    assert summary["steps"] == 3 and summary["samples"] == 24
    assert [f.name for f in trained.glob("snapshot-*.npz")] == ["snapshot-1steps.npz"]
    with np.load(trained / "weights.npz") as z, np.load(out / "init.npz") as init:
        assert z.files and set(z.files) == set(init.files)
        kernel = "block_5_expand/kernel"  # a convolution, not only batch-norm statistics
        assert not np.allclose(z[kernel], init[kernel].astype(np.float32))
    run = tmp_path / "imported"
    assert main(["import", str(trained / "weights.npz"), str(run), "--from", str(tiny_run)]) == 0
    model = load_default_keras(run / "final")  # model.json's id matches the weights
    assert model.output_shape[-1] == 128
    config = json.loads((run / "config.json").read_text())
    assert config["trainer"] == "torch-gpu" and config["batch_size"] == 8
    assert {"celeba_acc", "lfw_acc"} <= json.loads((run / "final.json").read_text()).keys()


def _run_student_alone(args: list[str]) -> subprocess.CompletedProcess[str]:
    """torch_student.py as the GPU machine runs it: ``import faceid_sdk`` fails there (no
    FAISS, no TensorFlow), so here it is made to fail too."""
    code = ("import sys, runpy; sys.modules['faceid_sdk'] = None; "
            f"sys.argv = ['torch_student.py'] + {args!r}; "
            f"runpy.run_path({str(STUDENT)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)


def test_the_student_script_says_what_is_wrong(tmp_path):
    proc = _run_student_alone([str(tmp_path), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2 and "is not a pack" in proc.stderr, proc.stderr
    proc = _run_student_alone([str(tmp_path), "--out", str(tmp_path / "o"), "--max-steps", "0"])
    assert proc.returncode == 2 and "--max-steps >= 1" in proc.stderr, proc.stderr


def test_batch_norm_statistics_move_as_keras_moves_them():
    import tensorflow as tf

    keras_model = build_ffem_am(128)
    twin = _twin(keras_model).train()
    x = np.random.default_rng(2).uniform(-1, 1, (8, 96, 96, 3)).astype(np.float32)
    keras_model(tf.constant(x), training=True)
    with torch.no_grad():
        twin(torch.from_numpy(x).permute(0, 3, 1, 2))
    moved = ts.keras_weights(twin)
    for name in ("stem_BN", "block_7_depthwise_BN", "conv_last_BN"):
        for stat in ("moving_mean", "moving_variance"):
            want = keras_model.get_layer(name).weights[["gamma", "beta", "moving_mean",
                                                        "moving_variance"].index(stat)]
            # torch keeps the unbiased variance (n / (n - 1)); at n >= 72 values that is < 2 %
            np.testing.assert_allclose(moved[f"{name}/{stat}"], want.numpy(), rtol=2e-2,
                                       atol=1e-6)


def test_fit_with_bfloat16_autocast_and_snapshots(pack):
    out, _ = pack
    data = ts.load_pack(out, threads=2)
    model = ts.FFEMAM(data["meta"]["architecture"])
    ts.load_keras_weights(model, data["init"])
    seen: list[float] = []
    summary = ts.fit(model, torch.from_numpy(data["crops"]), torch.from_numpy(data["params"]),
                     torch.from_numpy(data["targets"]), columns=list(VIEW_PARAMS),
                     centre=VIEW_CENTRE, batch=4, lr=1e-4, weight_decay=0.0,
                     relational_weight=1.0, warmup=0.0, seed=0, max_steps=4, amp=True,
                     snapshot=lambda _, at: seen.append(at), snapshots=3)
    assert summary["steps"] == 4 and summary["bfloat16_autocast"] is True
    assert seen == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="positive"):
        ts.fit(model, torch.from_numpy(data["crops"]), torch.from_numpy(data["params"]),
               torch.from_numpy(data["targets"]), columns=list(VIEW_PARAMS),
               centre=VIEW_CENTRE, batch=4, lr=1e-4, weight_decay=0.0,
               relational_weight=1.0, warmup=0.0, seed=0, max_steps=0)


def test_the_model_card_says_how_a_gpu_run_was_trained(tiny_run, pack, tmp_path):
    from faceid_sdk.training.gpu import import_weights
    from faceid_sdk.training.ship import _schedule

    out, _ = pack
    trained = tmp_path / "gpu-out"
    ts.train(out, trained, minutes=1, batch=4, lr=1e-4, weight_decay=0.0, relational_weight=1.0,
             warmup=0.5, seed=0, snapshots=0, device="cpu", max_steps=1)
    run = tmp_path / "imported"
    import_weights(trained / "weights.npz", run, tiny_run)
    config = json.loads((run / "config.json").read_text())
    text = _schedule(config, json.loads((run / "final.json").read_text()), "final")
    assert "lent GPU" in text and "batch 4" in text and "step 1 (4 samples" in text


# ----------------------------------------------------------------------------- Table 2


def test_neutral_views_are_the_products_model_input(shipped):
    from faceid_sdk.training._online import resize_to_input

    crops = _crops()
    twin = _twin(shipped)
    got = ts.embed_crops(twin, torch.from_numpy(crops), list(VIEW_PARAMS), VIEW_CENTRE)
    want = np.asarray(shipped(resize_to_input(crops).astype(np.float32) / 127.5 - 1.0,
                              training=False))
    assert np.abs(got - want).max() < 1e-4


def test_table2_round_trip(tmp_path):
    from faceid_sdk.training import table2

    crops = _crops()
    variants = np.concatenate([np.roll(crops, k, axis=2) for k in range(6)])  # 36 crops
    labels = np.array(["7203", "7225", "1", "2", "3", "4"] * 6)  # two unseen people
    cache = tmp_path / "celeba112.npz"
    np.savez(cache, images=variants, labels=labels, found=np.ones(len(labels), bool),
             paths=np.array([f"{i}.jpg" for i in range(len(labels))]))
    q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(256, 128)))
    pca = tmp_path / "pca.npz"
    np.savez(pca, mean=np.zeros(256, np.float32), basis=q.T.astype(np.float32))
    pack = tmp_path / "pack"
    meta = table2.make_table2_pack((f"{cache}=celeba/",), pack, teacher_pca=pca,
                                   teacher=_fake_teacher, people=3, per_person=5, min_images=5,
                                   held_out=1, views=2)
    assert (meta["train"], meta["test"], meta["unseen"]) == (12, 3, 12)
    with np.load(pack / "split.npz") as z:
        split = z["labels"]
    assert not set(split[:15]) & {"celeba/7203", "celeba/7225"}  # unseen people never train
    with pytest.raises(ValueError, match="only 4 people"):
        table2.make_table2_pack((f"{cache}=celeba/",), tmp_path / "p2", teacher_pca=pca,
                                teacher=_fake_teacher, people=5, min_images=5)
    out = tmp_path / "out"
    proc = _run_student_alone([str(pack), "--out", str(out), "--archs", "ffem,ffem_am",
                                "--seeds", "0,1", "--max-steps", "2", "--batch", "4",
                                "--device", "cpu"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with np.load(out / "table2.npz") as z:
        assert sorted(z.files) == ["ffem-s0", "ffem-s1", "ffem_am-s0", "ffem_am-s1"]
        assert z["ffem-s0"].shape == (27, 128)
        assert not np.allclose(z["ffem-s0"], z["ffem-s1"])  # seeds differ
    rep = table2.report(out / "table2.npz", pack)
    assert set(rep["archs"]) == {"ffem", "ffem_am"}
    assert all(0 <= a["closed_set"]["mean"] <= 1 for a in rep["archs"].values())
    text = table2.markdown(rep)
    assert "| ffem | 90.4 |" in text and "| ffem_am | 98.1 |" in text and "mobilenet" not in text
    other = tmp_path / "other"
    table2.make_table2_pack((f"{cache}=celeba/",), other, teacher_pca=pca, teacher=_fake_teacher,
                            people=3, per_person=5, min_images=5, held_out=1, views=2, seed=1)
    with pytest.raises(ValueError, match="another pack"):
        table2.report(out / "table2.npz", other)
