"""The erasure use case: remove every trace of some users, leaving the counters as they are.

Order matters for resuming (docs/cli.md, `forget-user`): the archive is the only place that says
which markers a user's events wrote, so it is read first and rewritten last. In between, the
table items are deleted, then the dead letters. A run interrupted anywhere leaves the user's
lines in the archive until their other traces are gone, and a second run finds what is left
from them; what was already deleted is simply not found again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from application.ports import (
    ArchiveEditor,
    ArchiveObjectLines,
    DeadLetterBacklog,
    HeldDeadLetter,
    PersonalItemStore,
)
from domain.erasure import (
    ArchivedEvent,
    EventIdItem,
    PersonalItem,
    ReplayClaimItem,
    UniqueUserMarker,
    UnreadableArchiveLineError,
    archived_event,
    items_of_events,
    letter_owner,
)
from domain.errors import ArchiveObjectChangedError

SUBSTRING_FILTER_USERS = 16
"""Up to this many users, an object whose bytes hold none of their ids (and no JSON escape,
which could spell an id otherwise) is skipped without parsing its lines."""

ARCHIVE_WRITE_ATTEMPTS = 5
"""How many times an archive object is written, each from a fresh reading, while other writers
(another erasure) keep changing it between our reading and our write."""


class Erased(StrEnum):
    """What erasure removes, one count each in the report."""

    UNIQUE_USER_MARKERS = "unique_user_markers"
    EVENT_ID_ITEMS = "event_id_items"
    REPLAY_CLAIMS = "replay_claims"
    DEAD_LETTERS = "dead_letters"
    ARCHIVE_LINES = "archive_lines"
    ARCHIVE_OBJECTS_REWRITTEN = "archive_objects_rewritten"
    ARCHIVE_OBJECTS_DELETED = "archive_objects_deleted"


def _kind(item: PersonalItem) -> Erased:
    if isinstance(item, UniqueUserMarker):
        return Erased.UNIQUE_USER_MARKERS
    if isinstance(item, EventIdItem):
        return Erased.EVENT_ID_ITEMS
    assert isinstance(item, ReplayClaimItem)
    return Erased.REPLAY_CLAIMS


@dataclass(slots=True)
class ErasureReport:
    """What a run erased (or, dry, would erase), and what it read to find it."""

    users: int
    dry_run: bool
    erased: Counter[str] = field(default_factory=Counter)
    dead_letters_by_backlog: Counter[str] = field(default_factory=Counter)
    archive_objects_read: int = 0
    archive_lines_read: int = 0
    dead_letters_read: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)
    """Archive lines and dead letters whose owner cannot be told: kept, and counted here."""

    @property
    def touched(self) -> bool:
        return any(self.erased.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "users": self.users,
            "dry_run": self.dry_run,
            "erased": {kind.value: self.erased.get(kind.value, 0) for kind in Erased},
            "dead_letters_by_backlog": dict(sorted(self.dead_letters_by_backlog.items())),
            "read": {
                "archive_objects": self.archive_objects_read,
                "archive_lines": self.archive_lines_read,
                "dead_letters": self.dead_letters_read,
            },
            "unreadable": dict(sorted(self.unreadable.items())),
            "touched_anything": self.touched,
        }


@dataclass(frozen=True, slots=True)
class _ObjectEdit:
    key: str
    version: str
    kept: tuple[bytes, ...]
    removed: int


class UserEraser:
    """Erases users' unique-user markers, event-id items, replay claims, dead letters and
    archive lines. Counters (event counts, sums) are aggregates and are not touched.

    `backlogs` are read and trimmed in order: a queue before the S3 objects its messages may
    point to, so that no message is left pointing to a deleted body.
    """

    def __init__(
        self,
        items: PersonalItemStore,
        archive: ArchiveEditor,
        backlogs: Sequence[DeadLetterBacklog],
        on_progress: Callable[[str], None] = lambda stage: None,
    ) -> None:
        self._items = items
        self._archive = archive
        self._backlogs = backlogs
        self._on_progress = on_progress

    def erase(self, user_ids: Collection[str], dry_run: bool = False) -> ErasureReport:
        users = frozenset(user_ids)
        if not users or "" in users:
            raise ValueError("user ids must be non-empty")
        report = ErasureReport(len(users), dry_run)

        self._on_progress("reading the archive")
        edits, events = self._find_lines(users, report)

        held: list[list[HeldDeadLetter]] = []
        removed: list[set[str]] = []
        try:
            letter_event_ids = self._hold_letters(users, held, removed, report)
            self._on_progress("erasing table items")
            present = self._items.present(items_of_events(events, letter_event_ids))
            report.erased.update(Counter(_kind(item).value for item in present))
            if not dry_run and present:
                self._items.delete(present)
            self._remove_letters(users, held, removed, report)
        finally:
            # Letters not removed are given back at once, whatever happened meanwhile.
            for backlog, letters, gone in zip(self._backlogs, held, removed, strict=False):
                others = [letter.handle for letter in letters if letter.handle not in gone]
                if others:
                    backlog.release(others)

        self._rewrite_archive(users, edits, report)
        return report

    def _hold_letters(
        self,
        users: frozenset[str],
        held: list[list[HeldDeadLetter]],
        removed: list[set[str]],
        report: ErasureReport,
    ) -> set[str]:
        """Hold every backlog's letters (appended to `held`, with an empty set of removed
        handles each); the event ids of the users' letters."""
        event_ids: set[str] = set()
        for backlog in self._backlogs:
            self._on_progress(f"reading {backlog.name}")
            letters = backlog.hold()
            held.append(letters)
            removed.append(set())
            report.dead_letters_read += len(letters)
            for letter in letters:
                if letter.letter is None:
                    report.unreadable[f"{backlog.name}"] += 1
                    continue
                owner = letter_owner(letter.letter)
                if owner.is_of(users) and owner.event_id is not None:
                    event_ids.add(owner.event_id)
        return event_ids

    def _remove_letters(
        self,
        users: frozenset[str],
        held: Sequence[list[HeldDeadLetter]],
        removed: Sequence[set[str]],
        report: ErasureReport,
    ) -> None:
        """Remove the users' held letters from each backlog (none in a dry run)."""
        for index, backlog in enumerate(self._backlogs):
            mine = [
                letter.handle
                for letter in held[index]
                if letter.letter is not None and letter_owner(letter.letter).is_of(users)
            ]
            report.erased[Erased.DEAD_LETTERS.value] += len(mine)
            report.dead_letters_by_backlog[backlog.name] += len(mine)
            if not report.dry_run and mine:
                self._on_progress(f"erasing {backlog.name}")
                backlog.remove(mine)
                removed[index].update(mine)

    def _rewrite_archive(
        self, users: frozenset[str], edits: Sequence[_ObjectEdit], report: ErasureReport
    ) -> None:
        """Write each edited archive object without the users' lines (none in a dry run)."""
        for planned in edits:
            if report.dry_run:
                _count_edit(planned, report)
                continue
            self._on_progress(f"rewriting {planned.key}")
            written = self._write_edit(users, planned)
            if written is not None:
                _count_edit(written, report)

    def _write_edit(self, users: frozenset[str], edit: _ObjectEdit) -> _ObjectEdit | None:
        """Write the edit, conditional on the version it was made from. When the object changed
        meanwhile (another erasure rewrote it), a write from the old reading would bring back
        what that erasure removed: read it again and redo the edit on what it holds now. The
        edit written, or None when the users' lines are gone already."""
        for _ in range(ARCHIVE_WRITE_ATTEMPTS):
            try:
                # The new object replaces the old one in one write: the lines are never lost twice.
                if edit.kept:
                    self._archive.replace(edit.key, edit.kept, edit.version)
                else:
                    self._archive.delete(edit.key, edit.version)
            except ArchiveObjectChangedError:
                again = _edit_of(edit.key, self._archive.read_lines(edit.key), users)
                if again.removed == 0:
                    return None
                edit = again
                continue
            return edit
        raise ArchiveObjectChangedError(
            edit.key,
            f"changed by another writer each of {ARCHIVE_WRITE_ATTEMPTS} times it was rewritten;"
            " its lines of these users are still there: run the erasure again",
        )

    def _find_lines(
        self, users: frozenset[str], report: ErasureReport
    ) -> tuple[list[_ObjectEdit], list[ArchivedEvent]]:
        """Every archive object holding a line of `users`, with the lines to keep; and the
        users' archived events."""
        needles = (
            [user.encode() for user in users] if len(users) <= SUBSTRING_FILTER_USERS else None
        )
        edits: list[_ObjectEdit] = []
        events: list[ArchivedEvent] = []
        for key in self._archive.object_keys():
            read = self._archive.read_lines(key)
            report.archive_objects_read += 1
            report.archive_lines_read += len(read.lines)
            if needles is not None and not _may_name(read.lines, needles):
                continue
            edit = _edit_of(key, read, users, events, report)
            if edit.removed:
                edits.append(edit)
        return edits, events


def _edit_of(
    key: str,
    read: ArchiveObjectLines,
    users: frozenset[str],
    events: list[ArchivedEvent] | None = None,
    report: ErasureReport | None = None,
) -> _ObjectEdit:
    """The object's lines to keep: all but the users'. Their events are appended to `events`,
    and unreadable lines (kept) counted in `report`, when given."""
    kept: list[bytes] = []
    removed = 0
    for line in read.lines:
        try:
            event = archived_event(line)
        except UnreadableArchiveLineError:
            if report is not None:
                report.unreadable["archive_lines"] += 1
            kept.append(line)
            continue
        if event.user_id in users:
            if events is not None:
                events.append(event)
            removed += 1
        else:
            kept.append(line)
    return _ObjectEdit(key, read.version, tuple(kept), removed)


def _count_edit(edit: _ObjectEdit, report: ErasureReport) -> None:
    report.erased[Erased.ARCHIVE_LINES.value] += edit.removed
    if edit.kept:
        report.erased[Erased.ARCHIVE_OBJECTS_REWRITTEN.value] += 1
    else:
        report.erased[Erased.ARCHIVE_OBJECTS_DELETED.value] += 1


def _may_name(lines: Sequence[bytes], needles: Sequence[bytes]) -> bool:
    """Whether these lines could hold one of the ids: one occurs in them as it is, or a
    backslash occurs (a JSON escape can spell any character of an id)."""
    return any(b"\\" in line or any(needle in line for needle in needles) for line in lines)
