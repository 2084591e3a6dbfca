"""Defence in depth: one record's data never fails a batch.

When a stage raises on a chunk although the event contract should have refused whatever makes
it raise, the chunk is taken record by record: the records that raise alone become dead letters
(`unprocessable`), the others go on. If no single record raises, the defect is not the data's
and the error is raised again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from application.ports import RecordId
from domain.decoding import decode_record, decode_records
from domain.events import AcceptedColumns, EventLimits
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason


def decode_guarded(
    records: Sequence[RawRecord], positions: Sequence[int], limits: EventLimits, now: datetime
) -> tuple[AcceptedColumns, list[tuple[int, DeadLetter]]]:
    """`decode_records` of the records at `positions`, with the guard: when it raises, the
    records are decoded one by one (see `decode_one_by_one`)."""
    try:
        return decode_records(records, positions, limits, now)
    except Exception as error:  # defence in depth: see decode_one_by_one
        return decode_one_by_one(records, positions, limits, now, error)


def decode_one_by_one(
    records: Sequence[RawRecord],
    positions: Sequence[int],
    limits: EventLimits,
    now: datetime,
    error: Exception,
) -> tuple[AcceptedColumns, list[tuple[int, DeadLetter]]]:
    """`decode_records` record by record, after it raised: a record whose decoding raises is a
    dead letter (`unprocessable`) instead of failing the batch. Decoding never raises for bad
    input by design; if no single record raises, the defect is not the data's."""
    accepted = AcceptedColumns()
    rejected: list[tuple[int, DeadLetter]] = []
    for position in positions:
        record = records[position]
        try:
            outcome = decode_record(record, limits, now)
        except Exception as single:
            outcome = DeadLetter(
                RejectionReason.UNPROCESSABLE,
                f"decode: {type(single).__name__}: {single}",
                record.coordinates,
                record.data,
            )
        if isinstance(outcome, DeadLetter):
            rejected.append((position, outcome))
        else:
            accepted.append(outcome)
    if not any(letter.reason is RejectionReason.UNPROCESSABLE for _, letter in rejected):
        raise error
    return accepted, rejected


def letters_for(
    records: Sequence[RawRecord], why: Mapping[RecordId, str], reason: RejectionReason
) -> list[tuple[int, DeadLetter]]:
    """Dead letters of `reason` for the records named in `why`, with their positions."""
    return [
        (position, DeadLetter(reason, why[where], record.coordinates, record.data))
        for position, record in enumerate(records)
        if (where := (record.coordinates.shard_id, record.sequence)) in why
    ]
