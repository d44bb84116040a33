"""Run one gateway: ``python -m services.gateway [--config FILE]``."""

from services.core.runner import service_main
from services.gateway.server import GatewayService

if __name__ == "__main__":
    service_main("gateway", lambda nc, settings, _args: GatewayService(nc=nc, settings=settings))
