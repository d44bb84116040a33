"""`cascade model list | show VERSION | promote VERSION | rollback`: the registry's versions, by kind.

Base install: nothing here imports training code or onnxruntime.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from services.core.errors import CascadeError, ModelError
from services.core.nats import connect_from_settings
from services.core.settings import NatsSettings, load_settings
from services.registry import store
from services.registry.kinds import KINDS
from services.registry.manage import ModelRegistry, active_stack


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "model",
        help="list, show, promote and roll back published router and scorer versions",
        description="Manage the model registry (the JetStream object store router.registry_bucket on "
        "nats.url): each kind (router, scorer) has stored versions and one active version ('latest'), "
        "which routers and gateways follow. promote and rollback move it, keep the change in the "
        "bucket's history and announce it as a ModelEvent on cascade.events.model.",
    )
    p.add_argument("--config", type=Path, help="YAML config: NATS URL and registry bucket (default: built-in)")
    cmds = p.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    kinds = sorted(KINDS)

    ls = cmds.add_parser("list", help="stored versions of each kind; * marks the active one")
    ls.add_argument("--kind", choices=kinds, help="one kind only (default: every kind)")
    ls.add_argument("--history", action="store_true", help="also print every recorded change, oldest first")

    show = cmds.add_parser("show", help="a version's model card and publication record, as JSON")
    show.add_argument("version")
    show.add_argument("--kind", choices=kinds, help="the version's kind (default: the kind that has it)")

    promote = cmds.add_parser("promote", help="make a stored version the active one (no gate: an operator's call)")
    promote.add_argument("version")
    promote.add_argument("--kind", choices=kinds, help="the version's kind (default: the kind that has it)")

    rollback = cmds.add_parser("rollback", help="make the version active before the current one active again")
    rollback.add_argument("--kind", choices=kinds, required=True)
    for c in (promote, rollback):
        c.add_argument("--reason", default="", help="why, in words: kept in the history and the event")
        c.add_argument("--by", help="who (default: the login name)")
    return p


def main(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        return asyncio.run(_main(args, nats=settings.nats, bucket=settings.router.registry_bucket))
    except CascadeError as exc:
        print(f"cascade model {args.model_command}: {exc.message}", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace, *, nats: NatsSettings, bucket: str) -> int:
    nc = await connect_from_settings(nats, name=f"cascade-model-{args.model_command}", wait_s=5)
    try:
        registry = ModelRegistry(nc=nc, bucket=bucket)
        js = nc.jetstream()
        if args.model_command == "list":
            await _list(js, bucket=bucket, kinds=[args.kind] if args.kind else sorted(KINDS), history=args.history)
        elif args.model_command == "show":
            kind = args.kind or await _kind_of(js, bucket=bucket, version=args.version)
            info = await store.publication(js, bucket=bucket, kind=kind, version=args.version)
            serving = await store.current_version(js, bucket=bucket, kind=kind)
            print(
                json.dumps({"kind": kind, "version": args.version, "active": serving == args.version, **info}, indent=1)
            )
        elif args.model_command == "promote":
            kind = args.kind or await _kind_of(js, bucket=bucket, version=args.version)
            change = await registry.promote(kind=kind, version=args.version, by=_by(args), reason=args.reason)
            print(f"{kind} {change.previous_version or '(none)'} -> {change.version} (promoted)")
        else:
            change = await registry.rollback(kind=args.kind, by=_by(args), reason=args.reason)
            print(f"{args.kind} {change.previous_version} -> {change.version} (rolled back)")
        return 0
    finally:
        await nc.drain()


def _by(args: argparse.Namespace) -> str:
    return str(args.by or getpass.getuser())


async def _kind_of(js: Any, *, bucket: str, version: str) -> str:
    have = [k for k in sorted(KINDS) if version in await store.stored_versions(js, bucket=bucket, kind=k)]
    if len(have) != 1:
        where = "both kinds: give --kind" if have else "no kind"
        raise ModelError(f"version {version!r} is stored under {where} in bucket {bucket!r}")
    return have[0]


async def _list(js: Any, *, bucket: str, kinds: list[str], history: bool) -> None:
    await store.open_bucket(js, bucket=bucket)
    for kind in kinds:
        serving = await store.current_version(js, bucket=bucket, kind=kind)
        records = await store.history(js, bucket=bucket, kind=kind)
        published = {r["version"]: r for r in records if r.get("action") == "published"}
        print(f"{kind}: active {serving or '(none)'}; rollback would restore {_previous(records, serving)}")
        for version in await store.stored_versions(js, bucket=bucket, kind=kind):
            r = published.get(version, {})
            forced = " FORCED" if r.get("forced") else ""
            mark = "*" if version == serving else " "
            print(
                f" {mark} {version}  {r.get('time', '(no record)')}  {r.get('by', '')}{forced}  {r.get('reason', '')}"
            )
        if history:
            for r in records:
                print(
                    f"    {r['time']} {r['action']} {r['version']} (was {r['previous_version'] or '-'}) by {r['by']}: "
                    f"{r['reason']}"
                )


def _previous(records: list[dict[str, Any]], serving: str | None) -> str:
    stack = active_stack(records)
    if stack and stack[-1] == serving:
        stack.pop()
    return stack[-1] if stack else "(nothing)"
