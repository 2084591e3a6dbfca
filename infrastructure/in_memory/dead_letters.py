"""A dead-letter queue in memory: letters sent by the pipeline (`DeadLetterQueue`), held and
removed by erasure (`DeadLetterBacklog`) with SQS's receipt-handle rules."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Sequence

from application.ports import (
    COMPLETE,
    DeadLetterBacklog,
    DeadLetterQueue,
    Deadline,
    HeldDeadLetter,
    WriteReport,
)
from application.shard_cut import ShardCut
from domain.errors import InfrastructureConfigurationError
from domain.rejections import DeadLetter


class InMemoryDeadLetterQueue(DeadLetterQueue, DeadLetterBacklog):
    """A held letter is invisible to `hold` until removed or released; a handle that is not
    (or no longer) held is refused, as SQS refuses it (ReceiptHandleIsInvalid)."""

    name = "queue"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._letters: dict[int, DeadLetter] = {}
        self._ids = itertools.count()
        self._held: dict[str, int] = {}
        self._handles = itertools.count()

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        if letters and deadline.expired():
            unfinished = ShardCut.of(
                (letter.coordinates.shard_id, letter.sequence) for letter in letters
            )
            return WriteReport(unfinished, ("deadline reached while dead-lettering",))
        with self._lock:
            for letter in letters:
                self._letters[next(self._ids)] = letter
        return COMPLETE

    def letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._letters.values())

    # -- DeadLetterBacklog ---------------------------------------------------------------------

    def hold(self) -> list[HeldDeadLetter]:
        with self._lock:
            taken = set(self._held.values())
            held = []
            for letter_id, letter in self._letters.items():
                if letter_id in taken:
                    continue
                handle = f"handle-{next(self._handles)}"
                self._held[handle] = letter_id
                held.append(HeldDeadLetter(handle, letter))
            return held

    def remove(self, handles: Collection[str]) -> None:
        with self._lock:
            self._check(handles)
            for handle in handles:
                self._letters.pop(self._held.pop(handle), None)

    def release(self, handles: Collection[str]) -> None:
        with self._lock:
            self._check(handles)
            for handle in handles:
                del self._held[handle]

    def _check(self, handles: Collection[str]) -> None:
        unknown = [handle for handle in handles if handle not in self._held]
        if unknown:
            raise InfrastructureConfigurationError(
                "sqs:DeleteMessageBatch", f"ReceiptHandleIsInvalid: {unknown[0]!r}"
            )
