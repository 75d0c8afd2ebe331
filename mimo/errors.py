"""Errors that carry what was wrong to whoever asked: the CLI prints them as one line, the server
sends ``field`` in an ``invalid_field`` error (no parsing of message text).

``FieldError`` subclasses ``ValueError`` so that code which catches bad input as ``ValueError``
keeps working; ``str(err)`` is ``"field: message"``.
"""
from __future__ import annotations


class FieldError(ValueError):
    """Bad input in one named field of a job (the wire request's field name, e.g. ``width``,
    ``bodies[0].betas``, ``character``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
