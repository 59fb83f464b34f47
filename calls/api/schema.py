"""OpenAPI descriptions of our authentication schemes (loaded by CallsConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "calls.api.authentication.BearerTokenAuthentication"
    name = ["bearerAuth", "tokenHeader"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        return [{"bearerAuth": []}, {"tokenHeader": []}]  # either header, not both

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "description": "API token (cbk_…) or end-user session token (cbs_…)",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "token",
                "description": "WaGo-style header carrying the same tokens",
            },
        ]


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "calls.api.authentication.StaffSessionAuthentication"
    name = "staffSession"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "Django admin login of a staff user; unsafe methods need X-CSRFToken",
        }
