"""Endpoints: everything under /__ep/, in one route table.

In: requests whose path starts with /__ep/. Out: our own answers (health, metrics,
reload, decisions and fragments for edges; later results and the dashboard). It must
never forward such a request to the site, and never answer an admin route without
the admin token.
"""

from .router import ADMIN_PREFIX, Endpoints

__all__ = ["ADMIN_PREFIX", "Endpoints"]
