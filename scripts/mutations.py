"""Named, hand-written mutations of the request path, each run against the tests meant to catch it.

Every mutation is a small deliberate bug (ignore the gRPC deadline, drop an outcome instead of retrying,
skip the lost-chunk check, count "!" instead of "?", ...). For each one this script copies the working
tree (tracked and untracked files, never ignored ones) into a scratch folder, applies the edit there,
runs the named tests with pytest, and reports the mutation CAUGHT (a test failed) or MISSED (all
passed). The working tree itself is never edited. First the named tests run once unmutated: they must
pass, or the report would mean nothing.

    python scripts/mutations.py                  # every mutation (several minutes: integration tests)
    python scripts/mutations.py --list           # names and the tests that should catch each
    python scripts/mutations.py tier-no-deadline outcome-dropped   # some of them

Exit status 1 when a mutation is missed. A complement to mutmut (see the README's Tests section):
mutmut mutates every operator of a module against fast unit tests; these mutations are the
behaviours only the integration tests on real servers can check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROBUST = "tests/integration/test_robustness.py"
SHARING = "tests/integration/test_routers_and_workers.py"
OUTCOMES = "tests/integration/test_outcome_publisher.py"
LOGIC = "tests/unit/test_cascade_logic.py"
UP = "tests/integration/test_http_up.py::test_cascade_up_serves_asks_and_stops_in_reverse_order"


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (old, new); each old text must occur exactly once
    tests: tuple[str, ...]


def m(name: str, path: str, old: str, new: str, *tests: str) -> Mutation:
    return Mutation(name, path, ((old, new),), tests)


MUTATIONS = [
    m(
        "grpc-deadline-ignored",
        "services/gateway/servicer.py",
        "timeout_s = remaining if remaining is not None else self._settings.gateway.default_timeout_s",
        "timeout_s = self._settings.gateway.default_timeout_s",
        f"{ROBUST}::test_the_deadline_is_passed_to_the_tier_and_stops_its_work",
    ),
    m(
        "tier-no-deadline",
        "services/gateway/cascade.py",
        "deadline_unix_ms=int(deadline * 1e3),",
        "deadline_unix_ms=0,",
        f"{ROBUST}::test_the_deadline_is_passed_to_the_tier_and_stops_its_work",
    ),
    Mutation(
        "deadline-race",  # the bug that was: the gateway's own timer racing gRPC's deadline
        "services/gateway/cascade.py",
        (
            ("margin = min(0.25, timeout_s * 0.1)", "margin = 0.0"),
            ("late = time.time() >= deadline - margin", "late = False"),
        ),
        (f"{ROBUST}::test_a_timed_out_request_is_always_deadline_exceeded_never_cancelled",),
    ),
    m(
        "cancel-at-the-deadline-recorded-cancelled",
        "services/gateway/cascade.py",
        "late = time.time() >= deadline - margin",
        "late = False",
        f"{LOGIC}::test_cancellation_at_the_deadline_is_recorded_as_deadline_exceeded",
    ),
    m(
        "worker-ignores-deadline",
        "services/tier/worker.py",
        "async with asyncio.timeout(timeout_s):",
        "async with asyncio.timeout(None):",
        f"{ROBUST}::test_a_worker_with_a_hanging_backend_stops_at_the_deadline",
    ),
    m(
        "outcome-random-message-id",
        "services/gateway/server.py",
        "self.outcomes.submit(subjects.OUTCOMES, outcome_id(event.request_id),",
        'self.outcomes.submit(subjects.OUTCOMES, f"outcome:{event.request_id}:{id(record)}",',
        f"{OUTCOMES}::test_the_gateway_names_each_outcome_by_its_request_id",
    ),
    m(
        "outcome-dropped-not-retried",
        "services/outcomes/publisher.py",
        "                if isinstance(result, Unavailable):\n                    error = error or result\n",
        "                if isinstance(result, Unavailable):\n                    self.spool.ack(event.path)\n",
        f"{OUTCOMES}::test_an_event_submitted_during_a_jetstream_outage_is_stored_once_it_is_back",
    ),
    m(
        "outcomes-not-flushed-at-shutdown",
        "services/outcomes/publisher.py",
        "await asyncio.wait_for(self._empty.wait(), timeout_s)",
        "await asyncio.sleep(0)",
        f"{OUTCOMES}::test_close_flushes_every_queued_event",
    ),
    m(
        "gateway-stop-skips-outcome-flush",
        "services/gateway/server.py",
        "        await self.outcomes.close()\n",
        "        pass\n",
        f"{OUTCOMES}::test_the_gateway_flushes_its_outcomes_when_it_stops",
    ),
    m(
        "cancel-never-published",
        "services/gateway/clients.py",
        "await self._nc.publish(subjects.CANCEL, request.chunk_subject.encode())",
        "pass",
        f"{ROBUST}::test_a_client_cancelling_mid_stream_stops_the_tier_and_is_recorded_cancelled",
    ),
    m(
        "worker-ignores-cancel",
        "services/tier/worker.py",
        "        if task:\n            task.cancel()",
        "        if task:\n            pass",
        f"{ROBUST}::test_a_client_cancelling_mid_stream_stops_the_tier_and_is_recorded_cancelled",
    ),
    m(
        "no-lost-chunk-check",
        "services/gateway/clients.py",
        "if chunk.seq != seq:",
        "if False:",
        f"{ROBUST}::test_a_tier_that_breaks_the_protocol_is_unavailable",
    ),
    m(
        "no-chunk-idle-timeout",
        "services/gateway/clients.py",
        "async with asyncio.timeout(self._idle_timeout_s):",
        "async with asyncio.timeout(3600):",
        f"{ROBUST}::test_a_tier_that_breaks_the_protocol_is_unavailable",
    ),
    m(
        "no-tier-accept-timeout",
        "services/gateway/clients.py",
        "            timeout_s = self._accept_timeout_s\n",
        "            timeout_s = 3600.0\n",
        f"{ROBUST}::test_a_tier_that_breaks_the_protocol_is_unavailable",
    ),
    m(
        "no-max-in-flight",
        "services/gateway/servicer.py",
        "if self._in_flight >= self._settings.gateway.max_in_flight:",
        "if False:",
        f"{ROBUST}::test_the_gateway_at_max_in_flight_refuses_with_resource_exhausted",
    ),
    m(
        "no-max-concurrency",
        "services/tier/worker.py",
        "if len(self._tasks) >= self._settings.max_concurrency:",
        "if False:",
        f"{ROBUST}::test_a_tier_at_max_concurrency_refuses_with_resource_exhausted",
    ),
    m(
        "upstream-429-not-overloaded",
        "services/tier/backends/openai.py",
        "if status == 429:",
        "if False:",
        f"{ROBUST}::test_an_upstream_429_is_resource_exhausted",
    ),
    m(
        "gateway-mutual-tls-not-required",
        "services/gateway/server.py",
        "require_client_auth=client_ca is not None",
        "require_client_auth=False",
        f"{ROBUST}::test_the_gateway_with_mutual_tls_refuses_a_client_without_a_certificate",
    ),
    m(
        "small-failure-never-escalates",
        "services/gateway/small.py",
        "if not self._esc.on_error or self._next_is_barred():",
        "if True or self._next_is_barred():",
        f"{ROBUST}::test_a_small_tier_failure_escalates_to_the_large_tier",
    ),
    m(
        "escalation-on-error-ignored",
        "services/gateway/small.py",
        "if not self._esc.on_error or self._next_is_barred():",
        "if self._next_is_barred():",
        f"{ROBUST}::test_escalation_on_error_off_returns_the_small_failure",
    ),
    m(
        "escalation-enabled-ignored",
        "services/gateway/cascade.py",
        "if not self.settings.escalation.enabled or self.settings.max_escalations < 1:",
        "if self.settings.max_escalations < 1:",
        f"{ROBUST}::test_escalation_switches",
    ),
    m(
        "escalation-max-escalations-ignored",
        "services/gateway/cascade.py",
        "if not self.settings.escalation.enabled or self.settings.max_escalations < 1:",
        "if not self.settings.escalation.enabled:",
        f"{ROBUST}::test_escalation_switches",
    ),
    m(
        "router-threshold-ignored",
        "services/router/policy.py",
        "if s.threshold is not None:",
        "if False:",
        f"{ROBUST}::test_routing_switches",
    ),
    m(
        "router-target-large-share-ignored",
        "services/router/policy.py",
        "if s.target_large_share is not None:",
        "if False:",
        f"{ROBUST}::test_routing_switches",
    ),
    m(
        "gateway-default-policy-ignored",
        "services/gateway/requests.py",
        "policy=_policy(req.policy, limits.default_policy),",
        'policy=_policy(req.policy, "cascade"),',
        f"{ROBUST}::test_the_gateway_default_policy_applies_to_requests_that_name_none",
    ),
    m(
        "router-fallback-tier-ignored",
        "services/gateway/cascade.py",
        "fallback = self.settings.router.fallback_tier",
        'fallback = "large"',
        f"{SHARING}::test_a_router_that_does_not_answer_in_time_falls_back",
    ),
    m(
        "router-timeout-unbounded",
        "services/gateway/clients.py",
        "subjects.ROUTE, payload, timeout=timeout_s,",
        "subjects.ROUTE, payload, timeout=3600,",
        f"{SHARING}::test_a_router_that_does_not_answer_in_time_falls_back",
    ),
    m(
        "tier-queue-group-dropped",
        "services/tier/worker.py",
        "subjects.tier_subject(self.tier), queue=subjects.tier_queue(self.tier), cb=self.handle_request",
        "subjects.tier_subject(self.tier), cb=self.handle_request",
        f"{SHARING}::test_two_routers_and_two_workers_share_the_load_each_request_served_once",
    ),
    m(
        "router-queue-group-dropped",
        "services/router/service.py",
        "subjects.ROUTE, queue=subjects.ROUTER_QUEUE, cb=self.handle_request",
        "subjects.ROUTE, cb=self.handle_request",
        f"{SHARING}::test_two_routers_and_two_workers_share_the_load_each_request_served_once",
    ),
    m(
        "local-hot-reload-never-fires",
        "services/router/policy.py",
        "if stamp == self._stamp:",
        "if True:",
        f"{SHARING}::test_a_local_model_file_is_hot_reloaded_while_requests_are_in_flight",
    ),
    m(
        "reload-loop-never-started",
        "services/router/routing.py",
        "self._reloader = asyncio.create_task(self._reload_loop())",
        "self._reloader = None",
        f"{SHARING}::test_a_local_model_file_is_hot_reloaded_while_requests_are_in_flight",
    ),
    m(
        "up-stops-in-start-order",
        "services/cli/supervisor.py",
        "for child in reversed(children):",
        "for child in children:",
        UP,
    ),
    m(
        "services-ignore-sigterm",
        "services/core/lifecycle.py",
        "        stop.set()\n",
        "        pass\n",
        "tests/integration/test_entry_points.py::test_a_service_runs_until_a_signal_then_stops_cleanly",
        UP,
    ),
    m(
        "feature-question-mark-counts-bang",
        "classifier/features.py",
        'text.count("?")',
        'text.count("!")',
        "tests/unit/test_golden_router.py::test_the_default_router_model_scores_fixed_prompts_as_recorded",
    ),
    m(
        "feature-digit-ratio-is-upper-ratio",
        "classifier/features.py",
        "        len(_DIGIT.findall(text)) / n,",
        "        len(_UPPER.findall(text)) / n,",
        "tests/unit/test_golden_router.py::test_the_default_router_model_scores_fixed_prompts_as_recorded",
    ),
]


def scratch_copy() -> Path:
    """The working tree's files in a temporary folder, with ``../shared`` linked beside it."""
    base = Path(tempfile.mkdtemp(prefix="cascade-mutations-"))
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if source.is_file():
            target = base / "repo" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (base / "shared").symlink_to(shared)
    return base / "repo"


def pytest(repo: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "proto")])}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not vllm", *tests]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)


def kill_leftovers(repo: Path) -> list[int]:
    """SIGKILL processes still running in the scratch copy (e.g. services a mutation taught to ignore SIGTERM).

    Only processes whose working directory is inside the copy are touched: nothing else can be there.
    """
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd").removesuffix(" (deleted)")
        except OSError:
            continue
        if int(proc.name) != os.getpid() and Path(cwd).is_relative_to(repo):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
    return killed


def apply(repo: Path, mutation: Mutation) -> str:
    """Apply the mutation; returns the original text of the file."""
    path = repo / mutation.path
    original = text = path.read_text()
    for old, new in mutation.edits:
        if text.count(old) != 1:
            raise SystemExit(f"{mutation.name}: {old!r} occurs {text.count(old)} times in {mutation.path}, not once")
        text = text.replace(old, new)
    path.write_text(text)
    return original


def first_failure(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return lines[0][:150] if lines else output.strip().splitlines()[-1][:150] if output.strip() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the named tests")
    args = parser.parse_args(argv)
    by_name = {mutation.name: mutation for mutation in MUTATIONS}
    unknown = sorted(set(args.names) - set(by_name))
    if unknown:
        parser.error(f"unknown mutations {unknown}; see --list")
    chosen = [by_name[name] for name in args.names] if args.names else MUTATIONS
    if args.list:
        for mutation in chosen:
            print(f"{mutation.name:42} {mutation.path}\n{'':42} {' '.join(mutation.tests)}")
        return 0
    repo = scratch_copy()
    try:
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for mutation in chosen for t in mutation.tests))
            baseline = pytest(repo, tests)
            if baseline.returncode != 0:
                print(f"the unmutated tests fail; fix them first:\n{baseline.stdout[-3000:]}{baseline.stderr[-2000:]}")
                return 2
            print(f"baseline: {len(tests)} test selections pass unmutated")
        missed = []
        for mutation in chosen:
            original = apply(repo, mutation)
            try:
                result = pytest(repo, mutation.tests)
            finally:
                (repo / mutation.path).write_text(original)
                if leftovers := kill_leftovers(repo):
                    print(f"       killed {len(leftovers)} processes the mutant left running", flush=True)
            caught = result.returncode != 0
            missed += [] if caught else [mutation.name]
            detail = first_failure(result.stdout) if caught else "all tests passed"
            print(f"{'CAUGHT' if caught else 'MISSED'} {mutation.name:42} {detail}", flush=True)
        print(f"\n{len(chosen) - len(missed)} caught, {len(missed)} missed of {len(chosen)} mutations")
        return 1 if missed else 0
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
