"""sidtool from Python: semantic IDs for generative recommenders.

The library behind the `sidtool` command line, Arrow in and Arrow out (pyarrow, zero-copy):

    import pyarrow as pa, pyarrow.parquet as pq, sidtool
    q = sidtool.Quantizer.load("out/quantizer")          # a `sidtool train` / `build` output
    for i, batch in enumerate(pq.ParquetFile("items.parquet").iter_batches()):
        raw = q.encode(batch)                             # item_id + codes, no resolution
        pq.write_table(pa.Table.from_batches([raw]), f"raw/part-{i:05}.parquet")
    stats = sidtool.resolve("raw/", "sids.parquet")       # = `sidtool assign` on one machine
    table = sidtool.resolve([q.encode(b) for b in batches])  # or Arrow in, a pa.Table out

`Embedder(model).embed(batch)` is `sidtool embed` per batch. `build`, `embed`, `train`,
`assign`, `stats` and `vocab` run the commands of the same names on files, through the library
(no subprocess); their settings are the config file's (`config="sidtool.toml"`) with
`settings={"quantizer": {"codebook_sizes": [256, 256, 256]}, ...}` (the file's sections and
keys) over it. Every call releases the GIL while it computes, so threads (and Spark's or Ray's
workers) run in parallel; errors raise `SidtoolError` with the command line's message.
"""

import json as _json
import os as _os

from . import _sidtool
from ._sidtool import Embedder as _Embedder
from ._sidtool import Quantizer, SidtoolError, __version__
from ._sidtool import resolve as _resolve

__all__ = [
    "Embedder",
    "Quantizer",
    "SidtoolError",
    "assign",
    "build",
    "embed",
    "resolve",
    "stats",
    "train",
    "vocab",
    "__version__",
]


def _path(p):
    return None if p is None else _os.fspath(p)


def _settings(settings):
    return _json.dumps(settings or {})


class Embedder(_Embedder):
    """A text-embedding model (hub id through the HF cache, or a local directory) with its item
    text template: `embed(batch)` returns `item_id` + `embedding` for every row, the vectors
    `sidtool embed` writes for the same rows. Keyword options as `sidtool embed`'s flags:
    template, pooling, dim, device ("cpu", "cuda", "metal"), dtype ("f32", "f16", "bf16"),
    instruction, max_length, batch_tokens, revision, id_column.
    """

    @property
    def info(self):
        """model, architecture, hidden_size, dim, pooling, max_length, dtype, device, instruction."""
        return _json.loads(self._info)


def resolve(parts, out=None, dedup="suffix", existing=None, stats=None, quantizer=None, embeddings=None,
            config=None, settings=None):
    """Global collision resolution of raw codes, as `sidtool resolve` does.

    `parts`: a path or a list of paths: Parquet files written from `Quantizer.encode` batches
    (or by `sidtool assign --dedup none`), directories of them as Spark writes them
    (`_SUCCESS`, `.crc` and hidden files ignored), or globs; or the raw codes themselves, as a
    pyarrow Table, a RecordBatch or a list of RecordBatches (what `Quantizer.encode` returns).

    With `out`, writes the final IDs there (and the statistics JSON to `stats`) and returns the
    statistics as a dict; without it, returns the final IDs as a pyarrow Table (the table
    `sidtool resolve` writes, footer in the schema metadata).

    `dedup`: "suffix", "reassign" or "none". With `existing` (an earlier sids.parquet of the
    same quantizer), its items keep their IDs. `quantizer` (a `Quantizer` or its directory): the
    one that coded the parts, for parts an engine rewrote without sidtool's footer (Spark's and
    Ray's Parquet writers drop it). `embeddings`: for "reassign", the vectors the parts were
    coded from (a file, directory or glob; only the colliding items' rows are kept).
    `config`/`settings`: `[input]` columns, `[collab]` and `[ids] token_format`, as for `assign`.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sidtool-resolve-") as tmp:
        if isinstance(parts, (str, bytes, _os.PathLike)):
            parts = [parts]
        elif not hasattr(parts, "schema"):  # not one Table or RecordBatch: a list or a generator
            parts = list(parts)
        table = _arrow_table(parts)
        if table is not None:
            import pyarrow.parquet as pq

            path = _os.path.join(tmp, "raw.parquet")
            pq.write_table(table, path)  # keeps encode's footer (schema metadata)
            parts = [path]
        if quantizer is not None and not isinstance(quantizer, Quantizer):
            quantizer = Quantizer.load(quantizer)
        target = _os.path.join(tmp, "sids.parquet") if out is None else _os.fspath(out)
        text = _resolve(
            [_os.fspath(p) for p in parts],
            target,
            dedup,
            _path(existing),
            _path(stats),
            quantizer,
            _path(embeddings),
            _path(config),
            _settings(settings),
        )
        if out is not None:
            return _json.loads(text)
        import pyarrow.parquet as pq

        return pq.read_table(target).combine_chunks()


def _arrow_table(x):
    """`x` as one pyarrow Table when it is Arrow data (a Table, a RecordBatch, or a list of
    them); None when it is a list of paths."""
    try:
        import pyarrow as pa
    except ImportError:
        return None
    if isinstance(x, pa.Table):
        return x
    if isinstance(x, pa.RecordBatch):
        return pa.Table.from_batches([x])
    items = x
    if items and all(isinstance(b, (pa.Table, pa.RecordBatch)) for b in items):
        return pa.concat_tables(b if isinstance(b, pa.Table) else pa.Table.from_batches([b]) for b in items)
    if any(isinstance(b, (pa.Table, pa.RecordBatch)) for b in items):
        raise TypeError("resolve: mix of Arrow data and paths; give one or the other")
    return None


def build(items, out, config=None, settings=None):
    """`sidtool build ITEMS --out OUT`: embeddings (when the items have no vector column),
    quantizer, SIDs and statistics in the directory `out`; returns the statistics."""
    return _json.loads(_sidtool._build(_os.fspath(items), _os.fspath(out), _path(config), _settings(settings)))


def embed(items, out, resume=False, config=None, settings=None):
    """`sidtool embed ITEMS --out OUT`: an embeddings.parquet; returns the run's report."""
    return _json.loads(
        _sidtool._embed_file(_os.fspath(items), _os.fspath(out), resume, _path(config), _settings(settings))
    )


def train(embeddings, out, config=None, settings=None):
    """`sidtool train EMBEDDINGS --out OUT`: trains, saves to `out`, returns the Quantizer."""
    return _sidtool._train(_os.fspath(embeddings), _os.fspath(out), _path(config), _settings(settings))


def assign(embeddings, quantizer, out, stats=None, existing=None, config=None, settings=None):
    """`sidtool assign EMBEDDINGS --quantizer Q --out OUT`: unique SIDs; returns the statistics.
    `quantizer`: a Quantizer or its directory."""
    if not isinstance(quantizer, Quantizer):
        quantizer = Quantizer.load(quantizer)
    text = _sidtool._assign(
        _os.fspath(embeddings),
        quantizer,
        _os.fspath(out),
        _path(stats),
        _path(existing),
        _path(config),
        _settings(settings),
    )
    return _json.loads(text)


def stats(sids, embeddings=None, quantizer=None, config=None, settings=None):
    """`sidtool stats SIDS`: collision and codebook statistics; with `embeddings` and
    `quantizer` (a Quantizer or its directory), the reconstruction error per prefix too."""
    if quantizer is not None and not isinstance(quantizer, Quantizer):
        quantizer = Quantizer.load(quantizer)
    text = _sidtool._stats(_os.fspath(sids), _path(embeddings), quantizer, _path(config), _settings(settings))
    return _json.loads(text)


def vocab(sids, out, llm=None, config=None, settings=None):
    """`sidtool vocab --sids SIDS --out OUT --llm LLM`: the LLM's tokenizer folder with the SID
    tokens added; returns the report (sid_tokens.json)."""
    settings = dict(settings or {})
    if llm is not None:
        settings["vocab"] = {**settings.get("vocab", {}), "llm": _os.fspath(llm)}
    return _json.loads(_sidtool._vocab(_os.fspath(sids), _os.fspath(out), _path(config), _settings(settings)))
