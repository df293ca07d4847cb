"""Fidelity tables: split rates with binomial intervals, per point and per grid row, as Markdown, CSV and figures.

:func:`point_table` summarises the per-seed rows (:data:`lth_jax.fidelity_points.ROW_FIELDS`) per
point and system (with the thesis's published counts beside them); :func:`row_table` per E4 width, counting seeds (initializations)
that split at any of the row's level counts; :func:`report` writes both.
"""

from __future__ import annotations

import os
from typing import Sequence

from etils import epath

from lth_jax.fidelity_points import ROW_FIELDS, SYSTEMS, THESIS_PUBLISHED, experiment_of, point_axis
from lth_jax.results import write_csv
from lth_jax.stats import intervals_overlap, mean_or_none, median_or_none, wilson_interval

__all__ = ["point_table", "row_table", "report"]


def point_table(rows: Sequence[dict]) -> list[dict]:
    """Per point and system: seeds, split count and rate with its 95% interval, median split and
    degradation levels, categories, mean active weights at the split, mean final test loss of
    split and other runs; and per point whether the two systems' intervals overlap."""
    table = []
    for point in sorted({r["point"] for r in rows}, key=lambda p: (experiment_of(p), point_axis(p)[1] or 0, point_axis(p)[0])):
        cells = {}
        for system in SYSTEMS:
            mine = [r for r in rows if r["point"] == point and r["system"] == system]
            if not mine:
                continue
            k, n = sum(r["split"] for r in mine), len(mine)
            lo, hi = wilson_interval(k, n)
            split_runs = [r for r in mine if r["split"]]
            other = [r for r in mine if not r["split"]]
            cells[system] = {
                "experiment": experiment_of(point), "point": point, "x": point_axis(point)[0], "width": point_axis(point)[1],
                "system": system, "seeds": n, "splits": k,
                "split_rate": k / n, "ci_low": lo, "ci_high": hi,
                "median_split_level": median_or_none([r["split_level"] for r in split_runs]),
                "median_degradation_level": median_or_none([r["degradation_level"] for r in mine if r["degradation_level"] is not None]),
                **{c: sum(r["category"] == c for r in mine) for c in ("Separated", "Separated-Degraded", "Degraded", "Interconnected")},
                "mean_active_at_split": mean_or_none([r["active_at_split"] for r in split_runs]),
                "final_loss_split": mean_or_none([r["final_test_loss"] for r in split_runs]),
                "final_loss_other": mean_or_none([r["final_test_loss"] for r in other]),
                "intervals_overlap": None, "overlaps_published": None,
            }
        if point in THESIS_PUBLISHED and cells:
            k, n = THESIS_PUBLISHED[point]
            lo, hi = wilson_interval(k, n)
            cells["thesis_published"] = {**{key: None for key in next(iter(cells.values()))}, "experiment": experiment_of(point),
                                         "point": point, "x": point_axis(point)[0], "width": point_axis(point)[1], "system": "thesis_published", "seeds": n, "splits": k,
                                         "split_rate": k / n, "ci_low": lo, "ci_high": hi,
                                         **{c: 0 for c in ("Separated", "Separated-Degraded", "Degraded", "Interconnected")}}
        if "lth_jax" in cells and "thesis_code" in cells:
            agree = _overlap(cells["lth_jax"], cells["thesis_code"])
            cells["lth_jax"]["intervals_overlap"] = cells["thesis_code"]["intervals_overlap"] = agree
        for system in ("lth_jax", "thesis_code"):
            if system in cells and "thesis_published" in cells:
                cells[system]["overlaps_published"] = _overlap(cells[system], cells["thesis_published"])
        table.extend(cells.values())
    return table


def row_table(rows: Sequence[dict]) -> list[dict]:
    """Per E4 width and system: of the seeds run at every level count of the row that both systems ran,
    those that split at one or more of them, with the interval of that rate, and the chance that 4 seeds drawn at that rate
    all never split. The thesis's grid reuses its 4 seeds (4 initializations) in every cell of a row."""
    table = []
    e4 = [r for r in rows if experiment_of(r["point"]) == "E4"]
    for width in sorted({point_axis(r["point"])[1] for r in e4}):
        # the level counts every system ran, so that the systems' rows count the same cells
        ran = [{point_axis(r["point"])[0] for r in e4 if r["system"] == system and point_axis(r["point"])[1] == width}
               for system in SYSTEMS[:2]]
        counts = sorted(set.intersection(*[c for c in ran if c]))
        for system in SYSTEMS[:2]:
            mine = [r for r in e4 if r["system"] == system and point_axis(r["point"])[1] == width and point_axis(r["point"])[0] in counts]
            by_seed = {}
            for r in mine:
                by_seed.setdefault(r["seed"], {})[point_axis(r["point"])[0]] = r["split"]
            complete = [splits for splits in by_seed.values() if len(splits) == len(counts)]
            if not complete:
                continue
            k, n = sum(any(splits.values()) for splits in complete), len(complete)
            lo, hi = wilson_interval(k, n)
            table.append({"width": width, "system": system, "level_counts": counts, "seeds": n, "seeds_that_split": k,
                          "rate": k / n, "ci_low": lo, "ci_high": hi, "none_of_4_seeds": (1 - k / n) ** 4})
    return table


def _row_markdown(table: Sequence[dict]) -> str:
    lines = ["## E4 by initialization", "",
             "The thesis's grid trains the same 4 seeds (initializations) in every cell of a width's row, so a row's "
             "40 runs are 4 initializations, not 40 independent draws. Here: seeds run at every level count of the row, "
             "those that split at one or more of them, and the chance that 4 seeds drawn at that rate never split.", "",
             "| width | system | level counts | seeds | split somewhere | rate [95% CI] | P(none of 4 seeds splits) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        published = sum(THESIS_PUBLISHED.get(f"w{r['width']}_L{n:02d}", (0, 0))[0] for n in r["level_counts"])
        lines.append(f"| {r['width']} | {r['system']} | {', '.join(map(str, r['level_counts']))} | {r['seeds']} | {r['seeds_that_split']} "
                     f"| {r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] | {r['none_of_4_seeds']:.2f} |")
        if r["system"] == "thesis_code":
            lines.append(f"| {r['width']} | thesis (published) | same | 4 | runs that split in these cells: {published} of "
                         f"{4 * len(r['level_counts'])} | | |")
    return "\n".join(lines) + "\n"


def _overlap(a: dict, b: dict) -> bool:
    return intervals_overlap((a["ci_low"], a["ci_high"]), (b["ci_low"], b["ci_high"]))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _markdown(experiment: str, table: Sequence[dict]) -> str:
    lines = [f"## {experiment}", "",
             "| point | system | seeds | split | rate [95% CI] | median split level | median degr. level | Sep / Sep-Deg / Deg / Inter | active at split | final loss split / other | overlap | overlaps published |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in table:
        if c["system"] == "thesis_published":
            lines.append(f"| {c['point']} | thesis (published) | {c['seeds']} | {c['splits']} | {c['split_rate']:.2f} "
                         f"[{c['ci_low']:.2f}, {c['ci_high']:.2f}] | | | | | | | |")
            continue
        lines.append(
            f"| {c['point']} | {c['system']} | {c['seeds']} | {c['splits']} | {c['split_rate']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}] "
            f"| {_fmt(c['median_split_level'])} | {_fmt(c['median_degradation_level'])} "
            f"| {c['Separated']} / {c['Separated-Degraded']} / {c['Degraded']} / {c['Interconnected']} | {_fmt(c['mean_active_at_split'])} "
            f"| {_fmt(c['final_loss_split'])} / {_fmt(c['final_loss_other'])} | {_fmt(c.get('intervals_overlap'))} "
            f"| {_fmt(c.get('overlaps_published'))} |")
    return "\n".join(lines) + "\n"


def _structure_markdown(title: str, rows: Sequence[dict]) -> str:
    lines = [f"## E5/E7: {title}", "", "Fractions of the unpruned weights that are active, inactive and zombie; decided ratios of the hidden layers "
             "(first/second/...), from the outputs' view and from the inputs' view.", "",
             "| level | weights | system | active | inactive | zombie | decided (output) | decided (input) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        decided = ["/".join(_fmt(v, 2) for v in r[k]) or "–" for k in ("decided_output", "decided_input")]
        lines.append(f"| {r['level']} | {r['weights']} | {r['system']} | {_fmt(r['active_fraction'])} | {_fmt(r['inactive_fraction'])} "
                     f"| {_fmt(r['zombie_fraction'])} | {decided[0]} | {decided[1]} |")
    return "\n".join(lines) + "\n"


def report(rows: Sequence[dict], out: str | os.PathLike, *, notes: Sequence[str] = (),
           structure: tuple[str, Sequence[dict]] | None = None) -> list[epath.Path]:
    """``out/fidelity.md``, ``out/<experiment>.csv``, ``out/seeds.csv`` and the figures; returns the written files.
    ``structure``: (title, :func:`structure_rows`) of one run, written as E5/E7 and ``E5_E7.csv``."""
    out = epath.Path(out)
    table = point_table(rows)
    write_csv(out / "seeds.csv", [{k: r[k] for k in ROW_FIELDS} for r in rows])
    written = [out / "seeds.csv"]
    sections = ["# Fidelity: lth_jax and the thesis's code on the same points", "",
                "Split rate: runs that split at some level (Separated or Separated-Degraded), with Wilson's 95% interval. "
                "`overlap`: lth_jax's and the thesis code's intervals overlap; `overlaps published`: this system's interval overlaps "
                "that of the thesis's published figure (4 runs a point, 5 for E2).", "", *notes, ""]
    from lth_jax import plots  # matplotlib: imported when a figure is drawn

    for experiment in sorted({c["experiment"] for c in table}):
        mine = [c for c in table if c["experiment"] == experiment]
        write_csv(out / f"{experiment}.csv", mine)
        written.append(out / f"{experiment}.csv")
        sections.append(_markdown(experiment, mine))
        for name, figure in _figures(experiment, mine):
            written.append(plots.save(figure, out / "figures" / f"{name}.png"))
            sections.append(f"![{name}](figures/{name}.png)\n")
    by_init = row_table(rows)
    if by_init:
        write_csv(out / "E4_by_initialization.csv", by_init)
        written.append(out / "E4_by_initialization.csv")
        sections.append(_row_markdown(by_init))
    if structure is not None:
        write_csv(out / "E5_E7.csv", structure[1])
        written.append(out / "E5_E7.csv")
        sections.append(_structure_markdown(*structure))
    (out / "fidelity.md").write_text("\n".join(sections))
    return [out / "fidelity.md", *written]


def _figures(experiment: str, table: Sequence[dict]):
    """(name, figure): split rates per grid point; for E4 also the width trend at each level count."""
    from lth_jax import plots

    if experiment != "E4":
        cells = [{**c, "group": None} for c in table]
        yield experiment, plots.plot_split_rates(cells, xlabel="extension level", titles={None: f"{experiment}: runs that split (95% intervals)"})
        return
    finding = {w: "thesis's text: never splits" if w < 48 else "thesis's text: splits consistently below p = 0.41" for w in (31, 38, 48, 57)}
    yield "E4", plots.plot_split_rates([{**c, "group": c["width"]} for c in table], xlabel="pruning levels to 112 weights",
                                       titles={w: f"E4, width {w}\n{finding.get(w, '')}" for w in {c["width"] for c in table}})
    if len({c["width"] for c in table}) > 1:
        titles = {n: f"E4, {n} levels to 112 weights\nthesis's text: widths 31, 38 never split; 48, 57 do" for n in {c["x"] for c in table}}
        yield "E4_width_trend", plots.plot_split_rates([{**c, "x": c["width"], "group": c["x"]} for c in table], xlabel="width", titles=titles)


