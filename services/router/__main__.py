"""Run one router: ``python -m services.router [--config FILE]``."""

from services.core.runner import service_main
from services.router.service import RouterService

if __name__ == "__main__":
    service_main("router", lambda nc, settings, _args: RouterService(nc=nc, settings=settings))
