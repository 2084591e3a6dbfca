"""Translate botocore failures into the domain's two kinds: retry later, or fail loudly."""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError

TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionConflictException",
        "KMS.ThrottlingException",
    }
)

_TRANSIENT_TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


_DATA_REFUSALS = (
    "Number overflow",
    "Number underflow",
    "significant digits",
    "Item size has exceeded",
    "Item size to update has exceeded",
    "Size of hashkey has exceeded",
    "size of all range keys has exceeded",
)
"""How DynamoDB words a `ValidationException` about the data itself (a number's precision or
range, a key's or an item's size) rather than about the request's shape or the table."""


def is_data_refusal(error: Exception) -> bool:
    """DynamoDB refused the data of this request for good: retrying cannot help, and neither is
    it a configuration error; the records responsible are to be isolated and dead-lettered."""
    if not isinstance(error, ClientError):
        return False
    details = error.response.get("Error", {})
    if details.get("Code") != "ValidationException":
        return False
    message = details.get("Message", "")
    return any(marker.lower() in message.lower() for marker in _DATA_REFUSALS)


def is_transient(error: Exception) -> bool:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_ERROR_CODES or status >= 500
    if isinstance(error, _TRANSIENT_TRANSPORT_ERRORS):
        return True
    if isinstance(error, ParamValidationError):
        return False  # our request is malformed: a programming error, never fixed by waiting
    # Other transport-level botocore failures (e.g. a dropped connection surfacing as a generic
    # HTTP client error) carry no evidence the request was invalid: retrying is the safe side.
    return isinstance(error, BotoCoreError)


def translate(
    error: Exception, operation: str
) -> TransientInfrastructureError | InfrastructureConfigurationError:
    """The domain error for a botocore failure; raise it `from` the original."""
    detail = _detail_of(error)
    if is_transient(error):
        return TransientInfrastructureError(operation, detail)
    return InfrastructureConfigurationError(operation, detail)


_REFUSED_PARAMETER = re.compile(r"^(?P<problem>.+?) for parameter (?P<name>[^\s,]+)", re.MULTILINE)
"""A line of botocore's `ParamValidationError` report, up to the parameter it names (the rest
quotes the value refused)."""


def _detail_of(error: Exception) -> str:
    """What went wrong, in words that hold none of the request's values: the detail ends up in
    the logs (a batch's problems, the traceback of a failed invocation), and botocore's own
    report of a refused parameter quotes its value, which may be a user id or a payload's."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        return f"{code}: {message}" if message else code
    if isinstance(error, ParamValidationError):
        report = str(error.kwargs.get("report", ""))
        refused = [
            f"{m['problem']} for parameter {m['name']}" for m in _REFUSED_PARAMETER.finditer(report)
        ]
        return f"ParamValidationError: {'; '.join(refused) or 'parameter validation failed'}"
    return f"{type(error).__name__}: {error}"
