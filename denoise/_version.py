"""The package version (one place: pyproject.toml reads it, `denoise.__version__` re-exports it)."""

__version__ = "0.1.0"
