"""The README's code examples run as written (against a real nats-server)."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

from cascade.v1 import common_pb2, events_pb2
from services.core import subjects
from services.core.nats import connect_nats
from services.core.settings import OutcomeSettings
from services.outcomes.stream import ensure_stream

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


async def _run(code: str) -> str:
    """Run top-level-await example code as the body of a coroutine; return what it printed."""
    namespace: dict[str, object] = {}
    exec(f"async def example():\n{textwrap.indent(code, '    ')}\n    await nc.close()\n", namespace)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await namespace["example"]()  # type: ignore[operator]
    return out.getvalue()


async def test_the_durable_consumer_example_reads_outcomes_and_feedback_once(nats_server, tmp_path):
    code = _python_block_after("A durable consumer that reads every outcome once")
    assert '"configs/cascade.replay.yaml"' in code
    config = tmp_path / "cascade.yaml"
    config.write_text(f"nats: {{url: {nats_server.url}}}\n")
    code = code.replace('"configs/cascade.replay.yaml"', repr(str(config)))
    nc = await connect_nats(nats_server.url, name="t")
    js = nc.jetstream()
    await ensure_stream(js, OutcomeSettings())
    route = common_pb2.RouteSummary(tier="small")
    await js.publish(subjects.OUTCOMES, events_pb2.OutcomeEvent(request_id="r1", route=route).SerializeToString())
    await js.publish(subjects.FEEDBACK, events_pb2.FeedbackEvent(request_id="r1", score=0.9).SerializeToString())
    await nc.drain()
    assert (await _run(code)).splitlines() == ["outcome r1 small 0.0", "feedback r1 0.9"]
    assert await _run(code) == ""  # the durable consumer continues after what it acknowledged
