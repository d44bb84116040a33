"""The fake model behind tests/support/openai_server.py: the request shapes it accepts and the
deterministic answers it gives (see that module's docstring)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIDENCE = 0.9
DEFAULT_TOKENS = 16
MAX_N = 32
_CONFIDENCE = re.compile(r"\[\[confidence=([0-9.eE+-]+)\]\]")
_VOCABULARY = (
    *("the", "answer", "is", "clear", "because", "each", "step", "follows", "from", "previous"),
    *("one", "and", "we", "check", "every", "case", "carefully", "so", "that", "nothing"),
    *("important", "missed", "here", "result", "holds", "given", "premise", "therefore", "option", "B"),
)

# ---- protocol models -------------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_Request):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=20)


class Faults(BaseModel):
    """What ``POST /_control`` sets; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    delay_first_token_s: float = Field(default=0.0, ge=0)
    delay_per_token_s: float = Field(default=0.0, ge=0)
    status_code: int | None = Field(default=None, ge=400, le=599)
    drop_after_tokens: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    omit_usage: bool = False
    # Scripted answers: choice i of every call says answers[i] (its words as tokens; a
    # ``[[confidence=x]]`` in it sets that choice's logprobs); choices beyond the list are hashed.
    answers: list[str] | None = None


# ---- the fake model --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    tokens: list[str]
    logprob: float
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int


def answer_tokens(prompt: str, count: int = DEFAULT_TOKENS, *, choice: int = 0) -> list[str]:
    """The deterministic answer to ``prompt`` (as choice ``choice`` of a call): ``count`` words,
    each token after the first led by a space."""
    key = _CONFIDENCE.sub("", prompt).strip() + (f"#{choice}" if choice else "")
    seed = hashlib.sha256(key.encode()).digest()
    return _as_tokens([_VOCABULARY[(seed[i % len(seed)] + i) % len(_VOCABULARY)] for i in range(count)])


def scripted_tokens(answer: str) -> list[str]:
    """The tokens a scripted answer is served as: its words, each after the first led by a space."""
    return _as_tokens(_CONFIDENCE.sub("", answer).split())


def _as_tokens(words: list[str]) -> list[str]:
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _confidence_of(prompt: str) -> float:
    match = _CONFIDENCE.search(prompt)
    value = float(match.group(1)) if match else DEFAULT_CONFIDENCE
    if not 0.0 < value <= 1.0:
        raise ValueError(f"confidence must be in (0, 1], got {value}")
    return value


def generate(
    prompt: str, all_text: str, *, max_tokens: int | None, stops: Sequence[str], faults: Faults, choice: int = 0
) -> Answer:
    scripted = faults.answers[choice] if faults.answers and choice < len(faults.answers) else None
    if scripted is not None:
        tokens, confidence = (
            scripted_tokens(scripted),
            _confidence_of(scripted if _CONFIDENCE.search(scripted) else prompt),
        )
    else:
        count = DEFAULT_TOKENS if faults.tokens is None else faults.tokens
        tokens, confidence = answer_tokens(prompt, count, choice=choice), _confidence_of(prompt)
    finish: Literal["stop", "length"] = "stop"
    tokens, stopped = _cut_at_stop(tokens, stops)
    if not stopped and max_tokens is not None and len(tokens) > max_tokens:
        tokens, finish = tokens[:max_tokens], "length"
    return Answer(tokens, math.log(confidence), finish, len(all_text.split()))


def _cut_at_stop(tokens: list[str], stops: Sequence[str]) -> tuple[list[str], bool]:
    """Tokens up to the first stop string (which is not returned, as in OpenAI's API)."""
    text = "".join(tokens)
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    if cut < 0:
        return tokens, False
    kept: list[str] = []
    length = 0
    for token in tokens:
        if length + len(token) > cut:
            if cut > length:
                kept.append(token[: cut - length])
            break
        kept.append(token)
        length += len(token)
    return kept, True
