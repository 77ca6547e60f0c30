"""An allow-list pickle reader: reads the pickles inside SB3 files without ever running their code.

Python's pure-Python unpickler (``pickle._Unpickler``) with ``find_class`` restricted as in the
Python docs' "restricting globals" recipe, and every opcode that calls, builds or fills an object
(REDUCE, NEWOBJ(_EX), INST, OBJ, BUILD, SETITEM(S), APPEND(S), ADDITEMS) re-implemented to touch
only objects rlport made. (The C unpickler cannot be used: its BUILD hands state straight to numpy.)
Nothing is imported. A global resolves to a pure function of rlport's (numpy arrays, scalars and
dtypes rebuilt from raw bytes, object dtypes refused; plain containers) or to a :class:`GlobalRef`,
an inert stand-in for an allowed class whose "instances" are :class:`Instance` records of their
``args`` and BUILD ``state``. Anything else raises :class:`~rlport.errors.UnsafeFileError` naming
the global; damaged data raises :class:`~rlport.errors.BundleError`.

Example:
    >>> space = loads(raw, what="data['observation_space']")   # doctest: +SKIP
    >>> global_name(space), space.attributes()["low"]         # doctest: +SKIP
    ('gym.spaces.box.Box', array([-1., -1.], dtype=float32))
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import re
import struct
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, BinaryIO

import numpy as np

from rlport.errors import BundleError, RlportError, UnsafeFileError
from rlport.readers.untrusted import check_nesting, echo

__all__ = ["loads", "load", "Instance", "GlobalRef", "global_name", "ref", "ALLOWED_SUMMARY"]

ALLOWED_SUMMARY = (
    "numpy arrays/scalars/dtypes, basic containers, gym/gymnasium spaces, numpy random state, "
    "SB3/sb3-contrib policy and layer classes, RunningMeanStd, VecNormalize, torch module/optimizer "
    "classes and torch.device"
)
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError, LookupError, AttributeError,
            ArithmeticError, struct.error, RecursionError, MemoryError)  # fmt: skip


class _Unsafe(Exception):
    """Raised inside the reader; :func:`load` re-raises it as UnsafeFileError naming the file."""


class GlobalRef(type):
    """Metaclass of the inert classes a pickle's globals resolve to; read-only, never imported."""

    global_name: str

    def __setattr__(cls, key: str, value: Any) -> None:
        raise TypeError(f"{cls.global_name} stands in for a class and is read-only")

    def __repr__(cls) -> str:
        return f"<GlobalRef {cls.global_name}>"


class Instance(metaclass=GlobalRef):
    """An inert record of an object a pickle describes: what was called, with what, and its state.

    Attributes:
        global_name: the class or function the pickle names (``"gym.spaces.box.Box"``).
        args: the positional arguments it was called with.
        kwargs: the keyword arguments (NEWOBJ_EX only; usually empty).
        state: what BUILD gave it (usually the object's ``__dict__``), or None.
    """

    global_name = "rlport.readers.safe_pickle.Instance"

    def __new__(cls, *args: Any, **kwargs: Any) -> Instance:
        if cls is Instance:
            raise TypeError("Instance records are made from a GlobalRef")
        self = object.__new__(cls)
        self.args, self.kwargs, self.state = args, kwargs, None
        return self

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def attributes(self) -> dict[str, Any]:
        """The state as one dict (``(dict, slotstate)`` pairs merged); empty when it is not a dict."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            return {**(state[0] or {}), **(state[1] or {})}
        return dict(state) if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"Instance({self.global_name}, args={self.args!r})"


def ref(name: str) -> GlobalRef:
    """A new inert stand-in for the class or function ``name`` (``"module.Name"``)."""
    short = name.rsplit(".", 1)[-1]
    return GlobalRef(short, (Instance,), {"global_name": name, "__qualname__": short, "__module__": __name__})


def _describe(obj: Any) -> str:
    named = global_name(obj) or getattr(obj, "global_name", None)
    return named or (obj.__name__ if isinstance(obj, type) else type(obj).__name__)


def global_name(obj: Any) -> str | None:
    """The dotted name behind a :class:`GlobalRef` or an :class:`Instance`; None for anything else."""
    if isinstance(obj, (GlobalRef, Instance)) and obj is not Instance:
        return obj.global_name
    return None


# globals that may only be passed as arguments, never called
_NDARRAY, _OBJECT = SimpleNamespace(global_name="numpy.ndarray"), SimpleNamespace(global_name="builtins.object")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_DTYPE_SPEC = re.compile(r"[<>|=]?([biufcSUOVMm?])(\d*)")


# ---- numpy, from raw bytes -----------------------------------------------------------------


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for plain type codes only; always a fresh copy."""
    match = _DTYPE_SPEC.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"unsupported numpy dtype spec {spec!r}")
    if match.group(1) == "O":
        raise _Unsafe("refused a numpy object dtype: its elements would be more pickle")
    if match.group(1) in "VMm":
        raise ValueError(f"unsupported numpy dtype {spec!r} (void, datetime)")
    return np.dtype(spec, bool(align), True)


def _set_dtype_state(dtype: np.dtype, state: Any) -> None:
    """BUILD on a dtype: byte order only; sizes and flags must be what numpy itself computes."""
    if not isinstance(state, tuple) or len(state) != 8 or state[0] != 3:
        raise ValueError(f"unexpected numpy dtype state {state!r}")
    order, nested, size_align = state[1], state[2:5], state[5:7]
    if order not in ("<", ">", "|", "=") or nested != (None, None, None):
        raise ValueError("structured or sub-array numpy dtypes are not supported")
    if size_align != dtype.__reduce__()[2][5:7]:
        raise ValueError(f"numpy dtype state {state!r} does not match {dtype}")
    dtype.__setstate__((3, order, None, None, None, *size_align, dtype.flags))


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(v) is int and v >= 0 for v in value):
        raise ValueError(f"bad array shape {value!r}")
    return value


def _raw(data: Any, dtype: np.dtype, count: int) -> bytes:
    if isinstance(dtype, np.dtype) and dtype.hasobject:
        raise _Unsafe("refused a numpy object array: its elements would be more pickle")
    if isinstance(data, str):
        data = data.encode("latin-1")  # Python 2 pickles and encoding='latin1'
    if not isinstance(data, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
        raise _Unsafe("refused a numpy array whose data is not raw bytes")
    if dtype.itemsize == 0:
        raise ValueError(f"numpy dtype {dtype} has no size")
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"numpy data holds {len(data)} bytes, {count} x {dtype} needs {count * dtype.itemsize}")
    return bytes(data)


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct``: an empty array that BUILD fills."""
    if subtype is not _NDARRAY:
        raise _Unsafe(f"refused numpy _reconstruct of {_describe(subtype)}")
    return np.empty((0,), np.uint8)


def _set_array_state(array: np.ndarray, state: Any) -> None:
    """BUILD on an array: ``(version, shape, dtype, is_fortran, rawdata)``, checked before numpy sees it."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise ValueError("unexpected numpy array state")
    shape, dtype, fortran, data = state[-4:]
    shape = _shape(shape)
    data = _raw(data, dtype, math.prod(shape))
    array.__setstate__((1, shape, dtype, bool(fortran), data))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 arrays)."""
    shape = _shape(shape)
    data = _raw(buf, dtype, math.prod(shape))
    if order not in ("C", "F"):
        raise ValueError(f"bad array order {order!r}")
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy(order="K")


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: one numpy scalar."""
    return np.frombuffer(_raw(data, dtype, 1), dtype)[0]


# ---- containers and builtins ---------------------------------------------------------------


def _latin1(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode``: how protocol-2 pickles spell bytes (``encode(str, 'latin1')``)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise _Unsafe(f"refused _codecs.encode with codec {encoding!r}; pickles only use latin1")
    return obj.encode("latin-1")


def _bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol-2 pickles use it: empty, from bytes, or ``(str, 'latin-1')``."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    if len(args) == 2 and isinstance(args[0], str):
        return _latin1(*args)
    raise ValueError("bytes() in a pickle takes bytes or (str, encoding)")


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Instance:
    """``copyreg._reconstructor`` (protocols 0/1): only an allowed class on ``object``."""
    if not isinstance(cls, GlobalRef) or base is not _OBJECT or state is not None:
        raise _Unsafe(f"refused copyreg._reconstructor of {_describe(cls)} on {_describe(base)}")
    return cls.__new__(cls)


_SAFE_TYPES = (dict, list, tuple, set, frozenset, complex, float, slice)
_FUNCTIONS: dict[str, Any] = {
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy.core.multiarray.scalar": _scalar,
    "numpy.core.numeric._frombuffer": _frombuffer,
    "numpy.dtype": _dtype,
    "numpy.ndarray": _NDARRAY,
    "collections.OrderedDict": lambda items=(): dict(items),
    "collections.deque": lambda items=(), maxlen=None: list(items),
    "_codecs.encode": _latin1,
    "copyreg._reconstructor": _reconstructor,
    "builtins.object": _OBJECT,
    "builtins.bytes": _bytes,
    "builtins.bytearray": lambda *args: bytearray(_bytes(*args)),
    **{f"builtins.{t.__name__}": t for t in _SAFE_TYPES},
}
_GYM = r"gym\.spaces\.(?:(?:box\.)?Box|(?:discrete\.)?Discrete|(?:multi_discrete\.)?MultiDiscrete|" \
       r"(?:multi_binary\.)?MultiBinary|(?:dict\.)?Dict|(?:tuple\.)?Tuple)"  # fmt: skip
_REFS = re.compile(
    "|".join(
        [
            _GYM,
            r"numpy\.random\._pickle\.__(?:randomstate|generator|bit_generator)_ctor",
            r"numpy\.random\.__RandomState_ctor",
            r"numpy\.random\.(?:_mt19937\.MT19937|_pcg64\.PCG64(?:DXSM)?|_philox\.Philox|_sfc64\.SFC64)",
            r"numpy\.random\.(?:mtrand\.RandomState|_generator\.Generator)",
            r"numpy\.random\.bit_generator\.(?:SeedSequence|__pyx_unpickle_SeedSequence)",
            r"stable_baselines3\.common\.running_mean_std\.RunningMeanStd",
            r"stable_baselines3\.common\.vec_env\.vec_normalize\.VecNormalize",
            r"(?:stable_baselines3|sb3_contrib)\.(?:\w+\.)*policies\.\w+",
            r"(?:stable_baselines3|sb3_contrib)\.common\.torch_layers\.\w+",
            r"stable_baselines3\.common\.(?:buffers\.\w+|noise\.\w+|type_aliases\.TrainFreq(?:uencyUnit)?)",
            r"stable_baselines3\.her\.her_replay_buffer\.HerReplayBuffer",
            r"torch\.nn\.modules\.\w+\.\w+",
            r"torch\.optim\.(?:\w+\.)?\w+",
            r"torch\.device",
        ]
    )
)


def _extra_summary(extra: Mapping[str, Any]) -> str:
    """What the caller's extra globals add to the allow-list, for a refusal's message."""
    kinds = [("torch.", "torch tensors"), ("stable_baselines.", "SB2 policy, algorithm and noise classes, "
             "TensorFlow activations and cloudpickle function records, all inert")]  # fmt: skip
    return "".join(f", {text}" for prefix, text in kinds if any(name.startswith(prefix) for name in extra))


def _canonical(name: str) -> str:
    """The spelling the allow-list uses: NumPy 1 module names, ``gym`` for ``gymnasium``."""
    name = re.sub(r"^numpy\._core\.", "numpy.core.", name)
    return re.sub(r"^gymnasium\.", "gym.", name)


# ---- the unpickler -------------------------------------------------------------------------


class _SafeUnpickler(pickle._Unpickler):
    """``pickle._Unpickler`` with allow-listed globals and checked REDUCE/BUILD/NEWOBJ/INST/OBJ."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, persistent_load: Callable | None, extra: Mapping[str, Any]) -> None:
        super().__init__(file, encoding="latin1")
        self._persistent = persistent_load
        self._extra = dict(extra)
        self._refs: dict[str, GlobalRef] = {}
        allowed = [*_FUNCTIONS.values(), *self._extra.values()]
        self._callables = {id(f): f for f in allowed if callable(f) and not isinstance(f, GlobalRef)}

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3:  # Python 2 names, as the stock unpickler maps them (__builtin__, copy_reg...)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if not _DOTTED.fullmatch(full):
            raise ValueError(f"a global named {full[:80]!r} (truncated?)")
        if full in self._extra:
            return self._extra[full]
        canonical = _canonical(full)
        if canonical in _FUNCTIONS:
            return _FUNCTIONS[canonical]
        if _REFS.fullmatch(canonical):
            return self._refs.setdefault(full, ref(full))
        raise _Unsafe(f"refused global {full}; rlport never runs code from model files "
                      f"(allowed: {ALLOWED_SUMMARY}{_extra_summary(self._extra)})")  # fmt: skip

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise _Unsafe("refused a persistent id (an external object reference); this pickle may not have one")
        return self._persistent(pid)

    def _call(self, func: Any, args: Any, kwargs: Any = None) -> Any:
        """The one place a pickle calls something: only rlport's functions and GlobalRefs."""
        if not (isinstance(func, GlobalRef) or id(func) in self._callables):
            raise _Unsafe(f"refused to call {_describe(func)}")
        if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
            raise TypeError("call arguments are not a tuple")
        return func(*args, **(kwargs or {}))

    def _line(self) -> str:
        line = self.readline()
        if not line.endswith(b"\n"):
            raise EOFError("a GLOBAL or INST name is cut off")
        return line[:-1].decode("utf-8")

    def _global(self) -> None:  # GLOBAL; INST below: protocol 0 text names, checked whole
        module = self._line()
        self.append(self.find_class(module, self._line()))

    def _inst(self) -> None:
        module = self._line()
        klass = self.find_class(module, self._line())
        self._instantiate(klass, self.pop_mark())

    def _instantiate(self, klass: Any, args: list) -> None:  # INST, OBJ
        self.append(self._call(klass, tuple(args)))

    def _reduce(self) -> None:  # REDUCE and NEWOBJ: ... callable args
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def _newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, kwargs)

    def _build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, Instance):
            target.__setstate__(state)
        elif type(target) is np.ndarray:
            _set_array_state(target, state)
        elif isinstance(target, np.dtype):
            _set_dtype_state(target, state)
        elif type(target) not in (dict, list) or not (state is None or isinstance(state, (dict, tuple))):
            raise _Unsafe(f"refused BUILD on {_describe(target)}")
        # else: an OrderedDict's attributes (torch's _metadata) or a deque's; dropped

    def _pop(self, count: int) -> list:
        items = self.stack[-count:]
        del self.stack[-count:]
        return items

    def _fill(self, kind: type, items: list) -> None:
        """SETITEM(S), APPEND(S), ADDITEMS: only into a dict, list or set the pickle itself made."""
        target = self.stack[-1]
        if type(target) is not kind:
            raise TypeError(f"cannot add items to a {_describe(target)}")
        if kind is dict:
            target.update(zip(items[::2], items[1::2], strict=True))
        elif kind is list:
            target.extend(items)
        else:
            target.update(items)

    def _extension(self) -> None:
        raise _Unsafe("refused an extension-registry opcode (EXT1/EXT2/EXT4): it names a global indirectly")


for _ops, _fn in [
    ((pickle.GLOBAL,), _SafeUnpickler._global),
    ((pickle.INST,), _SafeUnpickler._inst),
    ((pickle.REDUCE, pickle.NEWOBJ), _SafeUnpickler._reduce),
    ((pickle.NEWOBJ_EX,), _SafeUnpickler._newobj_ex),
    ((pickle.BUILD,), _SafeUnpickler._build),
    ((pickle.SETITEM,), lambda self: self._fill(dict, self._pop(2))),
    ((pickle.SETITEMS,), lambda self: self._fill(dict, self.pop_mark())),
    ((pickle.APPEND,), lambda self: self._fill(list, self._pop(1))),
    ((pickle.APPENDS,), lambda self: self._fill(list, self.pop_mark())),
    ((pickle.ADDITEMS,), lambda self: self._fill(set, self.pop_mark())),
    ((pickle.EXT1, pickle.EXT2, pickle.EXT4), _SafeUnpickler._extension),
]:
    _SafeUnpickler.dispatch.update({op[0]: _fn for op in _ops})


def load(
    file: BinaryIO,
    *,
    what: str,
    persistent_load: Callable[[Any], Any] | None = None,
    extra_globals: Mapping[str, Any] | None = None,
) -> Any:
    """Read one pickle from ``file`` (at its current position) without running any of its code.

    Args:
        file: a binary file positioned at the pickle; left just after its STOP opcode.
        what: what the pickle is, for error messages (``"model.zip: data['action_space']"``).
        persistent_load: resolves persistent ids (torch files); without it they are refused.
        extra_globals: more allowed globals, exact name to object (torch's tensor rebuilders).

    Raises:
        UnsafeFileError: the pickle names a refused global or asks for a refused operation.
        BundleError: the pickle is truncated or corrupt.
    """
    unpickler = _SafeUnpickler(file, persistent_load, extra_globals or {})
    try:
        value = unpickler.load()
    except RlportError:
        raise
    except _Unsafe as exc:
        raise UnsafeFileError(f"{what}: {exc}") from None
    except _CORRUPT as exc:
        raise BundleError(f"{what}: truncated or corrupt pickle ({type(exc).__name__}: {echo(str(exc), 200)})") from exc
    check_nesting(value, f"{what}: the pickle", children=_children)
    return value


def _children(value: Any) -> list[Any] | None:
    """What :func:`check_nesting` walks into: containers and the arguments and state of Instance records."""
    if isinstance(value, Instance):
        return [*value.args, *value.kwargs.values(), value.state]
    if isinstance(value, dict):
        return [item for pair in value.items() for item in pair]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return None


def loads(
    data: bytes,
    *,
    what: str,
    persistent_load: Callable[[Any], Any] | None = None,
    extra_globals: Mapping[str, Any] | None = None,
) -> Any:
    """Read a pickle from bytes without running any of its code; see :func:`load`.

    Example:
        >>> loads(pickle.dumps({"a": np.arange(3)}), what="example")
        {'a': array([0, 1, 2])}
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    return load(io.BytesIO(data), what=what, persistent_load=persistent_load, extra_globals=extra_globals)
