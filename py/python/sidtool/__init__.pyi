from os import PathLike
from typing import Any, Sequence, Union

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
        token_format: str = "<{level}_{code}>",
    ) -> pa.RecordBatch:
        """item_id + codes (uint16 per level), no collision resolution; resolvable parts."""
    def decode(self, codes: Sequence[Sequence[int]]) -> pa.FixedSizeListArray:
        """The reconstruction (sum of the codewords) of each row of codes."""

def resolve(
    parts: Union[_Path, Sequence[_Path]],
    out: _Path,
    dedup: str = "suffix",
    existing: Union[_Path, None] = None,
    stats: Union[_Path, None] = None,
    quantizer: Union[Quantizer, None] = None,
) -> dict[str, Any]:
    """Resolve raw-code parts into final IDs, written to `out`; returns the statistics."""
