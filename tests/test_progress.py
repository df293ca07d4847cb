"""lth_jax.progress: a bar over every seed's levels and epochs, topped up when a level ends early."""

import io

from lth_jax.progress import Progress


def test_the_bar_counts_epochs_and_levels_that_end_early(monkeypatch, capsys):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = Progress(levels=3, epochs=4, seeds=2, enabled=True, description="toy")
    assert bar.bar.total == 24
    for seed in (0, 1):
        for epoch in (1, 2):  # level 0 stops early after 2 epochs
            bar.epoch({"seed": seed, "level": 0, "epoch": epoch, "test_loss": 0.5})
        bar.level({"seed": seed, "level": 0})
    assert bar.bar.n == 8  # two full levels' worth: the early stop counts as done
    bar.level({"seed": 0, "level": 1})  # a level read back from the workdir
    assert bar.bar.n == 12
    bar.write("a log line")
    bar.close()
    assert "a log line" in capsys.readouterr().out and "12/24" in err.getvalue()  # lines on stdout, the bar on stderr
    quiet = Progress(levels=3, epochs=4)  # not a terminal: no bar, lines printed as they come
    assert quiet.bar is None


def test_the_bar_is_not_redrawn_at_every_epoch(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = Progress(levels=1, epochs=2000, seeds=1, enabled=True)
    for epoch in range(1, 2001):  # a sweep reports ~2M seed-epochs: a redraw each would cost more than the epochs
        bar.epoch({"seed": 0, "level": 0, "epoch": epoch, "test_loss": 0.5})
    bar.close()
    assert err.getvalue().count("\r") < 100 and "2000/2000" in err.getvalue()
