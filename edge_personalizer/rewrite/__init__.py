"""Rewrite: (decision, HTML chunks) in, personalized HTML chunks out, streaming.

Only the elements the decision names change; every other byte is passed on as it came.
Nothing here decides or talks to the origin.
"""
