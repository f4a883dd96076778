"""Inbound webhooks: ``POST /v1/hooks/{workflow}/{trigger}`` starts a workflow, no API key.

The caller proves it holds the trigger's shared secret by signing the body
(``governance/webhook_signing.py``): ``scheme: github`` with ``X-Hub-Signature-256:
sha256=<hex>``, ``scheme: orchestrion`` (the default) with ``X-Orchestrion-Signature:
t=<unix seconds>,v1=<hex>`` over ``"<t>." + body``, ``scheme: standard`` with the Standard
Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``); a signed time
is refused outside ``ORCHESTRION_WEBHOOK_TOLERANCE_SECONDS`` of now. The secret is
``ORCHESTRION_WEBHOOK_SECRET_<NAME>`` (or ``ORCHESTRION_WEBHOOK_SECRETS_FILE``), named by the
trigger's ``secret``: never stored, never shown by the API.

The delivery id makes a delivery sent again start nothing twice (the answer is then the
executions it started the first time), so it is made only of what the sender signed: the
Standard Webhooks ``webhook-id``, the signed time and body of the ``orchestrion`` scheme, the
body of GitHub's. A delivery header the signature does not cover (``X-GitHub-Delivery``,
``X-Orchestrion-Delivery``, ``Idempotency-Key``) is recorded, never trusted: whoever captured
a signed request could otherwise replay it under a new id and start the workflow again.

Refusals say what is wrong without telling a stranger anything: an unknown workflow or
trigger, a trigger whose secret is not configured, and a bad signature all answer the same
401 (the server's log says which); only a request signed right learns that its timestamp is
too old. The body is read up to ``ORCHESTRION_WEBHOOK_MAX_BODY_BYTES`` (413 beyond). Callers
are rate limited by address like every caller without a key, and an accepted delivery is
audited (``webhook.received``, with the trigger, the delivery id and what it started).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Annotated, Any, NoReturn
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from orchestrion import safe_data
from orchestrion.api.event_models import EmitResponse
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import Ctx
from orchestrion.api.routes.emitting import emit_response
from orchestrion.definition.triggers import HOOK_WORKFLOW
from orchestrion.engine.emitting import EVENT_ID_PATTERN, EventRefused
from orchestrion.governance.webhook_signing import (
    GITHUB_HEADER,
    SIGNATURE_HEADER,
    SignatureRefused,
    standard_key,
    verify_github,
    verify_standard,
    verify_timestamped,
)
from orchestrion.settings import webhook_secret

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["webhooks"])

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
Workflow = Annotated[
    str, PathParam(pattern=HOOK_WORKFLOW.pattern, description="The workflow's name")
]
Trigger = Annotated[
    str, PathParam(pattern=_NAME, description="The name of the workflow's webhook trigger")
]
_REFUSED = (
    "the webhook request is not signed with this trigger's secret (or there is no such"
    f" webhook): sign the raw body with HMAC-SHA256, as '{GITHUB_HEADER}: sha256=<hex>' for"
    f" a github trigger, '{SIGNATURE_HEADER}: t=<unix seconds>,v1=<hex of '<t>.' + body>'"
    " by default, or the webhook-id, webhook-timestamp and webhook-signature headers of"
    " Standard Webhooks"
)
_SIGNATURE_HEADERS = {
    "github": GITHUB_HEADER,
    "orchestrion": SIGNATURE_HEADER,
    "standard": "webhook-signature",
}
_DELIVERY_HEADERS = (
    "x-github-delivery",
    "x-orchestrion-delivery",
    "webhook-id",
    "idempotency-key",
)
_SIGNATURES = frozenset(
    {GITHUB_HEADER.lower(), SIGNATURE_HEADER.lower(), "x-hub-signature", "webhook-signature"}
)
_CREDENTIAL_WORDS = ("token", "secret", "signature", "key", "auth", "cookie", "password")
_SHOWN_HEADERS = 32
_FORM_FIELDS = 16
_HEADER_VALUE = 256
_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


@router.post(
    "/hooks/{workflow}/{trigger}",
    status_code=202,
    response_model=EmitResponse,
    responses=error_responses(401, 413, 415, 422),
    summary="Receive a signed webhook: start the workflow from its webhook trigger",
    openapi_extra={"security": []},
)
async def receive_webhook(
    workflow: Workflow, trigger: Trigger, request: Request, ctx: Ctx
) -> EmitResponse:
    settings = ctx.settings
    body = await _bounded_body(request, settings.webhook_max_body_bytes)
    found = await ctx.engine.webhook_trigger(workflow, trigger)
    where = f"webhook {workflow}/{trigger}"
    if found is None:
        _refuse(where, "no active workflow has this webhook trigger")
    definition, hook = found
    secret = webhook_secret(settings, hook.secret)
    if secret is None:
        _refuse(where, f"ORCHESTRION_WEBHOOK_SECRET_{hook.secret} is not set")
    headers = request.headers
    tolerance = settings.webhook_tolerance_seconds
    signature = headers.get(_SIGNATURE_HEADERS[hook.scheme])
    signed_at: int | None = None
    try:
        if hook.scheme == "github":
            verify_github(secret.encode(), body, signature)
        elif hook.scheme == "standard":
            verify_standard(
                standard_key(secret),
                body,
                headers.get("webhook-id"),
                headers.get("webhook-timestamp"),
                signature,
                time.time(),
                tolerance,
            )
        else:
            signed_at = verify_timestamped(secret.encode(), body, signature, time.time(), tolerance)
    except SignatureRefused as exc:
        if exc.stale:
            logger.warning("%s refused: %s", where, exc.reason)
            raise ApiProblem(
                401, f"webhook refused: {exc.reason}", slug="stale-signature"
            ) from None
        _refuse(where, exc.reason)
    payload = _payload(body, headers.get("content-type"))
    sent = _sent_delivery_id(request)
    delivery = _delivery_id(hook.scheme, request, body, signed_at)
    try:
        emitted = await ctx.engine.receive_webhook(
            definition, hook, payload, delivery, _shown_headers(request)
        )
    except EventRefused as exc:
        raise ApiProblem(422, str(exc), slug="invalid-event") from None
    started = [e.execution_id for e in emitted.executions]
    await _audit(ctx, request, workflow, trigger, (delivery, sent), started, len(emitted.skipped))
    return emit_response(emitted)


def _refuse(where: str, reason: str) -> NoReturn:
    logger.warning("%s refused: %s", where, reason)
    raise ApiProblem(401, _REFUSED, slug="bad-signature")


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The raw body, read up to ``limit`` bytes (413 beyond, before reading the rest)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, f"a webhook body is at most {limit} bytes", slug="too-large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, f"a webhook body is at most {limit} bytes", slug="too-large")
        chunks.append(chunk)
    return b"".join(chunks)


def _payload(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The body as a JSON object: JSON, or a form whose ``payload`` field is JSON (GitHub's
    ``application/x-www-form-urlencoded`` deliveries)."""
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    text: bytes | str = body
    if media == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=_FORM_FIELDS)
        except ValueError:  # more fields than that: parse_qs refuses before reading them
            raise ApiProblem(
                422, f"a form-encoded webhook body has at most {_FORM_FIELDS} fields"
            ) from None
        if "payload" not in fields:
            raise ApiProblem(422, "a form-encoded webhook body needs a 'payload' field")
        text = fields["payload"][0]
    elif media != "application/json" and not media.endswith("+json"):
        raise ApiProblem(415, "a webhook body is JSON (or a form with a JSON 'payload' field)")
    if not text:
        return {}
    try:
        value = safe_data.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiProblem(422, f"the webhook body is not JSON: {exc}") from None
    except safe_data.UnsafeData as exc:
        raise ApiProblem(422, f"the webhook body: {exc}") from None
    if not isinstance(value, dict):
        raise ApiProblem(422, f"a webhook body is a JSON object, got {type(value).__name__}")
    return value


def _sent_delivery_id(request: Request) -> str | None:
    """The delivery id the sender states (checked, recorded; the signed one decides)."""
    for name in _DELIVERY_HEADERS:
        given = request.headers.get(name)
        if given is not None:
            if not EVENT_ID_PATTERN.match(given):
                raise ApiProblem(
                    422,
                    f"the {name} header must be 1 to 128 letters, digits and . _ : @ / + = -",
                    slug="invalid-delivery-id",
                )
            return given
    return None


def _delivery_id(scheme: str, request: Request, body: bytes, signed_at: int | None) -> str:
    """The delivery's id, made of what the sender signed only: a header outside the
    signature could be changed by whoever replays a captured request."""
    if scheme == "standard":  # the webhook-id is signed (verify_standard checked it)
        signed = request.headers["webhook-id"].encode()
    else:
        # GitHub signs the body only; the orchestrion scheme signs its time and the body.
        # Two deliveries of one body (and time) are one, however their headers differ.
        signed = body if signed_at is None else f"{signed_at}.".encode() + body
    return hashlib.sha256(scheme.encode() + b"\x1f" + signed).hexdigest()[:40]


def _shown_headers(request: Request) -> dict[str, str]:
    """The headers a trigger's templates see (``event.headers``): ``x-`` headers and the user
    agent, lower-cased, never a signature or anything named like a credential; bounded in
    number and size."""
    shown: dict[str, str] = {}
    for name, value in request.headers.items():
        name = name.lower()
        if name in _SIGNATURES or not (name.startswith("x-") or name == "user-agent"):
            continue
        if any(word in name for word in _CREDENTIAL_WORDS):
            continue  # a token sent as a header (X-Gitlab-Token, X-Api-Key) stays out
        if len(shown) >= _SHOWN_HEADERS:
            break
        if _PRINTABLE.match(value):
            shown[name] = value[:_HEADER_VALUE]
    return shown


async def _audit(
    ctx: Any,
    request: Request,
    workflow: str,
    trigger: str,
    deliveries: tuple[str, str | None],
    started: list[str],
    skipped: int,
) -> None:
    client = request.client
    delivery, sent = deliveries
    details = {
        "workflow": workflow,
        "trigger": trigger,
        "delivery": delivery,
        "sent_delivery": sent,
        "started": started[:16],
        "skipped": skipped,
        "remote": client.host if client is not None else None,
        "request_id": request.scope.get("state", {}).get("request_id"),
    }
    try:
        await ctx.engine.audit.record(
            "webhook.received",
            actor=f"webhook:{workflow}/{trigger}",
            execution_id=started[0] if started else None,
            outcome="started" if started else "nothing started",
            details=details,
        )
    except Exception:  # the start happened: a 500 would say it had not
        logger.exception("cannot write the audit record of %s/%s", workflow, trigger)
