"""The one error the invitation engine raises for input it cannot work with."""

from __future__ import annotations


class EngineError(ValueError):
    """The engine cannot do what was asked with this input."""
