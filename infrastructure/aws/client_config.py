"""botocore settings shared by every client: bounded retries, timeouts, a pool per thread."""

from __future__ import annotations

from typing import Literal

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
