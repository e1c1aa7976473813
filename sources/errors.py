"""Errors a source reports to the graph: each becomes one GraphQL error with a code."""

from __future__ import annotations


class SourceError(Exception):
    """A source could not answer; its fields go null and the error names the code."""

    code = "SOURCE_UNAVAILABLE"

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source} is unavailable")
        self.source = source
        # The detail goes to the log only: it may name hosts or internals.
        self.detail = detail


class SourceUnavailableError(SourceError):
    code = "SOURCE_UNAVAILABLE"


class SourceTimeoutError(SourceError):
    code = "SOURCE_TIMEOUT"

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(source, detail)
        self.args = (f"{source} did not answer in time",)
