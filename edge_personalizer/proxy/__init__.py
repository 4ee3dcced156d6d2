"""Proxy: an ASGI request in, the configured origin's response streamed back out.

Requests only ever go to the one configured origin (never an open proxy), bodies are
streamed both ways, and the origin's failures become clear 502/504 answers. Nothing
here decides or rewrites; it only forwards.
"""

from .origin import OriginProxy

__all__ = ["OriginProxy"]
