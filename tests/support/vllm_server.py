"""A genuine vLLM OpenAI server on this CPU, for the `vllm`-marked integration tests.

vLLM lives in its own virtual environment (``scripts/install_vllm_cpu.sh``) because it pins
torch, which the project's venv must not get. The tests build a tiny random-weight Llama
with that venv's python (``tests/support/tiny_llama.py``) and serve it on a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_LLAMA_SCRIPT = Path(__file__).with_name("tiny_llama.py")
INSTALL_SCRIPT = "scripts/install_vllm_cpu.sh"
VENV_ENV_VAR = "CASCADE_VLLM_VENV"
SERVED_MODEL_NAME = "tiny-llama"
STARTUP_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0


class VllmNotInstalled(RuntimeError):
    pass


class VllmServerFailed(RuntimeError):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class VllmServer:
    base_url: str  # ends in /v1
    model: str
    log_path: Path


def vllm_python() -> Path:
    """The vLLM venv's interpreter; raises VllmNotInstalled when it cannot import vllm."""
    venv = Path(os.environ.get(VENV_ENV_VAR) or REPO_ROOT / ".venv-vllm")
    python = venv / "bin" / "python"
    hint = f"run `{INSTALL_SCRIPT}` (or set {VENV_ENV_VAR} to a venv with vllm-cpu)"
    if not python.exists():
        raise VllmNotInstalled(f"no vLLM virtual environment at {venv}: {hint}")
    probe = subprocess.run([python, "-c", "import vllm"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise VllmNotInstalled(f"{python} cannot import vllm ({_tail(probe.stderr, 5)}): {hint}")
    return python


def build_tiny_llama(python: Path, out_dir: Path) -> Path:
    subprocess.run([python, TINY_LLAMA_SCRIPT, out_dir], check=True, capture_output=True)
    return out_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(cache_root: Path) -> dict[str, str]:
    """Environment for a CPU vLLM server that touches nothing outside ``cache_root``."""
    env = dict(os.environ)
    env.update(
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB of KV cache; the default would take far more memory
        VLLM_ENABLE_V1_MULTIPROCESSING="0",  # engine core in the server process: one pid to stop
        VLLM_HOST_IP="127.0.0.1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(cache_root / "hf"),
        VLLM_CACHE_ROOT=str(cache_root / "vllm"),
        VLLM_CONFIG_ROOT=str(cache_root / "vllm-config"),
        XDG_CACHE_HOME=str(cache_root / "xdg"),
        TORCHINDUCTOR_CACHE_DIR=str(cache_root / "inductor"),
    )
    return env


def server_command(python: Path, *, model_dir: Path, port: int) -> list[str]:
    # `vllm serve` fails under the vllm-cpu package name; the module entry point works.
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", SERVED_MODEL_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--max-model-len", "512",
        "--dtype", "float32",
        "--enforce-eager",
        "--distributed-executor-backend", "uni",
    ]  # fmt: skip


@contextmanager
def run_vllm_server(
    *, python: Path, model_dir: Path, work_dir: Path, startup_timeout_s: float = STARTUP_TIMEOUT_S
) -> Iterator[VllmServer]:
    """Start a server, wait until it answers, and always stop it afterwards."""
    port = free_port()
    log_path = work_dir / "vllm-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(python, model_dir=model_dir, port=port),
            cwd=work_dir,
            env=server_env(work_dir / "cache"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it reaches its children
        )
    server = VllmServer(base_url=f"http://127.0.0.1:{port}/v1", model=SERVED_MODEL_NAME, log_path=log_path)
    try:
        _wait_until_ready(process, server, startup_timeout_s)
        yield server
    finally:
        _stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], server: VllmServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VllmServerFailed(
                f"vLLM server exited with {process.returncode} before answering; "
                f"log tail ({server.log_path}):\n{_log_tail(server.log_path)}"
            )
        try:
            if httpx.get(f"{server.base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise VllmServerFailed(
        f"vLLM server did not answer within {timeout_s:.0f} s; "
        f"log tail ({server.log_path}):\n{_log_tail(server.log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def _log_tail(path: Path, lines: int = 60) -> str:
    return _tail(path.read_text(errors="replace"), lines) if path.exists() else "(no log)"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """A vLLM server serving a tiny random Llama; fails (never skips) when vLLM is missing."""
    python = _require_vllm_python()
    work_dir = tmp_path_factory.mktemp("vllm")
    model_dir = build_tiny_llama(python, work_dir / "tiny-llama")
    started = time.monotonic()
    with run_vllm_server(python=python, model_dir=model_dir, work_dir=work_dir) as server:
        _warm_up(server)
        print(f"vLLM server ready at {server.base_url} after {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield server


def _require_vllm_python() -> Path:
    try:
        return vllm_python()
    except VllmNotInstalled as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # outside the except: no chained traceback


def _warm_up(server: VllmServer) -> None:
    # The first request that asks for logprobs takes ~10 s on this CPU (the others ~0.1 s);
    # pay that here, not in whichever test happens to run first.
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": server.model, "messages": messages, "max_tokens": 2, "logprobs": True}
    httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120.0).raise_for_status()
