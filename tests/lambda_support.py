"""A Lambda context for tests: the emulator's, for an invocation starting now."""

from __future__ import annotations

from operations.event_source_emulator import EmulatedLambdaContext, lambda_context


def fresh_context(timeout_ms: int = 60_000) -> EmulatedLambdaContext:
    return lambda_context(timeout_seconds=timeout_ms / 1000)
