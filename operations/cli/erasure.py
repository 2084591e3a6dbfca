"""The `forget-user` command's input and output: the ids to erase, and what was erased."""

from __future__ import annotations

from pathlib import Path

from application.erasure import Erased, ErasureReport

LABELS = {
    Erased.UNIQUE_USER_MARKERS: "unique-user markers",
    Erased.EVENT_ID_ITEMS: "event-id items",
    Erased.REPLAY_CLAIMS: "replay claims",
    Erased.DEAD_LETTERS: "dead letters",
    Erased.ARCHIVE_LINES: "archive lines",
    Erased.ARCHIVE_OBJECTS_REWRITTEN: "archive objects rewritten",
    Erased.ARCHIVE_OBJECTS_DELETED: "archive objects deleted",
}


class IdFileError(ValueError):
    """An ids file that cannot be used (unreadable, or naming nobody)."""


def read_user_ids(path: Path) -> list[str]:
    """One user id a line; blank lines are skipped, each id kept once, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise IdFileError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise IdFileError(f"{path} is not UTF-8 text") from None
    ids = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not ids:
        raise IdFileError(f"{path} names no user id")
    return ids


def report_lines(report: ErasureReport) -> list[str]:
    """The report as a table of lines: what was (or would be) erased, kind by kind, then what
    was read to find it."""
    users = f"{report.users} user{'s' if report.users != 1 else ''}"
    heading = "would erase" if report.dry_run else "erased"
    lines = [f"{heading} (dry run, nothing written)" if report.dry_run else heading]
    width = max(len(label) for label in LABELS.values())
    for kind, label in LABELS.items():
        lines.append(f"  {label:<{width}}  {report.erased.get(kind.value, 0):>8,}")
        if kind is Erased.DEAD_LETTERS:
            for backlog, count in sorted(report.dead_letters_by_backlog.items()):
                lines.append(f"    {'in ' + backlog:<{width - 2}}  {count:>8,}")
    lines.append(
        f"read {report.archive_objects_read:,} archive objects "
        f"({report.archive_lines_read:,} lines) and {report.dead_letters_read:,} dead letters "
        f"for {users}"
    )
    for what, count in sorted(report.unreadable.items()):
        lines.append(f"kept {count:,} unreadable {what.replace('_', ' ')} (owner unknown)")
    if not report.touched:
        lines.append(
            "nothing to erase: none of these users' data is stored (already erased, or never seen)"
        )
    return lines
