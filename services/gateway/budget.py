"""Per-tenant large-tier budgets (``gateway.budgets``), counted in memory by each gateway process.

A tenant's window holds one entry per finished request: whether it used the large tier and what
the large tier cost. Several gateway processes each enforce the budget on their own traffic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.core.settings import BudgetSettings


@dataclass(frozen=True, slots=True)
class Spent:
    """A budget the tenant has used up: why, and what to do about it ("small" or "fail")."""

    message: str
    on_exceeded: str


@dataclass(frozen=True, slots=True)
class _Use:
    at: float
    large: bool
    usd: float


class Budgets:
    def __init__(self, budgets: Mapping[str, BudgetSettings], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._budgets, self._clock = dict(budgets), clock
        self._uses: dict[str, deque[_Use]] = {}

    def _budget(self, tenant: str) -> BudgetSettings | None:
        return self._budgets.get(tenant, self._budgets.get("*"))

    def spent(self, tenant: str) -> Spent | None:
        """The tenant's used-up budget when one more request may not use the large tier, else None."""
        budget = self._budget(tenant)
        if budget is None:
            return None
        uses = self._window(tenant, budget)
        large = sum(u.large for u in uses)
        usd = sum(u.usd for u in uses)
        name = f"tenant {tenant or '(none)'!r}" + (" (budget '*')" if tenant not in self._budgets else "")
        window = f"in the last {budget.window_s:g}s"
        # A share needs a request count; the first request of a window is never refused by share alone.
        if budget.max_large_share is not None and large >= budget.max_large_share * max(len(uses), 1):
            share = large / max(len(uses), 1)
            return Spent(
                f"large-tier budget of {name} spent: share {share:.2f} of max_large_share "
                f"{budget.max_large_share:g} {window}",
                budget.on_exceeded,
            )
        if budget.max_large_usd is not None and usd >= budget.max_large_usd:
            return Spent(
                f"large-tier budget of {name} spent: ${usd:.6f} of max_large_usd ${budget.max_large_usd:g} {window}",
                budget.on_exceeded,
            )
        return None

    def record(self, tenant: str, *, used_large: bool, large_usd: float) -> None:
        budget = self._budget(tenant)
        if budget is not None:
            self._window(tenant, budget).append(_Use(self._clock(), used_large, large_usd))

    def _window(self, tenant: str, budget: BudgetSettings) -> deque[_Use]:
        uses = self._uses.setdefault(tenant, deque())
        horizon = self._clock() - budget.window_s
        while uses and uses[0].at < horizon:
            uses.popleft()
        return uses
