"""Figures drawn in helper processes (lth_jax.drawing): shared with the caller, errors and dead helpers."""

import os

import matplotlib.image
import pytest

import drawn
from lth_jax import drawing


def test_helpers_draw_their_share_beside_this_process(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    figures = [(drawn.marked, (pids,), tmp_path / f"f{i}.png") for i in range(5)]
    with drawing.Drawers(2) as drawers:
        drawers.save(figures)
        drawers.save(figures[:1])  # the helpers serve until closed
    assert all(matplotlib.image.imread(path).shape[2] == 4 for *_, path in figures)
    drew = {int(p.name) for p in pids.iterdir()}
    assert os.getpid() in drew and len(drew) == 3  # this process and both helpers


def test_a_figure_that_fails_in_a_helper_raises_here_after_the_others_are_drawn(tmp_path):
    figures = [(drawn.marked, (tmp_path,), tmp_path / "a.png"), (drawn.failing, ("no such column",), tmp_path / "b.png"),
               (drawn.marked, (tmp_path,), tmp_path / "c.png")]
    with drawing.Drawers(1) as drawers, pytest.raises(ValueError, match="no such column"):
        drawers.save(figures)  # figure b is the helper's
    assert (tmp_path / "a.png").exists() and (tmp_path / "c.png").exists() and not (tmp_path / "b.png").exists()


def test_a_dead_helper_leaves_its_figures_to_this_process(tmp_path):
    figures = [(drawn.marked, (tmp_path,), tmp_path / f"f{i}.png") for i in range(4)]
    with drawing.Drawers(1) as drawers:
        drawers._helpers[0].kill()
        drawers._helpers[0].wait()
        drawers.save(figures)
    assert all(path.exists() for *_, path in figures)
    assert {int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()} == {os.getpid()}


def test_helpers_are_started_for_many_figures_and_leave_a_core(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert [drawing.helpers_for(n) for n in (1, 7, 8, 16, 512)] == [0, 0, 1, 1, 1]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert [drawing.helpers_for(n) for n in (16, 40, 512)] == [2, 5, drawing.MAX_HELPERS]


def test_without_an_interpreter_to_start_this_process_draws_alone(tmp_path, monkeypatch):
    import subprocess

    def no_interpreter(*args, **kwargs):
        raise FileNotFoundError("python3")

    monkeypatch.setattr(subprocess, "Popen", no_interpreter)
    figures = [(drawn.marked, (tmp_path,), tmp_path / f"f{i}.png") for i in range(3)]
    with drawing.Drawers(2) as drawers:
        drawers.save(figures)
    assert all(path.exists() for *_, path in figures)


def test_a_function_the_helpers_cannot_import_is_drawn_here_quietly(tmp_path, monkeypatch, capfd):
    import sys
    import types

    here = types.ModuleType("defined_in_this_process_only")  # pickles by name; no helper can import it
    exec("def plot():\n    from lth_jax import plots\n    return plots.figure((1, 1))", here.__dict__)
    monkeypatch.setitem(sys.modules, here.__name__, here)
    figures = [(here.plot, (), tmp_path / f"f{i}.png") for i in range(5)]
    figures[2] = (lambda: None, (), tmp_path / "f2.png")  # the second helper's share: a lambda does not pickle
    with drawing.Drawers(2) as drawers, pytest.raises(AttributeError):  # drawn here, and it is no figure
        drawers.save(figures)
    assert [(tmp_path / f"f{i}.png").exists() for i in range(5)] == [True, True, False, True, True]
    assert "Traceback" not in capfd.readouterr().err
