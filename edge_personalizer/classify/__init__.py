"""Classify: an ASGI request's data in, frozen facts about the visitor out.

Only local lookups (the mmdb file, bounded caches), never the network; nothing here
knows about rules, rewriting or the proxy.
"""
