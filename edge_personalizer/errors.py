"""Every exception edge-personalizer raises on purpose.

    * EdgePersonalizerError      base: anything we raise on purpose
      + SettingsError            bad settings or config file; startup only
      + RuleError                a rule file does not load (.source, .line, .column)
        - RuleSetInvalid         a rules directory with bad files (.errors: each RuleError)
      + GeoDatabaseError         .mmdb missing, unreadable or of the wrong type
      + RequestRejected          a client request breaks a limit (.status)
      + UpstreamError            origin unreachable, refusing or broken mid-response
        - UpstreamTimeout        origin too slow
        - UpstreamBusy           no origin connection free in time, or too many long-lived
                                 responses (answered 503 with Retry-After)
        - BodyDecodingError      a compressed body truncated, corrupt or followed by garbage
      + StoreError               the counter store: a bad store_url, or unreachable / failing
        - TableUnreadable        a published table the store answers for does not read or
                                 decode (.table, .version: None when not even that reads)

Startup errors end the process with their message; request errors become a clear
response (4xx for the client's mistakes, 502/504 for the origin's) and a log line.
"""

from __future__ import annotations

from pathlib import Path


class EdgePersonalizerError(Exception):
    """Base of every error raised on purpose."""


class SettingsError(EdgePersonalizerError):
    """A setting, flag, environment variable or config file value is invalid; `setting`
    names the setting at fault, when one is (to say where it was given)."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class RuleError(EdgePersonalizerError):
    """A rule file cannot be loaded; the message names file, line and reason."""

    def __init__(
        self, message: str, *, source: Path, line: int | None = None, column: int | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.reason = message
        where = str(source)
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class RuleSetInvalid(RuleError):
    """A rules directory with one or more bad files; `.errors` holds each one."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.reason, source=first.source, line=first.line, column=first.column)
        if len(errors) > 1:
            self.args = (f"{self.args[0]} (and {len(errors) - 1} more)",)


class GeoDatabaseError(EdgePersonalizerError):
    """The geo database file is missing, unreadable or not a supported type."""


class RequestRejected(EdgePersonalizerError):
    """A client request breaks a configured limit; answered with `status`."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


class UpstreamError(EdgePersonalizerError):
    """The origin could not be reached or broke off its response."""


class UpstreamInvalid(UpstreamError):
    """The origin answered, but not in HTTP/1.1 the proxy may pass on (an invalid or
    oversized head, conflicting lengths, an unknown transfer coding)."""


class UpstreamRefused(UpstreamError):
    """The origin answered a WebSocket upgrade with a client error (`status`: 401, 403,
    404...): passed on as the origin said it, not as an outage."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


class UpstreamTimeout(UpstreamError):
    """The origin did not answer within the configured timeout."""


class StoreError(EdgePersonalizerError):
    """The counter store cannot be opened (a bad `store_url`) or a read or write failed;
    the message names the store and the cause. `passes` False: it will not pass by
    itself (the message says what to do)."""

    def __init__(self, message: str, *, passes: bool = True) -> None:
        super().__init__(message)
        self.passes = passes


class UpstreamBusy(UpstreamError):
    """No connection to the origin became free in time, or the cap of long-lived
    responses is reached: the proxy answers 503 with Retry-After."""


class BodyDecodingError(UpstreamError):
    """The origin's compressed body is truncated, corrupt, or followed by other bytes."""


class TableUnreadable(StoreError):
    """A table published in the store (bandit weights, a model) does not read or decode
    while the store answers: `table` is its name, `version` the version that does not
    decode (None when the store's copy does not even give one). It does not pass by
    itself: a reader keeps its last good copy, and the trainer publishes over it."""

    def __init__(self, message: str, *, table: str, version: int | None = None) -> None:
        super().__init__(message, passes=False)
        self.table = table
        self.version = version
