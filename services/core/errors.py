"""The project's error hierarchy, under the name services use: defined in ``cascade_common.errors``
(below ``classifier/``, which raises some of them and must not import ``services/``)."""

from cascade_common.errors import *  # noqa: F403 (the names are cascade_common.errors.__all__)
from cascade_common.errors import __all__ as __all__
