"""The dashboard: server-side pages (Jinja), one script per page, uPlot charts (vendored).

``web_handlers(settings)`` returns the route handlers to mount with ``create_app(extra=...)``.
"""

from tally.web.routes import web_handlers
from tally.web.settings import WebSettings

__all__ = ["WebSettings", "web_handlers"]
