"""edge-personalizer: segments of one, at the edge.

    from edge_personalizer import OriginProxy, PersonalizeMiddleware
    app = PersonalizeMiddleware(OriginProxy("http://127.0.0.1:8000"), rules="rules/")
"""

from .app import EdgeApp, create_app
from .config import Settings, load_settings
from .errors import (
    EdgePersonalizerError,
    GeoDatabaseError,
    RequestRejected,
    RuleError,
    RuleSetInvalid,
    SettingsError,
    UpstreamError,
    UpstreamTimeout,
)
from .personalize import PersonalizeMiddleware
from .proxy import OriginProxy

__all__ = [
    "EdgeApp",
    "EdgePersonalizerError",
    "GeoDatabaseError",
    "OriginProxy",
    "PersonalizeMiddleware",
    "RequestRejected",
    "RuleError",
    "RuleSetInvalid",
    "Settings",
    "SettingsError",
    "UpstreamError",
    "UpstreamTimeout",
    "create_app",
    "load_settings",
]
