"""The calibrated policy file (``escalation.calibration``), shared by the gateway and the router.

Read at start (a bad file stops the service: it must not serve thresholds nobody chose), then
re-read when its modification time or size changes, checked at most once per interval on the
caller's own path (a stat, no background task). A bad new file is logged and the previous values kept.
A file for another number of tiers than router.tiers is a bad file too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from classifier.policy import CalibratedPolicy, load_policy
from services.core.errors import ModelError

log = logging.getLogger(__name__)


class CalibrationFile:
    def __init__(
        self,
        path: Path,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        n_tiers: int | None = None,
    ) -> None:
        self._path, self._interval_s, self._clock, self._n_tiers = path, interval_s, clock, n_tiers
        self._stamp = self._file_stamp()
        self._policy = self._load()
        self._checked = clock()
        log.info("calibrated policy %s: %s", path, self._policy.target or "no target recorded")

    @property
    def path(self) -> Path:
        return self._path

    def current(self) -> CalibratedPolicy:
        """The policy in force, re-read first when the interval has passed and the file changed."""
        now = self._clock()
        if self._interval_s > 0 and now - self._checked >= self._interval_s:
            self._checked = now
            self.reload_if_changed()
        return self._policy

    def reload_if_changed(self) -> bool:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a bad file is reported once, not at every check
        try:
            self._policy = self._load()
        except ModelError as exc:
            log.error("keeping the previous calibrated policy: %s", exc.message)
            return False
        log.info("calibrated policy %s reloaded: %s", self._path, self._policy.target or "no target recorded")
        return True

    def _load(self) -> CalibratedPolicy:
        policy = load_policy(self._path)
        if self._n_tiers is not None:
            try:
                policy.router_cuts(self._n_tiers), policy.step_thresholds(self._n_tiers)
            except ValueError as exc:
                raise ModelError(f"calibrated policy {self._path} does not fit: {exc}") from exc
        return policy

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = self._path.stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)
