"""botocore settings shared by every client: bounded retries, timeouts, a pool per thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from botocore.client import BaseClient
from botocore.config import Config

RetryMode = Literal["legacy", "standard", "adaptive"]


def client_config(
    max_pool_connections: int = 32,
    max_attempts: int = 4,
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    retry_mode: RetryMode = "standard",
) -> Config:
    """Standard retry mode retries throttling, 5xx and transport errors with jittered backoff,
    at most `max_attempts` tries in all; the adapters then report what still failed."""
    return Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        tcp_keepalive=True,
    )


def refund_retry_quota_on_answers(client: BaseClient, expected_codes: frozenset[str]) -> bool:
    """Count the service's expected refusals (e.g. DynamoDB's `ConditionalCheckFailedException`,
    the exactly-once protocol's normal answer to a redelivery) as answers for botocore's retry
    quota, as it counts a 2xx.

    Standard and adaptive retry modes keep a quota per client (500 tokens; a retry costs 5 for
    throttling, 14 otherwise) that only a 2xx response refunds. A retried update whose first
    response was lost, answered 400 ConditionalCheckFailed on the retry, never gives its tokens
    back: under sustained faults a warm container runs out of retries and every fault then
    reaches the pipeline. The quota has no public hook, so this reads botocore's own handler
    (`retry-config-<service>`); when a botocore release no longer has it, nothing is attached
    and False is returned (the adapters then work as before, with the quota as botocore keeps
    it; a unit test pins the behaviour for the version installed)."""
    service = client.meta.service_model.service_id.hyphenize()
    checker = _retry_quota_checker(client, service)
    if checker is None:
        return False
    quota = getattr(checker, "_quota", None)
    no_retry_increment = getattr(checker, "_NO_RETRY_INCREMENT", None)
    if quota is None or not isinstance(no_retry_increment, int):
        return False

    def refund(
        http_response: object, parsed: Mapping[str, Any], context: Mapping[str, Any], **_: object
    ) -> None:
        if getattr(http_response, "status_code", None) != _BAD_REQUEST:
            return
        if parsed.get("Error", {}).get("Code") in expected_codes:
            quota.release(context.get("retry_quota_capacity", no_retry_increment))

    client.meta.events.register(f"after-call.{service}", refund)
    return True


_BAD_REQUEST = 400


def _retry_quota_checker(client: BaseClient, service: str) -> object | None:
    emitter = getattr(client.meta.events, "_emitter", None)
    handlers = getattr(emitter, "_unique_id_handlers", {})
    entry = handlers.get(f"retry-config-{service}")
    handler = entry.get("handler") if isinstance(entry, dict) else None
    retry_handler = getattr(handler, "__self__", None)
    return getattr(retry_handler, "_retry_quota", None)
