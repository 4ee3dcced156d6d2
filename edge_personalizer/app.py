"""create_app(settings) -> the ASGI app the server runs: wiring and lifespan, no logic."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import anyio
import anyio.abc
from starlette.types import ASGIApp, Receive, Scope, Send

from .background import BackgroundTasks
from .classify.classifier import Classifier
from .classify.device import DeviceClassifier
from .classify.edge import EdgeMapping, TrustedEdge, client_ip_headers
from .classify.geo import AnonymousIpDatabase, GeoDatabase, GeoLocator
from .classify.privacy import PrivacyPolicy
from .classify.profile import InterestMap, ProfileTracker
from .classify.profile_codec import ProfileCodec, RejectReason
from .classify.referral import ReferralClassifier, ReferrerTable
from .config import Settings
from .config.paths import check_data_outside_rules
from .endpoints import Endpoints
from .endpoints.admin import Admin, AdminToken, PageNotes
from .endpoints.dashboard import Dashboard
from .endpoints.edge import EdgeDecisions
from .endpoints.learning import Beacon, Results
from .learn.affinity import Predictor
from .learn.attribution import Learning
from .learn.catalog import rule_goals, running_goals, running_variants
from .learn.counters import Accumulator
from .learn.flusher import Flusher
from .learn.goals import goals_not_counted
from .learn.readers import catalog_reader, model_reader, weights_reader
from .learn.store import open_store
from .learn.trainer import Trainer, bandit_specs
from .observability.access_log import AccessLog
from .observability.logs import dropped_log_lines
from .observability.metrics import Metrics
from .observability.workers import Publisher, WorkerBoard, board_directory
from .personalize import PersonalizeMiddleware
from .personalize.personalizer import Personalizer
from .personalize.slot_presence import slots_not_found
from .proxy import OriginProxy
from .proxy.client_ip import ClientAddressMiddleware, TrustedProxies
from .rewrite.first_bytes import FirstBytesMemo
from .rules.book import RuleBook
from .rules.parse_cache import ParseCache
from .rules.preview import PreviewSigner
from .rules.tree import mark_data_dir
from .serving import SERVER_PID_ENV

logger = logging.getLogger(__name__)


class EdgeApp:
    """The whole product as one ASGI app, the request's way from the outside in:
    client address > access log > /__ep/ endpoints > personalize > origin proxy (or the
    ASGI app given in its place).

    Building it opens every resource that can be wrong (rules, geo database), so a bad
    setting fails at startup; the lifespan closes them on shutdown.
    """

    def __init__(self, settings: Settings, *, site: ASGIApp | None = None,
                 clock: Callable[[], float] = time.time, learn_slots: bool = True,
                 inherited: RuleBook | None = None) -> None:
        self.settings = settings
        if settings.rules_dir is not None:   # before data_dir is written, or anything opened
            check_data_outside_rules(settings.data_dir, settings.rules_dir)
        trusted = TrustedProxies(settings.trusted_proxies,
                                 client_headers=client_ip_headers(settings.edge_vendor))
        self.metrics = Metrics()
        self.background = BackgroundTasks()
        self.metrics.watch_log(dropped_log_lines, lambda: len(self.background.troubles))
        self.geo = GeoDatabase(settings.geo_db) if settings.geo_db else None
        keys = profile_keys(settings)
        self.rules = _rule_book(settings, keys[0], self._reloaded, inherited)
        if self.rules is not None:
            self.metrics.rules_loaded.set(self.rules.current.loaded_at)
            self.metrics.serving(self.rules.current.version)
            # (a worker replaced after a crash inherits its server's refusal, if any)
            self.metrics.reload_failing.set(1 if self.rules.last_error else 0)
        self.proxy: OriginProxy | None = None
        if site is None:
            site = self.proxy = _origin_proxy(settings, trusted, self.metrics)
        self.anonymous = (AnonymousIpDatabase(settings.anonymous_db)
                          if settings.anonymous_db else None)
        self.classifier = build_classifier(settings, keys=keys, geo=self.geo,
                                           anonymous=self.anonymous,
                                           on_reject=self.metrics.profile_rejected)
        token = settings.admin_token.reveal() if settings.admin_token else None
        # Counting: a dict increment a page here, written to the store by the flusher.
        self.store = open_store(settings.store_location())
        self.counters = Accumulator(clock=clock)
        self.flusher = Flusher(self.counters, self.store, interval=settings.store_flush_interval)
        # Bandit weights: learned from the store's totals by the trainer (any worker),
        # read back by each worker's reader; the request path only reads its table.
        # And the "visitors like you" model, rebuilt every learn_interval, read by
        # profile.predicted.* through the classifier.
        poll = settings.store_poll_interval
        self.trainer = Trainer(self.store, learn_interval=settings.learn_interval, tick=poll,
                               specs=lambda: bandit_specs(self.rules.current,
                                                          self.catalog.current)
                               if self.rules is not None else [],
                               experiments=lambda: running_goals(self.rules.current)
                               if self.rules is not None else {},
                               variants=lambda: running_variants(self.rules.current)
                               if self.rules is not None else {},
                               rule_goals=lambda: rule_goals(self.rules.current)
                               if self.rules is not None else ())
        # (a table that does not decode is a trouble of the learning loop, as the trainer's)
        troubles = self.trainer.troubles
        self.weights = weights_reader(self.store, interval=poll, troubles=troubles)
        self.model = model_reader(self.store, interval=poll, troubles=troubles)
        # the experiments' goals as recorded: stopped ones', and when a goal joined one
        self.catalog = catalog_reader(self.store, interval=poll, troubles=troubles)
        self.classifier.predictor = Predictor(lambda: self.model.current)
        self.learning = Learning(self.counters, on_invalid=self.metrics.goal_invalid,
                                 weights=self.weights, catalog=self.catalog)
        self.metrics.watch_learning(self.learning, self.flusher, self.trainer)
        personalized = PersonalizeMiddleware(
            site, rules=self.rules, classifier=self.classifier,
            trusted_proxies=trusted, cookie_secure=settings.profile_cookie_secure,
            cookie_max_age_days=settings.profile_max_age_days, debug_token=token,
            preview=PreviewSigner(keys[0]), variant_header=settings.variant_header,
            compress_pages=settings.compress_pages,
            keyed_caching=settings.keyed_caching, shared_max_age=settings.shared_max_age,
            cache_tag_headers=settings.cache_tag_headers, first_bytes=FirstBytesMemo(),
            learning=self.learning, clock=clock, learn_slots=learn_slots,
            head_hold_seconds=settings.head_hold_seconds, observer=self.metrics)
        # Several workers: each publishes its state, so health, metrics and reloads answer
        # for the whole server whichever worker a request reaches.
        self.board = (WorkerBoard(board_directory(settings.data_dir, os.getppid()))
                      if settings.workers > 1 else None)
        self.admin = admin = Admin(
            metrics=self.metrics, token=AdminToken(token),
            origin_probe=self.proxy.probe if self.proxy else None, rules=self.rules,
            geo=self.geo.info if self.geo else None, board=self.board, store=self.store,
            flusher=self.flusher, server_pid=_server_pid(), learning=self.trainer.health,
            background=self.background.health,
            notes=_page_notes(personalized.personalizer, self.rules, self.learning))
        self.publisher = (Publisher(self.board, admin.state, self.metrics.state_unpublished.set)
                          if self.board is not None else None)
        routes = admin.routes()
        routes |= Results(store=self.store, rules=self.rules, token=AdminToken(token)).routes()
        dashboard = Dashboard(store=self.store, rules=self.rules, token=token,
                              page_notes=admin.told_of_pages)
        routes |= dashboard.routes()
        prefixes = dashboard.prefixes()
        if personalized.page_headers is not None:
            edge = EdgeDecisions(personalized.page_headers,
                                 trusted_only=settings.edge_trusted_only)
            routes |= edge.routes() | Beacon(personalized.page_headers).routes()
            prefixes |= edge.prefixes()
        endpoints = Endpoints(personalized, routes=routes, prefixes=prefixes)
        self.app: ASGIApp = ClientAddressMiddleware(
            AccessLog(endpoints, metrics=self.metrics, enabled=settings.access_log),
            trusted=trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    def _reloaded(self, ok: bool) -> None:
        if ok and self.rules is not None:
            self.metrics.rules_loaded.set(self.rules.current.loaded_at)
            self.metrics.serving(self.rules.current.version)
        elif not ok:
            self.metrics.rule_reload_failures.inc()
        self.metrics.reload_failing.set(0 if ok else 1)
        if self.publisher is not None:
            self.publisher.publish()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # Background work (the rules watcher, the counts' flusher) lives in a task group
        # owned by the lifespan, each task kept running on its own (background.py);
        # cancelling the group makes the flusher's last write.
        kept = self.background
        async with anyio.create_task_group() as tasks:
            message = await receive()
            if message["type"] != "lifespan.startup":
                return
            await kept.start(tasks, "the counts' flusher", self.flusher.run)
            # the published tables read before the first request (and the trainer's step),
            # the three at once (each bounded by the store's timeouts)
            async with anyio.create_task_group() as readers:
                for reader in (self.weights, self.model, self.catalog):
                    readers.start_soon(kept.start, tasks, f"the {reader.name} reader",
                                       reader.run)
            await kept.start(tasks, "the trainer", self.trainer.run)
            if self.publisher is not None:
                kept.start_soon(tasks, "publishing this worker's state", self.publisher.run)
            if self.rules is not None:
                interval = self.settings.rules_watch_interval
                if interval > 0:
                    kept.start_soon(tasks, "the rules watcher",
                                    functools.partial(self.rules.watch, interval))
                self._reload_on_sighup(tasks)
            logger.info("forwarding to %s; rules: %s; geo database: %s",
                        self.settings.origin_url if self.proxy else "the application",
                        f"{self.settings.rules_dir} (version {self.rules.current.version}; "
                        f"{self.rules.current.size}; files read anew "
                        f"{self.rules.files_read}, compiled anew {self.rules.files_compiled})"
                        if self.rules else "none",
                        self.geo.info.database_type if self.geo else "none")
            # The User-Agent parser and bot catalogue are built here, in the serving
            # process: the supervisor of several workers only builds the app to check it.
            self.classifier.devices.warm()
            # Everything loaded so far (parsers, rules, catalogues) lives as long as the
            # process: keep it out of the garbage collector's generations, which shortens
            # every collection while requests run.
            gc.collect()
            gc.freeze()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            tasks.cancel_scope.cancel()
        await self.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    def _reload_on_sighup(self, tasks: anyio.abc.TaskGroup) -> None:
        rules = self.rules
        if rules is None:
            return

        def reload() -> None:
            tasks.start_soon(anyio.to_thread.run_sync, rules.reload)

        # Signal handlers belong to the main thread, and not every platform has SIGHUP.
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
        else:
            logger.debug("no SIGHUP handler in this process; the rules watcher still runs")

    async def aclose(self) -> None:
        await self.store.close()
        if self.proxy is not None:
            await self.proxy.aclose()
        for database in (self.geo, self.anonymous):
            if database is not None:
                database.close()


def _origin_proxy(settings: Settings, trusted: TrustedProxies,
                  metrics: Metrics) -> OriginProxy:
    return OriginProxy(
        settings.require_origin(), trusted_proxies=trusted,
        connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
        max_header_bytes=settings.max_header_bytes, max_header_count=settings.max_header_count,
        max_body_bytes=settings.max_body_bytes, max_connections=settings.max_connections,
        pool_timeout=settings.pool_timeout, max_long_lived=settings.max_long_lived,
        preserve_host=settings.preserve_host, body_timeout=settings.body_timeout,
        send_timeout=settings.send_timeout, public_url=settings.public_url,
        edge_headers=tuple(settings.edge_headers), observer=metrics)


def _page_notes(personalizer: Personalizer | None, rules: RuleBook | None,
                learning: Learning) -> tuple[PageNotes, ...]:
    """What the pages served tell of the rules: slots on no page, goals whose requests
    were answered with errors."""
    if personalizer is None or rules is None:
        return ()
    return (PageNotes("slots_not_found", personalizer.slots.looks, slots_not_found),
            PageNotes("goals_not_counted",
                      lambda: learning.goals.seen(rules.current.goals),
                      goals_not_counted))


def _rule_book(settings: Settings, key: bytes, on_reload: Callable[[bool], None],
               inherited: RuleBook | None) -> RuleBook | None:
    """The rules the app serves (None without a rules directory); with profile keys
    configured, their files' parses are kept in data_dir, signed with the first."""
    if settings.rules_dir is None:
        return None
    mark_data_dir(settings.data_dir)   # rules that come to reach it are refused
    # The cookies the server sets or reads itself, by name: no rule may set them.
    own = {settings.profile_cookie: "profile_cookie"}
    if settings.consent_cookie is not None:
        own[settings.consent_cookie] = "consent_cookie"
    parses = (ParseCache(settings.data_dir, settings.rules_dir, key)
              if settings.profile_keys else None)
    return RuleBook(settings.rules_dir, on_reload=on_reload, parses=parses,
                    inherited=inherited, own_cookies=own,
                    keyed_caching=settings.keyed_caching)


def profile_keys(settings: Settings, *, serving: bool = True) -> list[bytes]:
    """The configured signing keys; without any, a random key for this process only (a
    server says so: the cookies it signs will not survive a restart)."""
    if settings.profile_keys:
        return [key.reveal().encode() for key in settings.profile_keys]
    if serving:
        logger.warning("no profile_keys configured (EP_PROFILE_KEYS): profile cookies are "
                       "signed with a random key and will not survive a restart")
    return [secrets.token_bytes(32)]


def build_classifier(settings: Settings, *, keys: list[bytes], geo: GeoDatabase | None,
                     anonymous: AnonymousIpDatabase | None,
                     on_reject: Callable[[RejectReason], None]) -> Classifier:
    codec = ProfileCodec(keys, max_bytes=settings.profile_max_bytes,
                         max_age_days=settings.profile_max_age_days)
    tracker = ProfileTracker(
        codec, cookie_name=settings.profile_cookie,
        privacy=PrivacyPolicy(honor_dnt=settings.honor_dnt,
                              consent_cookie=settings.consent_cookie,
                              consent_value=settings.consent_value),
        half_life_days=settings.interest_half_life_days,
        visit_gap_seconds=settings.visit_timeout_minutes * 60,
        on_reject=on_reject)
    locator = (GeoLocator(geo, anonymous=anonymous, max_entries=settings.geo_cache_size)
               if geo else None)
    return Classifier(
        devices=DeviceClassifier(max_entries=settings.device_cache_size),
        referrals=ReferralClassifier(ReferrerTable(settings.referrer_sources)),
        geo=locator, profiles=tracker, default_time_zone=settings.default_time_zone,
        edge=TrustedEdge(settings.edge_vendor,
                         EdgeMapping(settings.edge_headers) if settings.edge_headers else None))


_UNREAD: Mapping[RejectReason, str] = MappingProxyType({
    "malformed": "it is malformed",
    "signature": "its signature matches none of the profile_keys",
    "oversized": "it is longer than any profile cookie is written (4,000 bytes)",
    "expired": "it is older than profile_max_age_days",
    "version": "it was written in another format",
})


def open_classifier(settings: Settings) -> Classifier:
    """A Classifier from settings alone (for `explain` and `classify`): opens the geo
    databases and reads the rules directory's interest categories. A profile cookie it
    cannot read is said once on stderr, with why."""
    geo = GeoDatabase(settings.geo_db) if settings.geo_db else None
    anonymous = AnonymousIpDatabase(settings.anonymous_db) if settings.anonymous_db else None
    said: set[str] = set()

    def unread(reason: RejectReason) -> None:
        if reason in said:
            return
        said.add(reason)
        why = ("no profile_keys are configured (EP_PROFILE_KEYS) to verify it"
               if not settings.profile_keys and reason == "signature" else _UNREAD[reason])
        print(f"edge-personalizer: the profile cookie was not read ({why}): "
              "classified as a first visit", file=sys.stderr)

    classifier = build_classifier(settings, keys=profile_keys(settings, serving=False),
                                  geo=geo, anonymous=anonymous, on_reject=unread)
    if settings.rules_dir is not None and classifier.profiles is not None:
        rules = RuleBook(settings.rules_dir)
        classifier.profiles.interests = InterestMap(rules.current.interests)
    return classifier


def create_app(settings: Settings, *, site: ASGIApp | None = None,
               inherited: RuleBook | None = None) -> EdgeApp:
    """Build the product's ASGI app, in front of the configured origin or of `site` (an
    ASGI app: personalization inside a Python site); raises our errors for bad rules or
    geo database. `inherited`: the rule book of the server that forked this worker."""
    return EdgeApp(settings, site=site, inherited=inherited)


def _server_pid() -> int | None:
    """The `serve` process this worker was forked by (its admin reload asks it), or None
    when the app runs some other way."""
    named = os.environ.get(SERVER_PID_ENV, "")
    return int(named) if named.isdigit() and int(named) == os.getppid() else None
