"""OpenAI's request and response shapes, the part of them this front door speaks.

Requests ignore fields they do not know, as OpenAI's API does (``seed``, ``top_p``, ``tools``, ...
are accepted and not used). Responses are plain OpenAI objects plus one documented extra field,
``cascade`` (see :func:`services.http.serving.cascade_extra`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.core.errors import InvalidRequest

# GenerateRequest.max_tokens is a uint32; a larger value could not even be put on the wire.
_MAX_UINT32 = 2**32 - 1
# OpenAI's newer name for the system role.
_ROLE_ALIASES = {"developer": "system"}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(default=None, ge=1, le=_MAX_UINT32)
    temperature: float | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    n: int = 1
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    # OpenAI's free-form labels; they become the request's tags, recorded in outcome events.
    metadata: dict[str, str] | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int) -> int:
        if n != 1:
            raise ValueError("only n=1 is supported: the cascade returns one answer per request")
        return n

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))

    def token_limit(self) -> int:
        return self.max_tokens or 0


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if not isinstance(self.content, list):
            return self.content or ""
        if any(part.get("type") != "text" for part in self.content):
            raise InvalidRequest("only text content parts are supported")
        return "".join(str(part.get("text", "")) for part in self.content)

    def cascade_role(self) -> str:
        return _ROLE_ALIASES.get(self.role, self.role)


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    # OpenAI's newer name for max_tokens; it wins when both are given.
    max_completion_tokens: int | None = Field(default=None, ge=1, le=_MAX_UINT32)

    def token_limit(self) -> int:
        return self.max_completion_tokens or self.max_tokens or 0


class CompletionRequest(_Request):
    prompt: str | list[str]

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise InvalidRequest("one prompt per request: the cascade answers a single prompt")
        return self.prompt[0]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "prompt-cascade"
    # What the model name selects: {"policy": ..., "tier": ...}.
    cascade: dict[str, Any]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
