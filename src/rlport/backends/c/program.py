"""The pieces a C program is assembled from: C types, literals, constant pools, static arenas, uniforms.

A :class:`Program` collects, for one or both acting modes, the lines of the run function, the
``static const`` tensors, the helper functions and the static scratch arenas (one per C type,
sized at export by a first-fit allocation over the values' lifetimes). Every symbol records the
modes that use it, so that the sampling path can be compiled out (``RLPORT_DETERMINISTIC_ONLY``)
without leaving an unused symbol behind (``-Wall -Werror``). Names from the bundle never reach
the source: values, tensors and inputs are numbered (``v3``, ``c7``, ``obs0``). Needs numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rlport.errors import UnsupportedError

__all__ = ["CTYPES", "Arena", "Program", "Ref", "ctype_of", "literal", "string_literal"]

CTYPES: dict[str, str] = {
    "float32": "float",
    "float64": "double",
    "bool": "unsigned char",
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "uint8": "uint8_t",
    "uint16": "uint16_t",
    "uint32": "uint32_t",
    "uint64": "uint64_t",
}
"""The dtypes a value of an exported graph may have, and their C99 types."""

FLOAT_CTYPES = ("float", "double")
_SHORT = {"float": "f", "double": "d", "unsigned char": "b"}
_PER_LINE = 8


def ctype_of(dtype: np.dtype | str) -> str:
    """The C type of a numpy dtype, or :class:`UnsupportedError` (float16 values, say)."""
    name = str(np.dtype(dtype))
    if name not in CTYPES:
        raise UnsupportedError(
            f"the C export has no C type for values of dtype {name}; supported: {', '.join(CTYPES)}. "
            "Use another backend (numpy, onnx) for this bundle"
        )
    return CTYPES[name]


def short_name(ctype: str) -> str:
    """A suffix for symbols of this C type: ``f`` (float), ``d`` (double), ``i64`` (int64_t) ..."""
    return _SHORT.get(ctype, ctype.replace("_t", "").replace("int", "i"))


def literal(value: float, ctype: str) -> str:
    """``value`` rounded to ``ctype`` as a C literal: ``0.5f``, ``-INFINITY``, ``(double)NAN``, ``3``."""
    if ctype not in FLOAT_CTYPES:
        return str(int(value)) + ("LL" if "64" in ctype else "")
    rounded = float(np.float32(value)) if ctype == "float" else float(value)
    if math.isnan(rounded):
        return f"(({ctype})NAN)"
    if math.isinf(rounded):
        return f"(({ctype})(INFINITY))" if rounded > 0 else f"(-({ctype})(INFINITY))"
    text = f"{rounded:.9g}" if ctype == "float" else f"{rounded:.17g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + ("f" if ctype == "float" else "")


def _literals(flat: np.ndarray, ctype: str) -> list[str]:
    """:func:`literal` of every element, formatted in one pass when they are all finite floats (large weights)."""
    if ctype not in FLOAT_CTYPES or not np.isfinite(flat).all():
        return [literal(v, ctype) for v in flat.tolist()]
    if ctype == "float":
        texts = [f"{v:.9g}" for v in flat.astype(np.float32).astype(np.float64).tolist()]
    else:
        texts = [f"{v:.17g}" for v in flat.astype(np.float64).tolist()]
    suffix = "f" if ctype == "float" else ""
    return [(t if "." in t or "e" in t else t + ".0") + suffix for t in texts]


def string_literal(text: str) -> str:
    """``text`` as a C string literal in which every byte but letters, digits, ``_`` and ``.`` is an octal escape."""
    safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."
    return '"' + "".join(chr(b) if chr(b) in safe else f"\\{b:03o}" for b in text.encode("utf-8")) + '"'


@dataclass(frozen=True)
class Ref:
    """A graph value in the generated code: a pointer expression to its elements (one batch row)."""

    expr: str
    ctype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class Arena:
    """First-fit allocation of element ranges of one static array (one per C type)."""

    def __init__(self) -> None:
        self.size = 0
        self._free: list[tuple[int, int]] = []  # (offset, length), sorted by offset

    def alloc(self, length: int) -> int:
        for k, (offset, free) in enumerate(self._free):
            if free >= length:
                self._free[k : k + 1] = [(offset + length, free - length)] if free > length else []
                return offset
        if self._free and self._free[-1][0] + self._free[-1][1] == self.size:  # grow the free tail
            offset = self._free.pop()[0]
        else:
            offset = self.size
        self.size = offset + length
        return offset

    def release(self, offset: int, length: int) -> None:
        blocks = sorted([*self._free, (offset, length)])
        merged: list[tuple[int, int]] = []
        for start, n in blocks:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((start, n))
        self._free = merged


@dataclass
class _Symbol:
    text: str
    modes: set[bool] = field(default_factory=set)


class Program:
    """What one export's C source is made of; emitters add to it through these methods.

    Attributes:
        deterministic: the mode whose run function is being emitted.
        lines: that function's body.
        uniforms: how many uniform numbers the sampled run function reads per call.
    """

    def __init__(self) -> None:
        self.deterministic = True
        self.lines: list[str] = []
        self.uniforms = 0
        self._consts: dict[tuple, str] = {}
        self._symbols: dict[str, _Symbol] = {}  # consts and helpers, in order of first use
        self._arenas: dict[bool, dict[str, Arena]] = {True: {}, False: {}}
        self._temps: list[tuple[str, int, int]] = []

    # ---- what emitters call ---------------------------------------------------------------

    def line(self, text: str) -> None:
        self.lines.append("    " + text)

    def const(self, array: np.ndarray, ctype: str) -> str:
        """A ``static const`` array holding ``array`` (flattened, converted to ``ctype``); equal arrays share one."""
        flat = np.ascontiguousarray(np.asarray(array).reshape(-1))
        key = (ctype, flat.dtype.str, flat.shape, flat.tobytes())
        name = self._consts.get(key)
        if name is None:
            name = self._consts[key] = f"c{len(self._consts)}"
            values = _literals(flat, ctype)
            rows = [", ".join(values[k : k + _PER_LINE]) for k in range(0, len(values), _PER_LINE)]
            body = ",\n    ".join(rows)
            self._symbols[name] = _Symbol(f"static const {ctype} {name}[{max(len(values), 1)}] = {{\n    {body}\n}};")
        self._symbols[name].modes.add(self.deterministic)
        return name

    def helper(self, name: str, text: str) -> str:
        """Define the helper function ``name`` (once) and return its name."""
        self._symbols.setdefault(name, _Symbol(text)).modes.add(self.deterministic)
        return name

    def temp(self, ctype: str, length: int) -> str:
        """Scratch for the node being emitted: a pointer expression, released after the node."""
        offset = self.arena(ctype).alloc(length)
        self._temps.append((ctype, offset, length))
        return self.arena_expr(ctype, offset)

    def take_uniforms(self, count: int) -> str:
        """The next ``count`` uniform numbers in [0, 1) of the sampled run: a pointer expression."""
        offset, self.uniforms = self.uniforms, self.uniforms + count
        return f"uniforms + {offset}"

    def converted(self, ref: Ref, ctype: str) -> Ref:
        """``ref`` in ``ctype``: itself, or a temporary copy converted element by element."""
        if ref.ctype == ctype:
            return ref
        expr = self.temp(ctype, ref.size)
        self.line(f"for (long i = 0; i < {ref.size}; ++i) ({expr})[i] = ({ctype})({ref.expr})[i];")
        return Ref(f"({expr})", ctype, ref.shape)

    # ---- what the generator calls ----------------------------------------------------------

    def arena(self, ctype: str) -> Arena:
        return self._arenas[self.deterministic].setdefault(ctype, Arena())

    def arena_expr(self, ctype: str, offset: int) -> str:
        self.arena(ctype)
        return f"rl_{short_name(ctype)}_arena + {offset}"

    def end_node(self) -> None:
        for ctype, offset, length in self._temps:
            self.arena(ctype).release(offset, length)
        self._temps.clear()

    def arena_sizes(self) -> dict[str, dict[bool, int]]:
        """Per C type, the elements each mode needs."""
        sizes: dict[str, dict[bool, int]] = {}
        for mode, arenas in self._arenas.items():
            for ctype, arena in arenas.items():
                sizes.setdefault(ctype, {})[mode] = max(arena.size, 1)
        return sizes

    def symbols(self, deterministic_too: bool) -> list[str]:
        """The definitions used by the deterministic run (``True``) or only by the sampled one (``False``)."""
        return [s.text for s in self._symbols.values() if (True in s.modes) == deterministic_too]
