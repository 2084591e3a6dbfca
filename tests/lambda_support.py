"""A Lambda context for tests, and deployed-like resources for the handler at a moto server."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class FakeLambdaContext:
    """The attributes Powertools and the handler read from a Lambda context."""

    function_name: str = "event-processor"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:event-processor"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/event-processor"
    log_stream_name: str = "2026/11/26/[$LATEST]abcdef"
    timeout_ms: int = 60_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        elapsed_ms = (time.monotonic() - self.started) * 1000
        return max(0, int(self.timeout_ms - elapsed_ms))
