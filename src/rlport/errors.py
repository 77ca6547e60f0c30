"""The exceptions rlport raises. Every one derives from :class:`RlportError`."""

from __future__ import annotations

__all__ = [
    "short",
    "MAX_MESSAGE",
    "RlportError",
    "BundleError",
    "FormatVersionError",
    "IntegrityError",
    "GraphError",
    "UnsupportedError",
    "SpaceError",
    "ObservationError",
    "MissingDependencyError",
    "EnvError",
    "UnsafeFileError",
    "ActionError",
]


MAX_MESSAGE = 2000
"""The longest message an rlport error carries; longer ones keep their start and end."""


def short(value: object, limit: int = 100) -> str:
    """``repr(value)`` cut to ``limit`` characters: names and values from a file are echoed, never in full.

    Example:
        >>> short("x" * 200, 12)
        "'xxxxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RlportError(Exception):
    """Root of every error rlport raises on purpose. Messages are capped at :data:`MAX_MESSAGE` characters."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and len(args[0]) > MAX_MESSAGE:
            text = args[0]
            args = (f"{text[: MAX_MESSAGE - 400]} [... {len(text) - MAX_MESSAGE + 300} characters cut ...] "
                    f"{text[-100:]}",)  # fmt: skip
        super().__init__(*args)


class BundleError(RlportError):
    """A bundle (or a member of it) is malformed, truncated or not a bundle at all."""


class FormatVersionError(BundleError):
    """The bundle was written by a newer, incompatible format version."""


class IntegrityError(BundleError):
    """A member's bytes do not match the digest recorded for it."""


class GraphError(RlportError):
    """A policy graph is inconsistent: an unknown op, a missing tensor, a wrong shape."""


class UnsupportedError(RlportError):
    """The source model uses something rlport cannot express (yet)."""


class SpaceError(RlportError):
    """A space description is invalid or does not match what it is compared with."""


class ObservationError(RlportError):
    """An observation passed to ``predict`` does not fit the policy's observation space."""


class MissingDependencyError(RlportError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""


class EnvError(RlportError):
    """The environment recorded in a bundle cannot be created here."""


class ActionError(RlportError):
    """The policy produced an action outside its action space or a non-finite one; nothing was returned."""


class UnsafeFileError(RlportError):
    """A model file asks to run code or do something rlport refuses; nothing of it was executed."""


_DISTRIBUTIONS = {"yaml": "PyYAML", "stable_baselines3": "stable-baselines3", "sb3_contrib": "sb3-contrib"}
"""PyPI names of the optional modules whose import name differs."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise :class:`MissingDependencyError`: one line naming the extra.

    Example:
        >>> np = require("numpy", "base", "the runtime")
        >>> try:
        ...     require("onnx_missing", "onnx", "ONNX export")
        ... except MissingDependencyError as exc:
        ...     print(exc)
        ONNX export needs onnx-missing, which is not installed; pip install "rlport[onnx]"
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.split(".")[0]
        package = _DISTRIBUTIONS.get(root, root.replace("_", "-"))
        raise MissingDependencyError(
            f'{feature} needs {package}, which is not installed; pip install "rlport[{extra}]"'
        ) from exc


class RlportWarning(UserWarning):
    """Something rlport did on the user's behalf that they should know about (a renamed env id)."""
