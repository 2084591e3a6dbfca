"""The failures the pipeline distinguishes, named by what the caller must do about them."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class TransientInfrastructureError(PipelineError):
    """A back end refused or did not answer; the same work can succeed later.

    Raised by adapters after their own bounded retries. The use case turns it into a
    partial batch response so that Kinesis redelivers what was not made durable.
    """

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail


class InfrastructureConfigurationError(PipelineError):
    """A back end rejected the request itself: missing table, access denied, bad request.

    Retrying cannot help, so it is never swallowed: it fails the invocation loudly and
    Lambda's bounded retries and on-failure destination take over.
    """

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail
