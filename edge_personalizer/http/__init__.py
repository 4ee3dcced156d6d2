"""HTTP: the origin client and its connection pool, and running the server.

In: URLs, methods, raw header lists and body streams. Out: raw responses (status,
headers, a body iterator) and a running ASGI server. It must never import anything of
the domain (classify, rules, rewrite, personalize, learn): it speaks HTTP, nothing else.
"""
