"""Morcos et al.'s claims as effects with intervals and verdicts (lth_jax.claims), and the claims study end to end."""

import math
import os

import numpy as np
import pytest

from lth_jax.claims import Claim, Curve, claims_table, evaluate_claims, verdict
from lth_jax.errors import UserError
from lth_jax.stats import MeanInterval


def row(ticket, level, seed, accuracy, source="s", target="t", optimizer="sgd", model="m"):
    return dict(source=source, source_optimizer=optimizer, target=target, target_optimizer=optimizer, ticket=ticket, level=level,
                seed=seed, test_accuracy=accuracy, fraction_remaining=0.8 ** level, model=model)


def test_verdicts_follow_the_interval():
    assert verdict(MeanInterval(1.0, 0.2, 1.8, 16), "better") == "holds"
    assert verdict(MeanInterval(-1.0, -1.8, -0.2, 16), "better") == "does not hold"
    assert verdict(MeanInterval(0.5, -0.2, 1.2, 16), "better") == "cannot tell at this scale"
    assert verdict(MeanInterval(-0.5, -0.9, -0.1, 16), "not_worse", margin=1.0) == "holds"  # worse, but within the margin
    assert verdict(MeanInterval(-2.0, -2.5, -1.5, 16), "not_worse", margin=1.0) == "does not hold"
    assert verdict(MeanInterval(-1.0, -1.5, -0.5, 16), "not_worse", margin=1.0) == "cannot tell at this scale"
    assert verdict(None, "better") == "cannot tell at this scale"


def test_a_difference_is_averaged_over_levels_per_seed_and_pairs_seeds():
    rows = [row("winning", level, seed, 0.9 + 0.01 * seed + 0.001 * level) for seed in range(3) for level in (3, 4)]
    rows += [row("random", level, seed, 0.8 + 0.002 * seed * level) for seed in range(4) for level in (3, 4)]
    claim = Claim("x", "p", Curve("t", "winning", "s"), Curve("t", "random", "s"), levels=(3, 4))
    (result,) = evaluate_claims(rows, [claim])
    expected = {s: np.mean([100 * ((0.9 + 0.01 * s + 0.001 * l) - (0.8 + 0.002 * s * l)) for l in (3, 4)]) for s in range(3)}
    assert result.per_seed == pytest.approx(expected)  # seed 3 has no winning rows: left out
    values = np.array(list(expected.values()))
    half = 4.302653 * values.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 dof)
    assert (result.interval.low, result.interval.high) == pytest.approx((values.mean() - half, values.mean() + half), rel=1e-5)
    assert result.verdict == "holds" and result.fraction_pruned == pytest.approx((1 - 0.8**3, 1 - 0.8**4))
    assert "| x | p |" in claims_table([result]) and "**holds**" in claims_table([result])


def test_a_drop_compares_how_far_two_curves_fall():
    rows = []
    for seed in range(4):
        rows += [row("source", 10, seed, 0.95, model="resnet"), row("source", 20, seed, 0.60 + 0.01 * seed, model="resnet")]
        rows += [row("source", 10, seed, 0.96, model="vgg"), row("source", 20, seed, 0.90, model="vgg")]
    claim = Claim.from_dict(dict(id="d", paper="p", a=dict(target="t", ticket="source", model="resnet"),
                                 b=dict(target="t", ticket="source", model="vgg"), levels=(10, 20), measure="drop"))
    (result,) = evaluate_claims(rows, [claim])
    assert result.per_seed == pytest.approx({s: 100 * ((0.95 - 0.60 - 0.01 * s) - (0.96 - 0.90)) for s in range(4)})
    assert result.verdict == "holds"


def test_bad_claims_are_refused_in_one_line():
    with pytest.raises(UserError, match="measure='ratio'"):
        Claim("x", "p", Curve("t", "winning"), Curve("t", "random"), levels=(1,), measure="ratio")
    with pytest.raises(UserError, match="a drop needs two levels"):
        Claim("x", "p", Curve("t", "winning"), Curve("t", "random"), levels=(1,), measure="drop")
    with pytest.raises(UserError, match="unknown fields colour"):
        Curve.parse({"target": "t", "ticket": "winning", "colour": "red"})


def tiny_config():
    from experiments.configs import transfer_claims_digits

    c = transfer_claims_digits.get_config()
    c.seeds, c.levels, c.deep_levels, c.transfer_every = (0, 1), 2, 3, 1
    for recipe in c.models.values():
        recipe.training.epochs = 2
        recipe.training.eval_every_epochs = 2
        recipe.model_kwargs.width_multiplier /= 2
    c.parts = (dict(name="disjoint", source="digits_0to4", targets=("digits_5to9",)),
               dict(name="to_adam", source="digits_0to4", targets=("digits_0to4",), target_optimizer="adam", source_from="disjoint"),
               dict(name="resnet", source="digits_0to4", model="resnet", source_levels="deep"))
    return c


def test_the_transfer_claims_runs_resumes_and_reports(tmp_path):
    from lth_jax import transfer_claims

    c, log = tiny_config(), []
    out = transfer_claims.run_claims(c, tmp_path, log_fn=log.append)
    report = (out / "claims.md").read_text()
    assert "| (a) class-disjoint vs random |" in report and "| 2 |" in report  # two seeds a claim where rows exist
    assert "digits_0to4 (sgd) → digits_0to4 (adam)" not in report  # the preset's (c) claims read digits_a: no rows here
    for name in ("claims.csv", "paired.csv", "imp_sources.png", "accuracy_digits_5to9_sgd.png", "accuracy_digits_0to4_adam.png"):
        assert os.path.getsize(out / name) > 0, name
    assert (tmp_path / "resnet" / "source" / "digits_0to4_sgd" / "seed_1" / "level_03").is_dir()  # deep_levels
    assert not (tmp_path / "to_adam" / "source").exists()  # the tickets of part "disjoint"
    before = {p: os.stat(p).st_mtime_ns for p in tmp_path.rglob("record.json")}
    os.remove(out / "claims.md")
    transfer_claims.run_claims(c, tmp_path, log_fn=log.append)  # resumes: every stage read back, the report written again
    assert {p: os.stat(p).st_mtime_ns for p in tmp_path.rglob("record.json")} == before
    assert (out / "claims.md").read_text() == report


def test_claims_configs_are_checked_before_anything_trains(tmp_path):
    from lth_jax import transfer_claims

    c = tiny_config()
    c.seeds = (0,)
    with pytest.raises(UserError, match="at least two"):
        transfer_claims.run_claims(c, tmp_path)
    c = tiny_config()
    c.parts = (dict(name="a", source="digits_a", targets=("digits_b",), source_from="later"),)
    with pytest.raises(UserError, match="source_from='later' names no earlier part"):
        transfer_claims.run_claims(c, tmp_path)
    assert not any(tmp_path.iterdir())


def test_accuracy_bands_are_drawn_within_what_an_accuracy_can_be():
    from lth_jax import plots

    fig = plots.figure((4, 3))
    ax = fig.subplots()
    points = [{"fraction_remaining": f, "m": 0.9, "lo": -0.4, "hi": 1.7} for f in (1.0, 0.5, 0.1)]
    plots.interval_curve(ax, points, mean="m", low="lo", high="hi", scale=100.0, limits=(0.0, 1.0))
    (band,) = ax.collections
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() == pytest.approx(0.0) and ys.max() == pytest.approx(100.0)
