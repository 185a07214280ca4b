"""What a V2 request declares, bounded before anything is built from it.

Pure checks on the JSON header (before and after parsing it) that keep a request's cost
within ``limits.max_v2_elements``, whatever the model: the commas of the header bound the
numbers its JSON holds before it is parsed; after parsing, each shape's dimensions and their
product over all inputs. The model's own rules (names, datatypes, rows) come next
(:func:`service.v2.binding.check_declared`), then decoding (:mod:`service.v2.codec`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Final

from service.errors import InvalidInput, PayloadTooLarge
from service.v2 import datatypes
from service.v2.schemas import RequestInput

_MAX_DIMS: Final = 16  # more than any model's input has; numpy's own limit is 64
# Commas a JSON header holds besides its numbers: between its keys, inputs and dimensions.
_JSON_STRUCTURE_COMMAS: Final = 4096
InputsCheck = Callable[[Sequence[RequestInput]], None]


def check_commas(commas: int, max_elements: int) -> None:
    if commas > max_elements + _JSON_STRUCTURE_COMMAS:
        raise PayloadTooLarge(
            f"the JSON header holds more than {max_elements} values; the limit "
            f"(limits.max_v2_elements) is {max_elements} tensor elements a request"
        )


def check_shapes(inputs: Sequence[RequestInput], max_elements: int) -> None:
    """Every declared shape within ``max_elements``, each dimension and all inputs together,
    before any array or list is built for it (a shape [0, 2**62] holds no elements but no
    array can take it)."""
    total = 0
    for spec in inputs:
        check_datatype(spec)
        if len(spec.shape) > _MAX_DIMS:
            raise InvalidInput(
                f"input {spec.name!r} has {len(spec.shape)} dimensions; at most {_MAX_DIMS}",
                field=spec.name,
            )
        if any(d > max_elements for d in spec.shape):
            raise PayloadTooLarge(
                f"input {spec.name!r} has shape {_shown(spec.shape)}; no dimension may pass "
                f"limits.max_v2_elements = {max_elements}",
                field=spec.name,
            )
        total += math.prod(spec.shape)
        if total > max_elements:
            raise PayloadTooLarge(
                f"the inputs declare more than {max_elements} tensor elements (input "
                f"{spec.name!r} has shape {_shown(spec.shape)}); the limit is "
                "limits.max_v2_elements",
                field=spec.name,
            )


def check_datatype(spec: RequestInput) -> None:
    if spec.datatype not in datatypes.KNOWN:
        raise InvalidInput(
            f"input {spec.name!r} has unknown datatype {spec.datatype[:32]!r}", field=spec.name
        )
    if spec.datatype == "BF16":
        raise InvalidInput(f"input {spec.name!r}: BF16 tensors are not supported", field=spec.name)


def _shown(shape: Sequence[int]) -> str:
    text = str(list(shape))
    return text if len(text) <= 80 else text[:77] + "..."
