"""Run one tier worker: ``python -m services.tier --tier small [--config FILE]``."""

import argparse

from services.core.errors import ConfigError
from services.core.runner import service_main
from services.tier.worker import TierWorker


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tier", required=True, help="name of the tier to serve, as in the config's `tiers:`")


def _build(nc, settings, args):  # type: ignore[no-untyped-def]
    if args.tier not in settings.tiers:
        raise ConfigError(f"unknown tier {args.tier!r}; configured: {sorted(settings.tiers)}")
    return TierWorker(
        nc=nc, tier=args.tier, settings=settings.tiers[args.tier], max_payload_bytes=settings.nats.max_payload_bytes
    )


if __name__ == "__main__":
    service_main("tier", _build, add_arguments=_add_arguments)
