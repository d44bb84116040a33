"""Hypothesis settings profiles: "ci" (the default: a small sample, seconds per test) and "thorough".

Pick one with ``HYPOTHESIS_PROFILE=thorough``. No deadline: these tests run real servers on a shared
2-core machine, where one slow example says nothing. No example database: nothing is written to disk.
``python -m bench.fuzz`` is the large run (10,000 inputs per decoder).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Fixtures (a nats-server, a gateway) are shared by a test's examples on purpose: that the service
# still answers after every malformed input is part of what is tested.
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("ci", max_examples=50, deadline=None, database=None, suppress_health_check=_SHARED)
settings.register_profile("thorough", max_examples=2000, deadline=None, database=None, suppress_health_check=_SHARED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
