from os import PathLike
from typing import Any, Sequence, Union, overload

import pyarrow as pa

_Path = Union[str, PathLike[str]]

__version__: str

class SidtoolError(Exception):
    """Bad input (naming the file or batch, column and row), a bad setting, or an unreadable model."""

class Quantizer:
    @staticmethod
    def load(path: _Path) -> Quantizer: ...
    @property
    def info(self) -> dict[str, Any]:
        """method, levels, codebook_sizes, dim, fingerprint, path."""
    def encode(
        self,
        batch: pa.RecordBatch,
        id_column: str = "item_id",
        embedding_column: str = "embedding",
        collab_column: str = "collab_embedding",
        token_format: str = "<{level}_{code}>",
    ) -> pa.RecordBatch:
        """item_id + codes (uint16 per level; GenSAR: + cid_codes), no collision resolution;
        resolvable parts."""
    def decode(self, codes: Sequence[Sequence[int]]) -> pa.FixedSizeListArray:
        """The reconstruction (sum of the codewords) of each row of codes."""

class Embedder:
    def __init__(
        self,
        model: Union[str, None] = None,
        *,
        template: Union[str, None] = None,
        pooling: Union[str, None] = None,
        dim: Union[int, None] = None,
        device: Union[str, None] = None,
        dtype: Union[str, None] = None,
        instruction: Union[str, None] = None,
        max_length: Union[int, None] = None,
        batch_tokens: Union[int, None] = None,
        revision: Union[str, None] = None,
        id_column: str = "item_id",
    ) -> None: ...
    @property
    def info(self) -> dict[str, Any]:
        """model, architecture, hidden_size, dim, pooling, max_length, dtype, device, instruction."""
    def embed(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """item_id + embedding (FixedSizeList<float32>): the vectors `sidtool embed` writes."""

_Settings = Union[dict[str, Any], None]

def build(items: _Path, out: _Path, config: Union[_Path, None] = None, settings: _Settings = None) -> dict[str, Any]: ...
def embed(
    items: _Path, out: _Path, resume: bool = False, config: Union[_Path, None] = None, settings: _Settings = None
) -> dict[str, Any]: ...
def train(embeddings: _Path, out: _Path, config: Union[_Path, None] = None, settings: _Settings = None) -> Quantizer: ...
def assign(
    embeddings: _Path,
    quantizer: Union[Quantizer, _Path],
    out: _Path,
    stats: Union[_Path, None] = None,
    existing: Union[_Path, None] = None,
    config: Union[_Path, None] = None,
    settings: _Settings = None,
) -> dict[str, Any]: ...
def stats(
    sids: _Path,
    embeddings: Union[_Path, None] = None,
    quantizer: Union[Quantizer, _Path, None] = None,
    config: Union[_Path, None] = None,
    settings: _Settings = None,
) -> dict[str, Any]: ...
def vocab(
    sids: _Path, out: _Path, llm: Union[_Path, None] = None, config: Union[_Path, None] = None, settings: _Settings = None
) -> dict[str, Any]: ...

@overload
def resolve(
    parts: Union[_Path, Sequence[_Path], pa.Table, pa.RecordBatch, Sequence[pa.RecordBatch]],
    out: _Path,
    dedup: str = "suffix",
    existing: Union[_Path, None] = None,
    stats: Union[_Path, None] = None,
    quantizer: Union[Quantizer, _Path, None] = None,
    embeddings: Union[_Path, None] = None,
    config: Union[_Path, None] = None,
    settings: _Settings = None,
) -> dict[str, Any]:
    """Resolve raw codes (part files, or encode's batches) into final IDs written to `out`;
    returns the statistics. dedup="reassign" needs `quantizer` and `embeddings` (the vectors the
    parts were coded from)."""
@overload
def resolve(
    parts: Union[_Path, Sequence[_Path], pa.Table, pa.RecordBatch, Sequence[pa.RecordBatch]],
    out: None = None,
    dedup: str = "suffix",
    existing: Union[_Path, None] = None,
    stats: Union[_Path, None] = None,
    quantizer: Union[Quantizer, _Path, None] = None,
    embeddings: Union[_Path, None] = None,
    config: Union[_Path, None] = None,
    settings: _Settings = None,
) -> pa.Table:
    """Without `out`: the final IDs as a pyarrow Table (what `sidtool resolve` writes)."""
