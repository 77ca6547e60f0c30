"""The version of rlport (pyproject.toml's, kept equal by tests/test_assembly.py)."""

__version__ = "0.1.0"
