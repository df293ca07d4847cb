"""A progress bar over the levels and epochs of an IMP run, with rate and time left.

The bar (tqdm, on stderr) counts epochs: every level of every seed at its full
length, so the time left is an upper bound that shrinks when early stopping ends
a level sooner. It is on when stderr is a terminal (scripts run by hand), off
elsewhere (notebooks, logs, tests); the per-level lines are printed either way,
above the bar.
"""

from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """``epoch(record)`` after every epoch, ``level(record)`` after every level (trained
    or read back), ``write(line)`` for log lines, ``close()`` at the end."""

    def __init__(self, *, levels: int, epochs: int, seeds: int = 1, enabled: bool | None = None, description: str = ""):
        self.epochs = epochs
        self.seen: dict[tuple, int] = {}  # (seed, level) -> epochs counted
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=levels * epochs * seeds, unit="epoch", desc=description, dynamic_ncols=True, file=sys.stderr)

    def epoch(self, record: dict) -> None:
        if self.bar is None:
            return
        key = (record.get("seed"), record.get("level", 0))
        self.seen[key] = self.seen.get(key, 0) + 1
        self.bar.update(1)
        loss = record.get("test_loss", record.get("val_loss", record.get("train_loss")))
        # drawn when update() redraws (tqdm's mininterval), not once per seed-epoch
        self.bar.set_postfix_str(f"level {key[1]} epoch {record['epoch']}" + (f" loss {loss:.4f}" if isinstance(loss, float) else ""), refresh=False)

    def level(self, record: dict) -> None:
        """A level is over: the epochs it did not run (early stopping, read back) count as done."""
        if self.bar is None:
            return
        key = (record.get("seed"), record.get("level", 0))
        self.bar.update(max(0, self.epochs - self.seen.get(key, 0)))
        self.seen[key] = self.epochs

    def write(self, line: str) -> None:
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
