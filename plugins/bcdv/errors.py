"""The one error taxonomy of bcdv.

Every failure the product reports is one of these classes. API errors carry the status, the
service's own error code and message and the request id, never a token or a secret.
"""

from __future__ import annotations


class BcdvError(Exception):
    """Root of every error bcdv raises on purpose."""


class ConfigError(BcdvError):
    """Settings or connections are missing or wrong."""


class MappingError(ConfigError):
    """A mapping file is invalid; the message names file, line and field path."""


class AuthenticationError(BcdvError):
    """The identity endpoint refused to issue a token (bad secret, unknown tenant, ...)."""


class ApiError(BcdvError):
    """A Business Central or Dataverse request failed.

    Attributes:
        status: HTTP status (0 when no response arrived).
        code: the service's error code (``Request_EntityChanged``, ``0x80060882``, ...).
        message: the service's error message, as the service wrote it.
        method, url: the request (the URL carries no secret: tokens travel in headers).
        request_id: the service's request id header, for support tickets.
        retry_after: seconds the service asked us to wait, if it said.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        method: str = "",
        url: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.url = url
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f"{self.method} {self.url}".strip()
        code = f" {self.code}" if self.code else ""
        return f"{self.status}{code}: {self.message}" + (f" ({where})" if where else "")


class RetriableApiError(ApiError):
    """Throttling, gateway or transport failure that outlived the retry budget."""


class FatalApiError(ApiError):
    """A request the service rejected for good (4xx other than throttling)."""


class ConcurrencyError(FatalApiError):
    """The record changed since we read it (BC 409 Request_EntityChanged, Dataverse 412)."""


class NotFoundError(FatalApiError):
    """The record does not exist (404)."""


class SafetyStopError(BcdvError):
    """A safety valve stopped a run (e.g. another run of the same mapping holds the lock)."""


def error_text(exc: BaseException) -> str:
    """What a failed job's message says about the exception that ended it."""
    text = str(exc).strip()
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:2000]
