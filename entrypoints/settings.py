"""The service's configuration, read from environment variables (the same for every entrypoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.events import EARLIEST_EVENT_TIME
from domain.limits import utf8_length
from infrastructure.codecs import codec_named
from infrastructure.s3_layout import PREFIX_BYTES


class Settings(BaseSettings):
    """Each field is read from the upper-case environment variable of the same name."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    back_end: Literal["aws", "memory"] = "aws"
    """Where the ports lead: `aws` (DynamoDB, S3, SQS), or `memory`, the in-memory adapters, held
    by the container (local runs, tests and the benchmark; nothing outlives the process)."""
    s3_bucket: str = "event-archive"
    dynamodb_table: str = "event-aggregations"
    dlq_url: str | None = None
    assignments_table: str = "experiment-assignments"
    experiments_table: str = "experiments"
    archive_prefix: str = "events/"
    dead_letter_prefix: str = "dead-letters/"
    """Both at most `s3_layout.PREFIX_BYTES` in UTF-8, so that every key fits in S3's limit."""
    kms_key_id: str | None = None
    """Encrypt archive and dead-letter objects with this KMS key (SSE-KMS); SSE-S3 otherwise."""
    archive_codec: Literal["gzip", "zstd"] = "gzip"
    archive_compression_level: int | None = None
    """Unset: the codec's default (gzip: ISA-L level 2, about a fifth of zlib's CPU; zstd: 3).
    gzip 1-9: zlib at that level, as `gzip -N` (3 was the default before ISA-L; 6-9 for smaller
    objects at 2-6x its CPU). zstd 1-22. Any other value is refused when the settings are read."""
    archive_max_events: int = Field(default=1_000, ge=1)
    archive_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_record_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_nesting_depth: int = Field(default=8, ge=1)
    max_future_skew_seconds: int = Field(default=3_600, ge=0)
    earliest_event_time: AwareDatetime = EARLIEST_EVENT_TIME
    """Events stamped earlier are dead-lettered (`timestamp_out_of_range`). Keep it within the
    archive table's Athena projection (template.yaml, `projection.year.range`)."""
    cache_max_entries: int = Field(default=200_000, ge=0)
    cache_ttl_seconds: float = Field(default=300, ge=0)
    recent_event_ids: int = Field(default=200_000, ge=0)
    event_id_index: Literal["memory", "dynamodb"] = "memory"
    """Where committed event ids are remembered, to drop producer re-sends (the same event id in
    another record): `memory`, the warm container's (forgotten at a cold start); or `dynamodb`,
    also in the aggregation table, which survives cold starts at one write unit per event and a
    BatchGetItem per 100 events the container does not hold (docs/exactly-once.md)."""
    event_id_ttl_days: int = Field(default=7, ge=1)
    """How long the `dynamodb` event-id index keeps an id (the table's TTL removes it after)."""
    telemetry_results_kept: int = Field(default=1_000, ge=1)
    """Without Powertools (operators' tools, local runs, tests), the batch results kept in
    memory for reading back: the most recent ones, so that a long run's memory stays bounded."""
    write_concurrency: int = Field(default=16, ge=1, le=128)
    metrics_stack_name: str | None = None
    """Added to every metric as the `stack` dimension (the template sets its stack name), so
    that one stack's alarms never mix in another's of the same account and region."""
    unique_users: Literal["exact", "sketch"] = "exact"
    """How unique users are counted: `exact`, first-seen markers and stored counts (a
    conditional write per new user and window); `sketch`, a CPC sketch per counter window and
    write shard, unioned by reports (about 1.5% error at the 95th percentile, measured; far
    fewer writes). docs/performance.md, "Unique users: sketch mode"."""
    marker_ttl_days: int | None = Field(default=None, ge=1)
    marker_cache_entries: int = Field(default=500_000, ge=0)
    deadline_margin_ms: int = Field(default=10_000, ge=0)
    aws_max_attempts: int = Field(default=4, ge=1, le=10)
    aws_retry_mode: Literal["standard", "adaptive"] = "standard"
    aws_connect_timeout: float = Field(default=2.0, gt=0)
    aws_read_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _archive_codec_exists(self) -> Settings:
        codec_named(self.archive_codec, self.archive_compression_level)  # raises ValueError
        return self

    @model_validator(mode="after")
    def _prefixes_leave_room_for_keys(self) -> Settings:
        for name in ("archive_prefix", "dead_letter_prefix"):
            size = utf8_length(getattr(self, name))
            if size > PREFIX_BYTES:
                raise ValueError(f"{name} is {size} bytes in UTF-8, limit {PREFIX_BYTES}")
        return self
