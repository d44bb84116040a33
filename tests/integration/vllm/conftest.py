"""The genuine vLLM server these tests talk to (session-scoped: it takes ~40 s to start)."""

from tests.support.vllm_server import vllm_server

__all__ = ["vllm_server"]
