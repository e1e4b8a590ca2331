"""HTTP facts shared by the adapters: statuses, ``Retry-After``, headers a request can carry."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from stigg_cache.adapters._stigg_json import UsageCounts, parse_entitlements, usage_counts
from stigg_cache.core.pacing import MAX_RETRY_AFTER_S
from stigg_cache.errors import (
    ConfigurationError,
    FailureKind,
    InvalidResponseError,
    StiggRejectedError,
    StiggUnavailableError,
)
from stigg_cache.models import Snapshot

_CHARACTER_NAMES = {
    "\n": "a line feed (\\n)",
    "\r": "a carriage return (\\r)",
    " ": "a space",
    "\t": "a tab",
}


def _unsendable_at(value: str) -> int | None:
    """Where the first character a header value cannot hold is: anything but visible ASCII,
    save a space or tab between two visible characters (HTTP strips them at either end)."""
    last = len(value) - 1
    for index, char in enumerate(value):
        if not ("!" <= char <= "~" or (char in " \t" and 0 < index < last)):
            return index
    return None


def refuse_unsendable_headers(headers: Iterable[tuple[Any, Any]], inner: object = None) -> None:
    """Refuse headers HTTP cannot carry now, rather than at every request: those of the
    user's SDK client ``inner``, or of the built-in client (``None``).

    A key read from a file or a Kubernetes secret often ends in a newline: h11,
    http.client and requests then refuse every request, quoting the key. The
    message names the header, the character and where it is: never the value.

    Raises:
        ConfigurationError: the first header with a value no request can carry.
    """
    whose = (
        "the built-in client (api_key= or STIGG_API_KEY)"
        if inner is None
        else f"the {type(inner).__module__.split('.')[0]}.{type(inner).__qualname__} given"
    )
    for name, value in headers:
        if not isinstance(value, str | bytes):  # an SDK's marker for "leave out"
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        index = _unsendable_at(text)
        if index is None:
            continue
        label = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        key = label.lower() == "x-api-key"
        char = text[index]
        raise ConfigurationError(
            f"{whose}: its {label} header{' (the API key)' if key else ''} holds "
            f"{_CHARACTER_NAMES.get(char, f'the character U+{ord(char):04X}')} at character "
            f"{index + 1} of {len(text)}, which no HTTP request can carry; "
            + (
                "a key read from a file or a Kubernetes secret often ends in a newline: "
                "pass it stripped (key.strip())"
                if key
                else "remove it from the value (value.strip() for one at either end)"
            )
        )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return min(MAX_RETRY_AFTER_S, max(0.0, float(lowered["retry-after-ms"]) / 1000))
        value = lowered.get("retry-after")
        if value is None:
            return None
        if value.strip().replace(".", "", 1).isdigit():
            return min(MAX_RETRY_AFTER_S, float(value))
        moment = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, OverflowError):
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, moment.timestamp() - time.time()))


def is_answer(status: int) -> bool:
    """Whether an HTTP status is an answer to read: 2xx, or an error (4xx, 5xx) whose body
    says why. A redirect (or an informational status) is neither: it is never followed,
    since our API key would go along, and it acknowledges nothing."""
    return 200 <= status < 300 or status >= 400


def failure_for_status(status: int, headers: Mapping[str, str]) -> StiggUnavailableError:
    """The error an HTTP status other than 2xx from Stigg means."""
    message = f"Stigg answered HTTP {status}"
    if status < 400:  # a fault to retry (never a record's fault, never an acknowledgement)
        return StiggUnavailableError(
            FailureKind.INVALID_RESPONSE,
            f"{message}, which is no answer: redirects are never followed (is the URL right?)",
            status_code=status,
        )
    if status == 429:
        return StiggUnavailableError(
            FailureKind.RATE_LIMITED,
            message,
            status_code=status,
            retry_after_s=parse_retry_after(headers),
        )
    if status >= 500 or status == 408:
        return StiggUnavailableError(
            FailureKind.SERVER,
            message,
            status_code=status,
            retry_after_s=parse_retry_after(headers),
        )
    if status in (401, 403):
        return StiggRejectedError(
            FailureKind.AUTH, f"{message}: the API key was refused", status_code=status
        )
    return StiggRejectedError(FailureKind.REJECTED, message, status_code=status)


def snapshot_from_body(body: bytes, customer_id: str, resource_id: str | None) -> Snapshot:
    """Parse a ``GET .../entitlements`` body, mapping every shape error to a failure."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict) or "data" not in document:
            raise InvalidResponseError("expected an object with 'data'")
        return parse_entitlements(
            document["data"], customer_id=customer_id, resource_id=resource_id, fetched_at=0.0
        )
    except (ValueError, RecursionError) as error:
        raise StiggUnavailableError(
            FailureKind.INVALID_RESPONSE, f"Stigg's entitlements answer is unusable: {error}"
        ) from None


def snake_case(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Stigg's camelCase wire keys as the REST SDK's snake_case parameters."""
    return {re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value for key, value in payload.items()}


def camel_case(payload: Mapping[str, Any]) -> dict[str, Any]:
    """snake_case parameters as Stigg's camelCase wire keys."""
    return {
        re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), key): value
        for key, value in payload.items()
    }


def acknowledged(body: bytes) -> UsageCounts:
    """Check that a 2xx answer to sent usage is Stigg's JSON object; what it counted.

    Anything else (a proxy's or a captive portal's page) acknowledges nothing:
    taking it for Stigg's word would drop the records as sent. The counts are
    the features' usage an answer to ``POST /api/v2/usage`` carries (``{}`` for
    events).
    """
    document = _json(body)
    if not isinstance(document, dict):
        raise StiggUnavailableError(
            FailureKind.INVALID_RESPONSE, "Stigg's answer is not a JSON object"
        )
    data = document.get("data")
    return usage_counts(data.get("usages") if isinstance(data, dict) else data)


def json_data(body: bytes) -> Any:
    """The ``data`` member of a Stigg answer, or a failure if it is not JSON."""
    document = _json(body) if body else {}
    return document.get("data") if isinstance(document, dict) else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise StiggUnavailableError(
            FailureKind.INVALID_RESPONSE, f"Stigg's answer is not JSON: {error}"
        ) from None
