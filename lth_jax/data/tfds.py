"""Reading TFDS datasets without TensorFlow: ``tfds.data_source`` (ArrayRecord).

Preparing a dataset in ArrayRecord format needs TensorFlow once, on the user's
machine: ``tfds build NAME --file_format=array_record``. ``tfds.load`` is never
used. Records are read one by one (the test mock's batched read is broken; a
real source reads 60k small records in seconds).
"""

from __future__ import annotations

import numpy as np

from lth_jax.errors import UserError

__all__ = ["open_source", "read_split", "prepare_hint"]


def prepare_hint(name: str) -> str:
    return f"prepare it with `tfds build {name} --file_format=array_record` (needs TensorFlow once), or pass --download"


def open_source(name: str, split: str, data_dir: str | None = None, download: bool = False):
    """``tfds.data_source(...)`` with one-line errors for unknown or unprepared datasets."""
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"unknown TFDS dataset {name!r}") from None
    except Exception as e:  # not prepared, or prepared in another format
        try:
            builder = tfds.builder(name, data_dir=data_dir)
            where, prepared = builder.data_dir, builder.is_prepared()
        except Exception:
            where, prepared = data_dir or "~/tensorflow_datasets", False
        if not prepared:
            raise UserError(f"TFDS dataset {name!r} is not prepared in {where}: {prepare_hint(name)}") from None
        raise UserError(
            f"TFDS dataset {name!r} in {where} cannot be read without TensorFlow ({type(e).__name__}); "
            f"rebuild it with `tfds build {name} --file_format=array_record`"
        ) from None


def read_split(
    name: str, split: str, *, data_dir: str | None = None, download: bool = False, features=("image", "label")
) -> dict[str, np.ndarray]:
    """All records of ``name[split]`` as numpy arrays, one per feature."""
    source = open_source(name, split, data_dir, download)
    columns: dict[str, list] = {f: [] for f in features}
    for i in range(len(source)):
        record = source[i]
        for f in features:
            columns[f].append(np.asarray(record[f]))
    if not len(source):
        raise UserError(f"TFDS split {name}[{split}] is empty")
    return {f: np.stack(values) for f, values in columns.items()}
