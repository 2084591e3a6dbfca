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


class ArchiveObjectChangedError(PipelineError):
    """An archive object was written or deleted by someone else since it was read: a write
    made from that reading would undo theirs, so it is refused (S3's 412 PreconditionFailed).

    Not transient: the same write can never succeed; the object is to be read again and the
    edit redone on what it now holds.
    """

    def __init__(self, key: str, detail: str = "changed since it was read") -> None:
        super().__init__(f"archive object {key}: {detail}")
        self.key = key
        self.detail = detail
