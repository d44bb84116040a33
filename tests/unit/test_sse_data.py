"""The tier's server-sent-events splitter: events as they arrive, however the bytes are cut."""

from __future__ import annotations

from services.tier.backends.openai import _SseData


def test_events_split_across_reads_and_line_endings() -> None:
    stream = b': keep-alive\r\n\r\ndata: {"a": 1}\r\n\r\ndata: first\ndata: second\n\nevent: x\ndata:[DONE]\n\n'
    for cut in range(len(stream) + 1):  # every place a read can end
        events = _SseData()
        assert events.feed(stream[:cut]) + events.feed(stream[cut:]) == ['{"a": 1}', "first\nsecond", "[DONE]"]


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    events = _SseData()
    assert events.feed(b"data: partial\n") == []
    assert events.feed(b"\n") == ["partial"]
