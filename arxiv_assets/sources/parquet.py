"""Papers from a parquet file in our schema: the bundled real sample, or a user's own file."""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.schema import PaperSchemaError, validate_papers

BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "arxiv_sample.parquet"


def load_parquet_month(path: str | Path, start: date, end: date) -> pd.DataFrame:
    """Papers with ``start <= published < end``, validated against the schema."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper file {path} does not exist")
    papers = _validated_table(path, path.stat().st_mtime_ns)
    in_month = (papers["published"] >= start.isoformat()) & (papers["published"] < end.isoformat())
    return papers[in_month].reset_index(drop=True)


@functools.lru_cache(maxsize=2)
def _validated_table(path: Path, mtime_ns: int) -> pd.DataFrame:
    """Read and validate a file once per version (a multi-month run asks for it once per month)."""
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise PaperSchemaError(f"{path}: not a readable parquet file ({error})") from error
    return validate_papers(table, source=str(path))
