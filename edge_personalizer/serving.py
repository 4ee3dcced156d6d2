"""Serving under granian: the app is built once first, so bad settings, rules or databases
fail before the port is bound; then every worker builds its own from the same settings
(handed over in WORKER_SETTINGS_ENV) and, when forked, from the server's rule book, which
follows the rules directory as the workers do."""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import math
import multiprocessing
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Secret, Settings
from .errors import SettingsError

if TYPE_CHECKING:
    from .http.server import ServerOptions
    from .rules.book import RuleBook

__all__ = ["check_listening", "check_workers", "serve_settings", "usable_cpus", "worker_app"]

# Worker processes receive the resolved settings (as JSON) through this variable.
WORKER_SETTINGS_ENV = "EDGE_PERSONALIZER_WORKER_SETTINGS"
SERVER_PID_ENV = "EDGE_PERSONALIZER_SERVER_PID"


def serve_settings(settings: Settings) -> None:
    """Serve under granian until interrupted. The app is built here first, so bad settings,
    rules or databases fail before the port is bound; then every worker builds its own from
    the same settings, handed over in WORKER_SETTINGS_ENV."""
    from .app import create_app
    from .http.server import serve
    from .observability.logs import configure_logging
    from .observability.workers import board_directory, start_afresh
    from .rules.book import RuleBook

    configure_logging(fmt=settings.log_format, level=settings.log_level)
    check_workers(settings)
    check_listening(settings)
    keyed = with_one_profile_key(settings)
    checked = create_app(keyed).rules   # (a refusal comes before any warning)
    if not settings.profile_keys:
        logging.getLogger(__name__).warning(
            "no profile_keys configured (EP_PROFILE_KEYS): this server's workers sign "
            "profile cookies with one random key made at startup; the cookies will not "
            "survive a restart, and several instances serving one site need one shared key "
            "(set the same EP_PROFILE_KEYS on each)")
    settings = keyed
    start_afresh(board_directory(settings.data_dir, os.getpid()))
    os.environ[WORKER_SETTINGS_ENV] = settings.to_json()
    os.environ[SERVER_PID_ENV] = str(os.getpid())   # whom a worker's admin reload asks
    build = on_hangup = None
    if checked is not None and multiprocessing.get_start_method() == "fork":
        # Of the app built to check, only a rule book of what it compiled stays. It follows
        # the directory as the workers do (its watcher, SIGHUP, the admin reload), so a
        # worker forked later (one replaced after a crash) starts from the rules the others
        # serve, compiling nothing; spawned workers (another start method) build their own.
        book = RuleBook(checked.directory, inherited=checked, reports=False,
                        keyed_caching=settings.keyed_caching)
        book.guard_forks()
        if settings.rules_watch_interval > 0:
            book.watch_in_thread(settings.rules_watch_interval)
        build = functools.partial(worker_app, inherited=book)
        on_hangup = book.reload
    del checked
    serve("edge_personalizer.serving:worker_app", server_options(settings),
          setup_logging=functools.partial(configure_logging, fmt=settings.log_format,
                                          level=settings.log_level), build=build,
          on_hangup=on_hangup)


_WORKERS_PER_CPU = 4


def check_workers(settings: Settings) -> None:
    """SettingsError for far more workers than this machine has CPUs: each is a process of
    its own (tens of MB) serving many connections at once, so past one a CPU they only take
    memory, and by the hundred they take the machine down."""
    cpus, quota = usable_cpus()
    if settings.workers > _WORKERS_PER_CPU * cpus:
        where = "its CPU quota allows" if quota else "the server may use"
        raise SettingsError(f"workers must be at most {_WORKERS_PER_CPU * cpus} on this "
                            f"machine ({_WORKERS_PER_CPU} for each of the {cpus} CPUs "
                            f"{where}), got {settings.workers}: a worker serves many "
                            "connections at once, and more than one a CPU rarely helps",
                            setting="workers")


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup"),
                membership: str | None = None) -> tuple[int, bool]:
    """The CPUs this process may run on, fewer when a CPU quota (`docker run --cpus`, a
    Kubernetes CPU limit, systemd's CPUQuota=) gives its cgroup or one above it less time
    than those: `cpu.max` of cgroup v2, `cpu.cfs_quota_us` of v1, under `cgroup`, for
    the cgroups `membership` (/proc/self/cgroup) names. True with them when a quota
    decided."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = len(usable) if usable is not None else os.cpu_count() or 1
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            membership = "0::/\n1:cpu:/"   # the roots, as a cgroup namespace shows them
    quota = _cpu_quota(cgroup, membership)
    if quota is not None and math.ceil(quota) < cpus:
        return max(1, math.ceil(quota)), True
    return cpus, False


def _cpu_quota(cgroup: Path, membership: str) -> float | None:
    """CPUs' worth of time a period the tightest quota allows, of the process's cgroups
    and those above them; None without any."""
    quotas = []
    for line in membership.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            places, read = [cgroup], _v2_quota
        elif "cpu" in controllers.split(","):
            places, read = [cgroup / "cpu", cgroup / controllers], _v1_quota
        else:
            continue
        parts = [part for part in path.split("/") if part]
        for base in places:
            for depth in range(len(parts), -1, -1):
                quota = read(base.joinpath(*parts[:depth]))
                if quota is not None:
                    quotas.append(quota)
    return min(quotas, default=None)


def _v2_quota(folder: Path) -> float | None:
    try:   # "max 100000" (no quota) or "150000 100000" (1.5 CPUs)
        quota, period = (folder / "cpu.max").read_text().split()
        return int(quota) / int(period) if quota != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:   # -1: no quota
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def check_listening(settings: Settings) -> None:
    """SettingsError unless the server can listen where it is told to."""
    from .http.server import check_port

    try:
        check_port(settings.host, settings.port)
    except OSError as exc:
        hint = (" (is another server running there? stop it, or choose another port: "
                "--port, EP_PORT, or make demo PORT=...)" if exc.errno == errno.EADDRINUSE
                else "")
        raise SettingsError(f"cannot listen on {settings.host}:{settings.port}: "
                            f"{exc.strerror or exc}{hint}") from None


def with_one_profile_key(settings: Settings) -> Settings:
    """Without configured profile keys, one random key for all the workers of this server
    (a worker replaced later gets it too), so that each reads the cookies the others sign."""
    if settings.profile_keys:
        return settings
    return dataclasses.replace(settings, profile_keys=(Secret(secrets.token_urlsafe(32)),))


def server_options(settings: Settings) -> ServerOptions:
    from .http.server import ServerOptions

    return ServerOptions(
        host=settings.host, port=settings.port, workers=settings.workers,
        keep_alive_timeout=settings.keep_alive_timeout,
        # The app answers 431 or 414 to heads past max_header_bytes; the server refuses
        # those past twice that before they are held whole.
        max_head_bytes=2 * settings.max_header_bytes + 4096,
        log_level=settings.log_level)


def worker_app(inherited: RuleBook | None = None) -> Any:
    """Factory each worker process calls: the app, from the settings the server handed over
    (and, in a forked worker, the rule book of its server)."""
    from .app import create_app
    from .observability.logs import configure_logging

    settings = Settings.from_json(os.environ[WORKER_SETTINGS_ENV])
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return create_app(settings, inherited=inherited)
