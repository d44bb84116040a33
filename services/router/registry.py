"""Router models published to a JetStream object store, and fetched from it by routers.

Layout of a bucket (default ``cascade-models``)::

    <version>/router.onnx
    <version>/model_card.json
    latest                      # content: the version string of the model in service

A publication uploads both files of a version first and moves ``latest`` last, so a
reader that follows ``latest`` never sees a half-published version. Versions are the
model's own version (``YYYYMMDD.<graph digest>``) and are never rewritten.

Errors: :class:`ModelError` for a missing bucket, version or file, or a corrupt download;
:class:`Unavailable` when NATS or JetStream does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nats.errors
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.object_store import ObjectStore

from classifier.contract import CARD_FILE, ONNX_FILE
from services.core.errors import ModelError, Unavailable
from services.core.settings import RouterSettings

log = logging.getLogger(__name__)

DEFAULT_BUCKET: str = RouterSettings.model_fields["registry_bucket"].default
LATEST = "latest"
FILES = (ONNX_FILE, CARD_FILE)
# A version becomes a folder name in the cache: no separators, no dot-only names.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_version(version: str) -> str:
    if not _VERSION_RE.match(version) or version == LATEST:
        raise ModelError(f"{version!r} is not a usable model version (letters, digits, '.', '_', '-'; not 'latest')")
    return version


@contextlib.contextmanager
def _nats_errors(what: str) -> Iterator[None]:
    """NATS trouble becomes Unavailable; missing things are turned into ModelError by callers."""
    try:
        yield
    except (js_errors.NotFoundError, ModelError):
        raise
    except (nats.errors.Error, TimeoutError) as exc:
        raise Unavailable(f"{what}: NATS/JetStream did not answer: {exc!r}") from exc


async def open_bucket(js: JetStreamContext, *, bucket: str, create: bool = False) -> ObjectStore:
    """The bucket's object store; ``create``: make it (file storage) when it does not exist."""
    with _nats_errors(f"opening model bucket {bucket!r}"):
        try:
            return await js.object_store(bucket)
        except js_errors.BucketNotFoundError:
            if not create:
                raise ModelError(
                    f"no model bucket {bucket!r} on this NATS: nothing was published yet "
                    "(`cascade train publish --model DIR`)"
                ) from None
        return await js.create_object_store(bucket, description="prompt-cascade router models")


async def current_version(
    js: JetStreamContext, *, bucket: str = DEFAULT_BUCKET, name: str = LATEST, timeout_s: float = 10.0
) -> str | None:
    """The version ``name`` points at, or None when nothing was published under it."""
    obs = await open_bucket(js, bucket=bucket)
    with _nats_errors(f"reading {bucket}/{name}"):
        try:
            # Bounded: a read racing a rewrite of `name` can wait for chunks that were just purged.
            async with asyncio.timeout(timeout_s):
                result = await obs.get(name)
        except js_errors.NotFoundError:
            return None
    return check_version(bytes(result.data or b"").decode("utf-8", errors="replace").strip())


async def publish(js: JetStreamContext, *, model_dir: Path, bucket: str = DEFAULT_BUCKET) -> str:
    """Upload a model folder as its version and point ``latest`` at it; returns the version.

    The model is loaded first, so a file a router would refuse is never published.
    """
    from classifier import load_model

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir} is not a model folder ({ONNX_FILE} + {CARD_FILE})")
    version = check_version(load_model(model_dir).version)
    obs = await open_bucket(js, bucket=bucket, create=True)
    with _nats_errors(f"publishing {version} to {bucket}"):
        for name in FILES:
            await _put_unless_same(obs, f"{version}/{name}", model_dir / name)
        await obs.put(LATEST, version.encode())  # last: readers see all of the version or none of it
    log.info("published router model %s to bucket %s", version, bucket)
    return version


async def _put_unless_same(obs: ObjectStore, name: str, path: Path) -> None:
    data = path.read_bytes()
    digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    try:
        if (await obs.get_info(name)).digest == digest:
            return  # re-publishing a version must not disturb routers downloading it
    except js_errors.NotFoundError:
        pass
    await obs.put(name, data)


async def fetch(
    js: JetStreamContext,
    *,
    bucket: str = DEFAULT_BUCKET,
    version: str = LATEST,
    cache_dir: Path,
    timeout_s: float = 60.0,
) -> Path:
    """Download a published version (``latest``: the one it points at) into ``cache_dir/<version>/``.

    A folder already in the cache is complete (downloads are staged and renamed into place)
    and is used as it is. Returns the folder, ready for ``classifier.load_model``.
    """
    if version == LATEST:
        resolved = await current_version(js, bucket=bucket)
        if resolved is None:
            raise ModelError(f"no model published in bucket {bucket!r} (nothing named {LATEST!r})")
    else:
        resolved = check_version(version)
    target = Path(cache_dir) / resolved
    if target.is_dir():
        return target
    obs = await open_bucket(js, bucket=bucket)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{resolved}."))
    try:
        async with asyncio.timeout(timeout_s):
            for name in FILES:
                await _download(obs, bucket=bucket, name=f"{resolved}/{name}", dest=staging / name)
        _move_into_place(staging, target)
    except TimeoutError:
        raise Unavailable(f"downloading model {resolved} from {bucket!r} took over {timeout_s}s") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched router model %s from bucket %s into %s", resolved, bucket, target)
    return target


async def _download(obs: ObjectStore, *, bucket: str, name: str, dest: Path) -> None:
    with _nats_errors(f"downloading {bucket}/{name}"), dest.open("wb") as out:
        try:
            await obs.get(name, writeinto=out)
        except js_errors.NotFoundError:
            raise ModelError(f"model bucket {bucket!r} has no {name!r}: not published (or deleted)") from None
        except (js_errors.DigestMismatchError, js_errors.BadObjectMetaError) as exc:
            raise ModelError(f"{bucket}/{name} is corrupt in the object store: {exc!r}") from exc


def _move_into_place(staging: Path, target: Path) -> None:
    try:
        staging.rename(target)
    except OSError:
        if not target.is_dir():  # another process that shares the cache got there first: fine
            raise
