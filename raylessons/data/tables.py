"""Tables: reading a CSV without losing a row silently, and the column helpers of the data-block chain."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = ["read_csv", "check_on_bad_item", "column", "flag"]

log = logging.getLogger("raylessons")


def read_csv(csv_path: Path, header: str | int | None = "infer", delimiter: str = ",",
             on_bad_item: str = "raise") -> pd.DataFrame:
    """A CSV as strings (nothing turned into NaN); missing, unparsable or empty files raise DataError naming it.

    A row with more fields than the header (an unknown column layout) raises DataError naming the file and
    line, or with `on_bad_item="skip"` is dropped and logged.
    """
    def skip(fields: list[str]) -> None:
        log.warning("skipping a row of %s (on_bad_item='skip'): %d fields where the header has %d: %s",
                    csv_path, len(fields), n_header, fields)
        return None

    check_on_bad_item(on_bad_item)
    n_header = 0
    options = {}
    if on_bad_item == "skip":
        try:
            with open(csv_path, newline="") as f:
                n_header = len(next(csv.reader(f, delimiter=delimiter), []))
        except (OSError, UnicodeDecodeError, csv.Error):
            pass  # pandas reports it below
        options = dict(on_bad_lines=skip, engine="python")
    try:
        df = pd.read_csv(csv_path, header=header, delimiter=delimiter, dtype=str, keep_default_na=False, **options)
    except FileNotFoundError:
        raise DataError("CSV file not found", csv_path) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse CSV: {e}", csv_path) from None
    if df.empty:
        raise DataError("CSV file has no rows", csv_path)
    return df


def check_on_bad_item(on_bad_item: str) -> None:
    if on_bad_item not in ("raise", "skip"):
        raise ConfigError(f"on_bad_item must be 'raise' or 'skip', not {on_bad_item!r}")


def column(df: pd.DataFrame, col, where) -> str:
    """Resolve a column given by position or name; a missing one raises DataError naming the file."""
    if isinstance(col, int):
        if col >= len(df.columns):
            raise DataError(f"expected at least {col + 1} columns, found {list(df.columns)}", where)
        return df.columns[col]
    if col not in df.columns:
        raise DataError(f"missing column {col!r}; the columns are {list(df.columns)}", where)
    return col


def flag(value, where: str) -> bool:
    """A boolean cell (True/False, 1/0, yes/no); anything else raises DataError naming the row."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise DataError(f"expected a boolean cell, got {value!r}", where)
