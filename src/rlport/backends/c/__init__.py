"""The C backend: a bundle's whole policy as C99 source, and a runtime that compiles and calls it.

``export.py`` writes ``rlport_policy.h``, ``rlport_policy.c`` and a README (``rlport export
--format c``); ``program.py`` and ``ops.py`` generate the source from the graph alone;
``compiler.py`` builds it into a cached shared library with the system C compiler; ``runtime.py``
is ``CPolicy`` (``rlport.load(path, backend="c")``), which calls that library with ctypes.
"""
