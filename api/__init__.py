"""The HTTP JSON API (``/api/v1``): read, monitors and traces behind bearer tokens, with OpenAPI."""

from tally.api.app import create_app
from tally.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
