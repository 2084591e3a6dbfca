"""A dead-letter queue in memory."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from application.ports import COMPLETE, DeadLetterQueue, Deadline, WriteReport
from domain.rejections import DeadLetter


class InMemoryDeadLetterQueue(DeadLetterQueue):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._letters: list[DeadLetter] = []

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        if letters and deadline.expired():
            unfinished: dict[str, int] = {}
            for letter in letters:
                shard_id = letter.coordinates.shard_id
                unfinished[shard_id] = min(
                    unfinished.get(shard_id, letter.sequence), letter.sequence
                )
            return WriteReport(unfinished, ("deadline reached while dead-lettering",))
        with self._lock:
            self._letters.extend(letters)
        return COMPLETE

    def letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._letters)
