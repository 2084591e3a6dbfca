"""A warm container's candidate memo gives what attributing without it gives, batch after batch,
whatever the caches hand out: the same objects, replaced ones, or only some of them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from domain.archiving import ArchiveLimits
from domain.attribution import CandidateMemo, match_columns
from domain.events import AcceptedColumns, AcceptedEvent
from domain.experiments import Assignment, Experiment, ExperimentStatus
from tests.enriched_events import (
    aggregate,
    attribute_batch,
    build_archive_objects,
    candidates_of_users,
    matches_of_event,
)
from tests.factories import NOW
from tests.unit.test_fast_paths_match_reference import accepted_events, reference_data

_Data = tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]]


@st.composite
def warm_batches(draw: st.DrawFn) -> list[tuple[list[AcceptedEvent], _Data]]:
    """Batches whose reference data is, from one batch to the next, the very same objects,
    copies of them (as after a cache refresh), other statuses, or a subset of them."""
    batches = []
    assignments, experiments = draw(reference_data())
    for _ in range(draw(st.integers(1, 4))):
        change = draw(st.sampled_from(["same", "copied", "status", "subset", "new"]))
        if change == "copied":
            experiments = {k: v.model_copy() for k, v in experiments.items()}
        elif change == "status":
            experiments = {
                k: v.model_copy(
                    update={
                        "status": draw(
                            st.sampled_from([ExperimentStatus.RUNNING, ExperimentStatus.PAUSED])
                        )
                    }
                )
                for k, v in experiments.items()
            }
        elif change == "subset":
            experiments = {k: v for k, v in experiments.items() if draw(st.booleans())}
        elif change == "new":
            assignments, experiments = draw(reference_data())
        batches.append((draw(accepted_events()), (assignments, experiments)))
    return batches


@settings(max_examples=100, deadline=None)
@given(batches=warm_batches())
def test_a_memo_kept_across_batches_attributes_as_no_memo_does(
    batches: list[tuple[list[AcceptedEvent], _Data]],
) -> None:
    memo = CandidateMemo()
    for events, (assignments, experiments) in batches:
        expected = attribute_batch(events, assignments, experiments)
        users = dict.fromkeys(e.event.user_id for e in events)
        experiment_ids = memo.experiment_ids_for(users, assignments)
        assert experiment_ids >= {a.experiment_id for u in users for a in assignments.get(u, ())}
        # As the enricher does: only the experiments the memo asks for are looked up.
        shown = {key: value for key, value in experiments.items() if key in experiment_ids}
        candidates = candidates_of_users(users, assignments, shown, memo, experiment_ids)
        columns = AcceptedColumns.of(events)
        matched = match_columns(columns.events, columns.times_us, candidates)
        assert [matches_of_event(matched, index) for index in range(len(matched))] == [
            tuple(
                (a.experiment_id, a.variant_id, a.time_since_assignment_seconds)
                for a in e.attributions
            )
            for e in expected
        ]
        assert columns.times_us == [e.event_time_us for e in expected]
        assert attribute_batch(events, assignments, experiments, memo) == expected


@settings(max_examples=50, deadline=None)
@given(events=accepted_events(), data=reference_data())
def test_the_accumulators_fed_columns_equal_those_fed_enriched_events(
    events: list[AcceptedEvent], data: _Data
) -> None:
    assignments, experiments = data
    enriched = attribute_batch(events, assignments, experiments)
    users = dict.fromkeys(e.event.user_id for e in events)
    columns = AcceptedColumns.of(events)
    matched = match_columns(
        columns.events,
        columns.times_us,
        candidates_of_users(users, assignments, experiments),
    )

    from_matched = MetricAccumulator()
    from_matched.add_columns(columns, matched.variants)
    assert from_matched.deltas() == aggregate(enriched)

    limits = ArchiveLimits(max_events_per_object=3)
    archive_matched = ArchiveAccumulator(limits)
    archive_matched.add_columns(columns, matched)
    assert archive_matched.objects() == build_archive_objects(enriched, limits)


def test_the_memo_reuses_what_it_prepared_for_equal_objects_that_are_not_the_same() -> None:
    running = Experiment(experiment_id="exp-a", name="a", status=ExperimentStatus.RUNNING)
    assigned = Assignment(
        user_id="u-1", experiment_id="exp-a", variant_id="control", assigned_at=NOW
    )
    memo = CandidateMemo()
    first = memo.candidates_of(["u-1"], {"u-1": (assigned,)}, {"exp-a": running})

    # As after the caches' entries expired and were read again: equal values, new objects.
    again = memo.candidates_of(
        ["u-1"], {"u-1": (assigned.model_copy(),)}, {"exp-a": running.model_copy()}
    )
    paused = memo.candidates_of(
        ["u-1"],
        {"u-1": (assigned.model_copy(),)},
        {"exp-a": running.model_copy(update={"status": ExperimentStatus.PAUSED})},
    )

    assert first["u-1"][0] == (("exp-a", "control"),)
    assert again["u-1"] is first["u-1"]
    assert paused["u-1"][0] == ()
