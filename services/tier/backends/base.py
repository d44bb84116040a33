"""The small interface every tier backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Generation:
    """One generation request as a backend sees it (already validated by the gateway)."""

    request_id: str
    messages: Sequence[Message]
    max_tokens: int
    temperature: float | None = None
    stop: Sequence[str] = ()
    want_logprobs: bool = True
    # Seconds left until the request's deadline; backends bound their I/O by it.
    timeout_s: float | None = None
    # Answers to sample in one call (self-consistency); the first streams, the others come
    # whole on the final delta. A backend that cannot sample answers once.
    n: int = 1
    # The caller takes the answer only whole (a unary call): a backend may fetch it in one response
    # and yield it as one final delta, instead of streaming it token by token.
    whole: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class SampleAnswer:
    """One further answer of a generation with ``n > 1``, sampled beside the streamed one."""

    text: str
    token_logprobs: Sequence[float] = ()
    finish_reason: str = "stop"  # "stop" or "length"


@dataclass(frozen=True, kw_only=True, slots=True)
class Delta:
    """A piece of the answer. The last delta of a generation has ``finish_reason`` set."""

    text: str = ""
    token_logprobs: Sequence[float] = ()
    # "stop" or "length" on the last delta, None before it.
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    usage_estimated: bool = False
    # Replay backends only: the recorded benchmark score of the answer.
    replay_score: float | None = None
    # Last delta of a generation with n > 1 only: the other n - 1 answers, in the server's order.
    samples: tuple[SampleAnswer, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


class TierBackend(Protocol):
    """Produces an answer for a generation request as a stream of deltas.

    Implementations raise project errors from ``services.core.errors``:
    ``TierUnavailable`` when the model server cannot be reached or fails,
    ``DeadlineExceeded`` when ``timeout_s`` runs out, ``NotFound`` for a prompt a
    replay backend does not know, ``InvalidRequest`` when the server rejects the request.
    """

    kind: str  # "openai", "replay", ...
    model: str

    def stream(self, generation: Generation) -> AsyncIterator[Delta]: ...

    async def aclose(self) -> None: ...
