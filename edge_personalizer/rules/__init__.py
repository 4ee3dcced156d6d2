"""Rules: YAML files in a rules directory in, an immutable loaded rule set out.

Loading happens at startup and on reload, never per request; a file that does not load
raises RuleError naming file, line and column, and the previous set keeps serving.
"""
