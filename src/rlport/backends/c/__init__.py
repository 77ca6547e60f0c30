"""The C backend: a bundle's whole policy as C99 source, and a runtime that compiles and calls it.

``export.py`` writes ``rlport_policy.h``, ``rlport_policy.c`` and a README (``rlport export
--format c``); ``generate.py`` and ``text.py`` make the source from the graph alone, through
``program.py`` (C types, literals, ``static const`` tensors, static arenas) and one emitter per
op (``ops.py``, ``network.py``, ``heads.py``, ``activations.py``, with the C helpers of
``helpers.py``); ``compiler.py`` builds it into a cached shared library with the system C
compiler; ``runtime.py`` is ``CPolicy`` (``rlport.load(path, backend="c")``), which calls that
library with ctypes.
"""
