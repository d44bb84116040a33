"""What bench.chaos counts: each request's end, the outcome events expected against those stored, its last line.

Plain data and functions, so the accounting is tested without running a system.

- answered: a reply came. failed: a status came (by gRPC code). hung: nothing came by the deadline
  (the client's own deadline fired, or the call outlived it).
- An outcome event is expected for every request the gateway accepted: each one answered, and each
  one whose id the gateway recorded as seen (it records an id before it starts the request, through
  the same durable spool as outcomes), whatever its end. A request refused before that (the gateway
  down, over its in-flight limit) expects none.
- lost: expected and not stored. duplicate: stored more than once (the extra copies).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

LAST_LINE = re.compile(
    r"^chaos: sent=(\d+) answered=(\d+) failed=(\d+) hung=(\d+) lost_outcomes=(\d+) duplicate_outcomes=(\d+)$"
)
FIELDS = ("sent", "answered", "failed", "hung", "lost_outcomes", "duplicate_outcomes")


@dataclass
class Tally:
    sent: int = 0
    answered: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # request id -> gRPC code name
    hung: set[str] = field(default_factory=set)
    messages: dict[str, Counter[str]] = field(default_factory=dict)  # code -> message -> count
    ends: dict[str, str] = field(default_factory=dict)  # request id -> how it ended, when it did not answer

    def answer(self, request_id: str) -> None:
        self.answered.add(request_id)

    def fail(self, request_id: str, code: str, message: str) -> None:
        self.failed[request_id] = code
        self.messages.setdefault(code, Counter())[_shape(message)] += 1
        self.ends[request_id] = f"{code}: {message}"

    def hang(self, request_id: str, how: str) -> None:
        self.hung.add(request_id)
        self.ends[request_id] = f"hung: {how}"

    def end_of(self, request_id: str) -> str:
        return "answered" if request_id in self.answered else self.ends.get(request_id, "never sent")

    def by_code(self) -> Counter[str]:
        return Counter(self.failed.values())


@dataclass(frozen=True)
class Accounting:
    expected: int
    stored: int
    lost: list[str]
    duplicates: int


def account(tally: Tally, *, seen: set[str], stored: Counter[str]) -> Accounting:
    """Outcome events expected (answered or seen by a gateway) against ``stored`` (events per request id)."""
    sent_ids = tally.answered | set(tally.failed) | tally.hung
    expected = tally.answered | (seen & sent_ids)
    lost = sorted(i for i in expected if stored[i] == 0)
    duplicates = sum(n - 1 for i, n in stored.items() if i in sent_ids and n > 1)
    found = sum(1 for i in expected if stored[i])
    return Accounting(expected=len(expected), stored=found, lost=lost, duplicates=duplicates)


def last_line(tally: Tally, accounting: Accounting) -> str:
    return (
        f"chaos: sent={tally.sent} answered={len(tally.answered)} failed={len(tally.failed)} hung={len(tally.hung)} "
        f"lost_outcomes={len(accounting.lost)} duplicate_outcomes={accounting.duplicates}"
    )


def parse_last_line(text: str) -> dict[str, int]:
    """The figures of a bench.chaos run from its output's last line; ValueError when it is not one."""
    lines = text.strip().splitlines()
    match = LAST_LINE.match(lines[-1].strip()) if lines else None
    if match is None:
        raise ValueError(f"not a bench.chaos summary line: {lines[-1] if lines else ''!r}")
    return dict(zip(FIELDS, map(int, match.groups()), strict=True))


def _shape(message: str) -> str:
    """A failure message with its numbers and ids blanked, so like failures count as one kind."""
    return re.sub(r"\d+(\.\d+)?", "N", message)[:160]
