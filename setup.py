"""Builds edge-personalizer with the modules a request runs through compiled to C by mypyc
(the code is mypy --strict clean, and mypyc turns its type annotations into native code):
a request then costs a fifth to a third fewer instructions than interpreted (measured in
bench/README.md, "Compiled request path").

So are the rule files' line reader and the compiling of rules, which every startup and
reload of a big rule set runs (bench/README.md, "Loading and compiling 10,000 rules").
Everything else (commands, the learning loop's background work, the dashboard) stays plain
Python. EP_PURE_PYTHON=1 builds without compiling, as does a machine without a C compiler
(the build then says so and installs the plain modules, which behave the same, only
slower).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The request's way, module by module, and the reading and compiling of rule files. Left
# interpreted: proxy/request_body.py (an async generator, for requests with a body), and
# rules/yaml_scalars.py (its loader is subclassed by the interpreted loader.py).
COMPILED = [
    "edge_personalizer/classify/classifier.py",
    "edge_personalizer/classify/cookies.py",
    "edge_personalizer/classify/device.py",
    "edge_personalizer/classify/edge.py",
    "edge_personalizer/classify/language.py",
    "edge_personalizer/classify/localtime.py",
    "edge_personalizer/classify/privacy.py",
    "edge_personalizer/classify/profile.py",
    "edge_personalizer/classify/profile_codec.py",
    "edge_personalizer/classify/referral.py",
    "edge_personalizer/classify/visitor.py",
    "edge_personalizer/endpoints/router.py",
    "edge_personalizer/http/client.py",
    "edge_personalizer/http/connection.py",
    "edge_personalizer/http/flow.py",
    "edge_personalizer/http/framing.py",
    "edge_personalizer/http/hosts.py",
    "edge_personalizer/http/pool.py",
    "edge_personalizer/learn/attribution.py",
    "edge_personalizer/learn/goals.py",
    "edge_personalizer/observability/access_log.py",
    "edge_personalizer/observability/metrics.py",
    "edge_personalizer/personalize/exchange.py",
    "edge_personalizer/personalize/fail_open.py",
    "edge_personalizer/personalize/held_head.py",
    "edge_personalizer/personalize/lifetime.py",
    "edge_personalizer/personalize/middleware.py",
    "edge_personalizer/personalize/page_edits.py",
    "edge_personalizer/personalize/personalizer.py",
    "edge_personalizer/personalize/response_headers.py",
    "edge_personalizer/personalize/response_start.py",
    "edge_personalizer/personalize/rewriting.py",
    "edge_personalizer/personalize/segments.py",
    "edge_personalizer/personalize/slot_presence.py",
    "edge_personalizer/proxy/client_ip.py",
    "edge_personalizer/proxy/forwarded.py",
    "edge_personalizer/proxy/headers.py",
    "edge_personalizer/proxy/origin.py",
    "edge_personalizer/proxy/pages.py",
    "edge_personalizer/proxy/refusals.py",
    "edge_personalizer/proxy/relay.py",
    "edge_personalizer/proxy/target.py",
    "edge_personalizer/proxy/websocket.py",
    "edge_personalizer/rewrite/bypass.py",
    "edge_personalizer/rewrite/edits.py",
    "edge_personalizer/rewrite/encoding.py",
    "edge_personalizer/rewrite/first_bytes.py",
    "edge_personalizer/rewrite/html.py",
    "edge_personalizer/rewrite/recovery.py",
    "edge_personalizer/rewrite/slot_search.py",
    "edge_personalizer/rewrite/stream.py",
    "edge_personalizer/rules/allocation.py",
    "edge_personalizer/rules/bucketing.py",
    "edge_personalizer/rules/compile/actions.py",
    "edge_personalizer/rules/compile/conditions.py",
    "edge_personalizer/rules/compile/context.py",
    "edge_personalizer/rules/compile/rules.py",
    "edge_personalizer/rules/conditions.py",
    "edge_personalizer/rules/evaluator.py",
    "edge_personalizer/rules/fields.py",
    "edge_personalizer/rules/html_context.py",
    "edge_personalizer/rules/index.py",
    "edge_personalizer/rules/model.py",
    "edge_personalizer/rules/quick_yaml.py",
    "edge_personalizer/rules/schedule.py",
    "edge_personalizer/rules/template.py",
    "edge_personalizer/rules/yaml_line.py",
]


class BuildOrFallBack(build_ext):
    """A compiler missing or failing leaves the plain modules in place, with a warning."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:   # noqa: BLE001 - any build failure falls back
            for extension in self.extensions:   # a part built alone would not import
                Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
            print(f"edge-personalizer: the request path was not compiled ({exc}); "
                  "installing it as plain Python", file=sys.stderr)


def compiled_modules() -> list[object]:
    if os.environ.get("EP_PURE_PYTHON", "") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    # One shared library for them all, inside the package (edge_personalizer/
    # compiled__mypyc.*.so), so that it is found wherever the package is.
    # mypyc writes that library's headers under build/edge_personalizer/ and looks for
    # them in build/ only.
    try:
        extensions = mypycify(COMPILED, opt_level="3", multi_file=True,
                              group_name="edge_personalizer.compiled")
    except (Exception, SystemExit) as exc:   # noqa: BLE001 - mypyc exits on type errors
        # The type check mypyc compiles from failed (its dependencies missing from a build
        # environment of one's own making, say): the plain modules, said so.
        print(f"edge-personalizer: the request path was not compiled (mypyc's type check "
              f"failed: {exc!r}; see its errors above); installing it as plain Python",
              file=sys.stderr)
        return []
    for extension in extensions:
        extension.include_dirs.append(os.path.join("build", "edge_personalizer"))
    return list(extensions)


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": BuildOrFallBack},
      options={"build_ext": {"parallel": os.cpu_count() or 1}})
