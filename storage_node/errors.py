"""What a node's store refuses, with the wire error code to answer."""

from __future__ import annotations


class StoreError(Exception):
    """A request the store refuses; ``code`` is one of the wire error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
