"""Rows a model cannot learn from: no label (missing, blank, NaN, a ClassLabel's -1), no text (missing or blank), no
image (neither a path nor bytes).

They are looked for in the splits as read, before the validation carve and `data.max_samples`, so that an error
names the rows as the user's file counts them (its lines, where each row is one line; else as pandas counts);
`data.drop_empty` drops them instead and counts them per split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Image

SHOWN = 5  # rows named in an error
_LINE_FILES = {".csv": 1, ".tsv": 1, ".jsonl": 0, ".json": 0}  # suffix -> header lines above the first row
# recipe key of a column -> what its empty rows lack
_LACKING = {
    "label_column": "no label (missing, blank or NaN)",
    "text_column": "no text (missing or blank)",
    "image_column": "no image (neither a path nor bytes)",
}


def empty_rows(ds: Dataset, column: str) -> np.ndarray:
    """Positions of the rows of `ds` whose `column` holds nothing a model can use (see the module docstring)."""
    feature = ds.features[column]
    values = ds.with_format("arrow")[column]  # the column as Arrow: no Python object per row, no image decoded
    if isinstance(feature, Image):
        data, path = pc.struct_field(values, "bytes"), pc.struct_field(values, "path")
        nothing = pc.and_kleene(pc.is_null(data), pc.or_kleene(pc.is_null(path), _blank(path)))
        empty = pc.or_kleene(pc.is_null(values), nothing)
    elif isinstance(feature, ClassLabel):
        empty = pc.or_kleene(pc.is_null(values), pc.less(values, 0))
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        empty = pc.or_kleene(pc.is_null(values), _blank(values))
    else:
        empty = pc.is_null(values, nan_is_null=True)
    return np.flatnonzero(pc.fill_null(empty, True).to_numpy(zero_copy_only=False))


def _blank(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.equal(pc.utf8_trim_whitespace(values), "")


def drop_empty(ds: Dataset, columns: dict[str, str], split: str, notes: list[str]) -> Dataset:
    """`ds` without the rows that are empty in any of `columns` (recipe key -> column); a note says how many."""
    found = {key: empty_rows(ds, column) for key, column in columns.items()}
    bad = np.unique(np.concatenate([rows for rows in found.values()]))
    if len(bad) == 0:
        return ds
    which = ", ".join(f"{len(rows)} with {_LACKING[key].split(' (')[0]}" for key, rows in found.items() if len(rows))
    notes.append(f"data.drop_empty: dropped {len(bad)} of the {len(ds)} rows of the {split} split ({which})")
    return ds.select(np.setdiff1d(np.arange(len(ds)), bad))


def refuse_empty(ds: Dataset, columns: dict[str, str], split: str, file: str | None, encoding: str) -> None:
    """Raise a ValueError naming the first of `columns` (recipe key -> column) with empty rows, and those rows."""
    for key, column in columns.items():
        rows = empty_rows(ds, column)
        if len(rows):
            raise ValueError(
                f"data.{key}={column!r}: {len(rows)} row(s) of the {split} split have {_LACKING[key]}: "
                f"{name_rows(rows, file, len(ds), encoding)}; fill or remove them, or set data.drop_empty=true to "
                "drop such rows (counted in the log)."
            )


def name_rows(rows: np.ndarray, file: str | None, total: int, encoding: str = "utf-8") -> str:
    """The first few `rows` (positions in a split of `total` rows) as the user finds them: lines of `file` when each
    row is one line of it, else positions counted from 0 (as pandas and `dataset[i]` count, the header not counted).
    """
    shown = [int(r) for r in rows[:SHOWN]]
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    plural = "s" if len(rows) > 1 else ""
    lines = _row_lines(Path(file), total, encoding) if file else None
    if lines is not None:
        return f"line{plural} {', '.join(str(lines[r]) for r in shown)}{more} of {file}"
    of_file = f" of {file}" if file else ""
    return f"row{plural} {', '.join(map(str, shown))}{more}{of_file} (counted from 0, as pandas and dataset[i] count)"


def _row_lines(path: Path, total: int, encoding: str) -> list[int] | None:
    """The line each row starts on, when the file is csv / tsv / json lines with one row per non-blank line (the
    readers skip blank lines); None when that does not hold (a quoted newline) or the file cannot be read."""
    header = _LINE_FILES.get(path.suffix)
    if header is None:
        return None
    try:
        with open(path, encoding=encoding, errors="replace", newline="") as f:
            lines = [n for n, line in enumerate(f, start=1) if line.strip()]
    except OSError:
        return None
    return lines[header:] if len(lines) == total + header else None
