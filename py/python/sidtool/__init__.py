"""sidtool from Python: semantic IDs for generative recommenders.

The library behind the `sidtool` command line, Arrow in and Arrow out (pyarrow, zero-copy):

    import pyarrow.parquet as pq, sidtool
    q = sidtool.Quantizer.load("out/quantizer")          # a `sidtool train` / `build` output
    for i, batch in enumerate(pq.ParquetFile("items.parquet").iter_batches()):
        raw = q.encode(batch)                             # item_id + codes, no resolution
        pq.write_table(pa.Table.from_batches([raw]), f"raw/part-{i:05}.parquet")
    stats = sidtool.resolve("raw/", "sids.parquet")       # = `sidtool assign` on one machine

`encode` releases the GIL, so threads (and Spark's or Ray's workers) code batches in parallel.
"""

import json as _json
import os as _os

from ._sidtool import Quantizer, SidtoolError, __version__
from ._sidtool import resolve as _resolve

__all__ = ["Quantizer", "SidtoolError", "resolve", "__version__"]


def resolve(parts, out, dedup="suffix", existing=None, stats=None, quantizer=None):
    """Global collision resolution of raw-code parts, as `sidtool resolve` does.

    `parts`: a path or a list of paths: Parquet files written from `Quantizer.encode` batches
    (or by `sidtool assign --dedup none`), or directories of them as Spark writes them
    (`*.parquet` in name order; `_SUCCESS`, `.crc` and hidden files ignored). Writes the final
    IDs to `out` (and the statistics JSON to `stats`); returns the statistics as a dict. With
    `existing` (an earlier sids.parquet of the same quantizer), its items keep their IDs.
    `quantizer` (a `Quantizer`): the one that coded the parts, for parts an engine rewrote
    without sidtool's footer (Spark's and Ray's Parquet writers drop it).
    """
    if isinstance(parts, (str, bytes, _os.PathLike)):
        parts = [parts]
    text = _resolve(
        [_os.fspath(p) for p in parts],
        _os.fspath(out),
        dedup,
        None if existing is None else _os.fspath(existing),
        None if stats is None else _os.fspath(stats),
        quantizer,
    )
    return _json.loads(text)
