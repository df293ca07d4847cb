import math

import pytest

from lth_jax.trajectory import extension_shape, extension_trajectory, levels_for_target, rate_for_target, trajectory, weight_count


def test_worked_examples_of_spec():
    assert trajectory(1000, levels=6, target=200) == [1000, 765, 585, 447, 342, 262, 200]
    assert rate_for_target(1000, 200, 6) == pytest.approx(0.2353, abs=1e-4)
    assert trajectory(1000, rate=0.2, levels=6) == [1000, 800, 640, 512, 410, 328, 262]


def test_correct_formulas_not_the_typos():
    p = rate_for_target(1000, 200, 6)
    assert 1000 * (1 - p) ** 6 == pytest.approx(200)  # T_L = T0 (1-p)^L, not (1-p)^-L
    assert p == pytest.approx(1 - (200 / 1000) ** (1 / 6))  # not 1 - (T0/T_L)^(1/L)
    levels = levels_for_target(1000, 200, 0.2)
    assert levels == math.ceil(math.log(0.2) / math.log(0.8)) == 8
    assert levels_for_target(1000, 512, 0.2) == 3  # float noise does not add a level


def test_rate_and_target_ends_exactly_at_the_target():
    counts = trajectory(1000, rate=0.2, target=200)
    assert counts[:-1] == [1000, 800, 640, 512, 410, 328, 262, 210]
    assert counts[-1] == 200
    assert trajectory(1000, rate=0.2, target=1000) == [1000]
    assert trajectory(50, levels=0, target=50) == [50]


def test_morcos_grid():
    counts = trajectory(10_000_000, rate=0.2, levels=30)
    assert counts[-1] == round(10_000_000 * 0.8**30)
    assert all(b < a for a, b in zip(counts, counts[1:]))


def test_extension_shapes():
    assert extension_shape((4, 8, 8, 2), 0) == (4, 8, 8, 2)
    assert extension_shape((4, 8, 8, 2), 1) == (4, 10, 10, 2)
    assert extension_shape((4, 8, 8, 2), 2) == (4, 13, 13, 2)
    assert extension_shape((4, 8, 8, 2), 7) == (4, 38, 38, 2)
    assert extension_shape((4, 20, 2), 1) == (4, 29, 2)
    assert weight_count((4, 8, 8, 2)) == 112 and weight_count((4, 20, 2)) == 120
    assert weight_count((4, 10, 10, 2)) == 160 and weight_count((4, 13, 13, 2)) == 247


def test_extension_trajectory_counts_walk_down_the_shapes():
    counts = extension_trajectory((4, 8, 8, 2), 3)
    assert counts == [weight_count(extension_shape((4, 8, 8, 2), e)) for e in (3, 2, 1, 0)]
    assert counts[-1] == 112 and counts[-2] == 160 and counts[-3] == 247


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: trajectory(1000, rate=1.2, levels=3), r"rate=1.2 is outside the open interval \(0, 1\)"),
        (lambda: trajectory(1000, rate=0.0, levels=3), r"rate=0.0 is outside"),
        (lambda: trajectory(1000, rate=0.2, levels=-1), r"levels=-1 must be >= 0"),
        (lambda: trajectory(1000, levels=3, target=2000), r"target=2000 is above the total of 1000"),
        (lambda: trajectory(1000, levels=3), r"exactly two of rate, levels, target"),
        (lambda: trajectory(1000, rate=0.2, levels=3, target=10), r"exactly two"),
        (lambda: trajectory(0, rate=0.2, levels=3), r"total=0 must be >= 1"),
        (lambda: trajectory(1000, rate=0.2, levels=2.5), r"levels=2.5 is not an integer"),
        (lambda: trajectory(1000, levels=0, target=10), r"levels=0 cannot reach target=10"),
        (lambda: levels_for_target(1000, 0, 0.2), r"target=0 cannot be reached"),
        (lambda: extension_shape((4, 8, 6, 2), 1), r"equal hidden widths"),
        (lambda: extension_shape((4, 2), 1), r"needs an input size"),
        (lambda: extension_shape((4, 8, 2), -1), r"level=-1 must be >= 0"),
        (lambda: extension_shape((4, 8, 2), 1, rate=1.0), r"rate=1.0 is outside"),
    ],
)
def test_bad_input_names_the_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()
