"""The future-timestamp rule, decided in integer microseconds, is the comparison of instants."""

from __future__ import annotations

from datetime import timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.rejections import DeadLetter, RejectionReason
from tests.factories import NOW, event_payload, record_of

ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(-2, 2).map(lambda micros: timedelta(microseconds=micros)),
    skew_seconds=st.integers(0, 7_200),
    zone=ZONES,
)
def test_an_event_is_refused_exactly_when_it_is_later_than_now_plus_the_skew(
    offset: timedelta, skew_seconds: int, zone: timezone
) -> None:
    limits = EventLimits(max_future_skew=timedelta(seconds=skew_seconds))
    moment = (NOW + limits.max_future_skew + offset).astimezone(zone)
    outcome = decode_record(record_of(event_payload(timestamp=moment.isoformat())), limits, NOW)
    if moment > NOW + limits.max_future_skew:
        assert isinstance(outcome, DeadLetter)
        assert outcome.reason is RejectionReason.FUTURE_TIMESTAMP
    else:
        assert isinstance(outcome, AcceptedEvent)
        assert (
            outcome.event_time_us
            == (moment - NOW) // timedelta(microseconds=1) + int(NOW.timestamp()) * 1_000_000
        )
