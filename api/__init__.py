"""The HTTP JSON API (``/api/v1``) over the read API; the dashboard will share its app."""

from tally.api.app import create_app
from tally.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
