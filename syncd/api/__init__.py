"""syncd's HTTP face: the JSON API for the academy's app and the signed-link pages."""

from syncd.api.app import create_app, create_router, install
from syncd.api.settings import ApiKey, ApiSettings

__all__ = ["ApiKey", "ApiSettings", "create_app", "create_router", "install"]
