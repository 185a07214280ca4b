"""V2 tensor datatypes and their numpy and manifest counterparts.

Binary tensor data is little-endian, so every numeric dtype here is spelled with ``<``.
``BYTES`` has no fixed-size numpy dtype: its elements are Python ``bytes`` in an object array.
``BF16`` is a valid V2 datatype that numpy cannot hold; it is refused by name.
"""

from __future__ import annotations

from typing import Final

import numpy as np

BYTES: Final = "BYTES"

NUMERIC: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
KNOWN: Final = frozenset({*NUMERIC, BYTES, "BF16"})

_FROM_MANIFEST: Final[dict[str, str]] = {
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
}


def from_manifest(dtype: str) -> str:
    """A manifest tensor dtype (``float32``) -> its V2 datatype (``FP32``)."""
    return _FROM_MANIFEST[dtype]


def from_numpy(dtype: np.dtype[np.generic]) -> str:
    if dtype == np.object_ or dtype.kind == "S":
        return BYTES
    for name, candidate in NUMERIC.items():
        if candidate == dtype.newbyteorder("<"):
            return name
    raise ValueError(f"no V2 datatype for numpy dtype {dtype}")


def config_type(datatype: str) -> str:
    """Triton's model-config spelling: ``FP32`` -> ``TYPE_FP32``, ``BYTES`` -> ``TYPE_STRING``."""
    return "TYPE_STRING" if datatype == BYTES else f"TYPE_{datatype}"
