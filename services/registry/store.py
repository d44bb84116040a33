"""Published models (routers and answer scorers) in a JetStream object store, and fetching them.

Layout of a bucket (default ``cascade-models``), one folder per kind (``router``, ``scorer``)::

    <kind>/<version>/<kind>.onnx
    <kind>/<version>/model_card.json
    <kind>/<version>/publish.json   # who published it, when, why, the gate's comparison, forced or not
    <kind>/latest                   # content: the version string of the model in service
    <kind>/history.json             # every publication, promotion, rollback and refusal (JSON list)

A publication uploads the files of a version first and moves ``latest`` last, so a reader
that follows ``latest`` never sees a half-published version. Versions are the model's own
version and are never rewritten.

Buckets written before the scorer joined (``<version>/router.onnx``, ``latest`` at the top)
stay readable: for the router, a missing ``router/latest`` falls back to ``latest`` and a
version's files to ``<version>/...``. The next publication or promotion writes the new
layout, which then wins.

Errors: :class:`ModelError` for a missing bucket, version or file, or a corrupt download;
:class:`Unavailable` when NATS or JetStream does not answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.object_store import ObjectStore

from services.core.errors import ModelError, Unavailable
from services.core.settings import RouterSettings
from services.registry.kinds import Kind, kind_of

log = logging.getLogger(__name__)

DEFAULT_BUCKET: str = RouterSettings.model_fields["registry_bucket"].default
LATEST = "latest"
RECORD_FILE = "publish.json"
HISTORY_FILE = "history.json"
_LEGACY_KIND = "router"  # the only kind of the old, kind-less layout
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
        return await js.create_object_store(bucket, description="prompt-cascade models (routers, scorers)")


async def _read(obs: ObjectStore, name: str, *, what: str, timeout_s: float) -> bytes | None:
    """An object's bytes, or None when there is none; bounded, since a read racing a rewrite of
    ``name`` can wait for chunks that were just purged."""
    with _nats_errors(f"reading {what}"):
        try:
            async with asyncio.timeout(timeout_s):
                result = await obs.get(name)
        except js_errors.NotFoundError:
            return None
    return bytes(result.data or b"")


async def current_version(
    js: JetStreamContext, *, bucket: str = DEFAULT_BUCKET, kind: str = "router", timeout_s: float = 10.0
) -> str | None:
    """The version ``<kind>/latest`` points at, or None when nothing was published."""
    obs = await open_bucket(js, bucket=bucket)
    names = [f"{kind}/{LATEST}", *([LATEST] if kind == _LEGACY_KIND else [])]
    for name in names:
        data = await _read(obs, name, what=f"{bucket}/{name}", timeout_s=timeout_s)
        if data is not None:
            return check_version(data.decode("utf-8", errors="replace").strip())
    return None


async def _files_of(obs: ObjectStore, *, kind: Kind, version: str) -> dict[str, str]:
    """File name -> object name of a stored version (new layout first, then the legacy one)."""
    prefixes = [f"{kind.name}/{version}/", *([f"{version}/"] if kind.name == _LEGACY_KIND else [])]
    for prefix in prefixes:
        try:
            await obs.get_info(prefix + kind.onnx_file)
        except js_errors.NotFoundError:
            continue
        return {name: prefix + name for name in kind.files}
    raise ModelError(f"no {kind.name} model {version!r} in the bucket (not published, or deleted)")


async def put_version(js: JetStreamContext, *, bucket: str, kind: str, model_dir: Path, record: dict[str, Any]) -> None:
    """Upload a model folder's files and its publication record (``latest`` is not moved)."""
    k = kind_of(kind)
    version = check_version(str(record["version"]))
    obs = await open_bucket(js, bucket=bucket, create=True)
    with _nats_errors(f"publishing {kind} {version} to {bucket}"):
        for name in k.files:
            await _put_unless_same(obs, f"{kind}/{version}/{name}", Path(model_dir) / name)
        await obs.put(f"{kind}/{version}/{RECORD_FILE}", json.dumps(record, indent=1).encode())


async def set_latest(js: JetStreamContext, *, bucket: str, kind: str, version: str) -> None:
    """Point ``<kind>/latest`` at a stored version; followers switch to it."""
    obs = await open_bucket(js, bucket=bucket)
    await _files_of(obs, kind=kind_of(kind), version=check_version(version))  # only a stored version
    with _nats_errors(f"moving {bucket}/{kind}/{LATEST}"):
        await obs.put(f"{kind}/{LATEST}", version.encode())


async def _put_unless_same(obs: ObjectStore, name: str, path: Path) -> None:
    data = path.read_bytes()
    digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    try:
        if (await obs.get_info(name)).digest == digest:
            return  # re-publishing a version must not disturb routers downloading it
    except js_errors.NotFoundError:
        pass
    await obs.put(name, data)


async def history(js: JetStreamContext, *, bucket: str, kind: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The kind's history records, oldest first (empty for a bucket without any)."""
    obs = await open_bucket(js, bucket=bucket)
    data = await _read(obs, f"{kind}/{HISTORY_FILE}", what=f"{bucket}/{kind}/{HISTORY_FILE}", timeout_s=timeout_s)
    if not data:
        return []
    try:
        records = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{bucket}/{kind}/{HISTORY_FILE} is not JSON: {exc}") from exc
    return list(records)


async def append_history(js: JetStreamContext, *, bucket: str, kind: str, record: dict[str, Any]) -> None:
    # Read-modify-write without a compare-and-set: model commands are operator actions, one at a time.
    records = [*await history(js, bucket=bucket, kind=kind), record]
    obs = await open_bucket(js, bucket=bucket)
    with _nats_errors(f"writing {bucket}/{kind}/{HISTORY_FILE}"):
        await obs.put(f"{kind}/{HISTORY_FILE}", json.dumps(records, indent=1).encode())


async def stored_versions(js: JetStreamContext, *, bucket: str, kind: str) -> list[str]:
    """Every version of ``kind`` stored in the bucket (both layouts), oldest upload first."""
    obs = await open_bucket(js, bucket=bucket)
    k = kind_of(kind)
    with _nats_errors(f"listing {bucket}"):
        try:
            infos = await obs.list(ignore_deletes=True)
        except js_errors.NotFoundError:
            return []
    found: dict[str, None] = {}
    for info in sorted(infos, key=lambda i: i.mtime or ""):
        parts = info.name.split("/")
        if parts[-1] != k.onnx_file:
            continue
        if len(parts) == 3 and parts[0] == kind or len(parts) == 2 and kind == _LEGACY_KIND:
            found[parts[-2]] = None
    return list(found)


async def publication(js: JetStreamContext, *, bucket: str, kind: str, version: str) -> dict[str, Any]:
    """A stored version's model card and publication record (empty for a legacy version)."""
    obs = await open_bucket(js, bucket=bucket)
    k = kind_of(kind)
    files = await _files_of(obs, kind=k, version=check_version(version))
    out: dict[str, Any] = {}
    for key, name in (("card", files[k.files[1]]), ("record", f"{kind}/{version}/{RECORD_FILE}")):
        data = await _read(obs, name, what=f"{bucket}/{name}", timeout_s=10.0)
        out[key] = json.loads(data) if data else {}
    return out


async def fetch(
    js: JetStreamContext,
    *,
    bucket: str = DEFAULT_BUCKET,
    kind: str = "router",
    version: str = LATEST,
    cache_dir: Path,
    timeout_s: float = 60.0,
) -> Path:
    """Download a published version (``latest``: the one it points at) into ``cache_dir/<kind>/<version>/``.

    A folder already in the cache is complete (downloads are staged and renamed into place)
    and is used as it is. Returns the folder, ready for the kind's loader.
    """
    k = kind_of(kind)
    if version == LATEST:
        resolved = await current_version(js, bucket=bucket, kind=kind)
        if resolved is None:
            raise ModelError(f"no {kind} model published in bucket {bucket!r} (nothing named {kind}/{LATEST})")
    else:
        resolved = check_version(version)
    target = Path(cache_dir) / kind / resolved
    if target.is_dir():
        return target
    obs = await open_bucket(js, bucket=bucket)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{resolved}."))
    try:
        async with asyncio.timeout(timeout_s):
            with _nats_errors(f"looking up {kind} {resolved} in {bucket}"):
                files = await _files_of(obs, kind=k, version=resolved)
            for name, obj in files.items():
                await _download(obs, bucket=bucket, name=obj, dest=staging / name)
        _move_into_place(staging, target)
    except TimeoutError:
        raise Unavailable(f"downloading {kind} model {resolved} from {bucket!r} took over {timeout_s}s") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched %s model %s from bucket %s into %s", kind, resolved, bucket, target)
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
