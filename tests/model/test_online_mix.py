"""--mix-faces: views blended from two photos, the same blend for the teacher and the student."""

import numpy as np
from click.testing import CliRunner

from faceid_sdk.training._online import mix_views


def _constant_views(values):
    student = np.stack([np.full((96, 96, 3), v, np.uint8) for v in values])
    teacher = np.stack([np.full((3, 128, 128), v, np.float32) for v in values])
    return student, teacher


def test_no_mixing_leaves_the_views_and_the_random_stream_alone():
    student, teacher = _constant_views([10, 200, 90])
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    s, t = mix_views(student, teacher, 0.0, rng)
    assert s is student and t is teacher
    assert rng.random() == twin.random()  # a resumed run without mixing draws what it drew


def test_the_fraction_of_views_is_blended_with_another_view_at_the_same_weight():
    values = [0, 40, 80, 120, 160, 200, 240, 255]
    student, teacher = _constant_views(values)
    s, t = mix_views(student, teacher, 0.5, np.random.default_rng(0))
    changed = [i for i in range(8) if not np.array_equal(t[i], teacher[i])]
    assert len(changed) == 4
    np.testing.assert_array_equal(student, _constant_views(values)[0])  # inputs not modified
    for i in range(8):
        sv, tv = s[i].astype(np.float32), t[i]
        assert np.ptp(sv) == 0 and np.ptp(tv) == 0  # one blend per view, every pixel alike
        assert abs(float(sv.flat[0]) - float(tv.flat[0])) <= 0.5  # the same blend, rounded
        if i not in changed:
            assert sv.flat[0] == values[i]
            continue
        # tv = w * values[i] + (1 - w) * values[j] for some other view j, w in [0.3, 0.7]
        ws = [(float(tv.flat[0]) - values[j]) / (values[i] - values[j])
              for j in range(8) if j != i]
        assert any(0.3 - 1e-6 <= w <= 0.7 + 1e-6 for w in ws)


def test_the_cli_refuses_a_fraction_outside_zero_to_one():
    from faceid_sdk.cli import main

    result = CliRunner().invoke(main, ["train", "x", "--recipe", "online", "--mix-faces", "1.5"])
    assert result.exit_code == 2
    assert "--mix-faces" in result.output and "1.5" in result.output
