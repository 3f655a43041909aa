"""The security headers of every page the server renders (dashboards and trace pages)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# No inline script or style anywhere: pages load their CSS and JS from the server itself.
PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
)
