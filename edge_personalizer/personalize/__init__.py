"""Personalize: the middleware that runs a request's way, classify -> decide -> forward ->
rewrite, around any ASGI app.

In: an ASGI request. Out: the app's response with the decision applied (headers, cookies,
rewritten HTML) or a redirect. It must never turn an error of its own into a failed
request: every stage fails open (fail_open.py) and the page goes out as the app made it.
"""

from .middleware import PersonalizeMiddleware

__all__ = ["PersonalizeMiddleware"]
