"""WSGI middleware: a request signed with a role session of the local STS is authorized before any service sees it.

Requests signed with any other key (a user's CLI, the SDK, tests) keep full access. A refusal is answered in the
protocol's own error shape, with AWS's message naming principal, action and resource.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from localcloud.iam.authorizer import Authorizer, Refusal
from localcloud.iam.lookups import MotoLookups
from localcloud.iam.requests import Described, access_key_of, describe
from localcloud.wsgi import WSGIApp

_QUERY_COMPATIBLE = frozenset({"cloudwatch", "sqs"})


def _headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


def _region_of(headers: dict[str, str], query: str) -> str:
    authorization = headers.get("authorization", "")
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0] if "Credential=" in authorization else ""
    if not scope:
        for part in query.split("&"):
            if part.startswith("X-Amz-Credential="):
                scope = unquote(part.split("=", 1)[1])
    parts = scope.split("/")
    return parts[2] if len(parts) >= 4 else "us-east-1"


def _cbor_text(value: str) -> bytes:
    data = value.encode()
    return _cbor_head(3, len(data)) + data


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    for size, info in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if length < 1 << (8 * size):
            return bytes([major << 5 | info]) + length.to_bytes(size, "big")
    raise ValueError("too long")


def cbor_map(values: dict[str, str]) -> bytes:
    """A CBOR map of text to text (RFC 8949): all an error body of the Smithy RPC v2 CBOR protocol needs."""
    out = _cbor_head(5, len(values))
    for key, value in values.items():
        out += _cbor_text(key) + _cbor_text(value)
    return out


def refusal_response(described: Described, refusal: Refusal) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status, headers and body of AWS's access-denied error in the request's protocol."""
    request_id = str(uuid.uuid4())
    text = refusal.message
    protocol = described.protocol
    if protocol == "json":
        # awsJson1_0 / 1_1: the type in __type and x-amzn-ErrorType (botocore reads either).
        body = json.dumps({"__type": "AccessDeniedException", "message": text}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", "AccessDeniedException")]
        if described.service in _QUERY_COMPATIBLE:
            # Services once on the query protocol (awsQueryCompatible) keep their query error code in this header,
            # which botocore reads: clients see AccessDenied, as before the move to JSON.
            headers.append(("x-amzn-query-error", "AccessDenied;Sender"))
        return "400 Bad Request", [*headers, ("x-amzn-RequestId", request_id)], body
    if protocol == "rest-json":
        body = json.dumps({"Type": "User", "Message": text}).encode()
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", "AccessDeniedException")]
        return "403 Forbidden", [*headers, ("x-amzn-RequestId", request_id)], body
    if protocol == "smithy-rpc-v2-cbor":
        body = cbor_map({"__type": "AccessDenied", "message": text})
        headers = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        return "403 Forbidden", [*headers, ("x-amzn-RequestId", request_id)], body
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    if protocol == "rest-xml":  # S3
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>AccessDenied</Code><Message>{escaped}</Message><RequestId>{request_id}</RequestId>"
            "<HostId>local</HostId></Error>"
        ).encode()
        return "403 Forbidden", [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)], body
    # query: SNS calls it AuthorizationError ("Amazon SNS API Reference: Common Errors"); STS, IAM, AccessDenied.
    code = "AuthorizationError" if described.service == "sns" else "AccessDenied"
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{escaped}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return "403 Forbidden", [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body


class IamMiddleware:
    """Authorizes requests of the cloud's principals; passes every other request through untouched."""

    def __init__(self, app: WSGIApp, authorizer: Authorizer) -> None:
        self.app = app
        self.authorizer = authorizer
        self.lookups = MotoLookups()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = _headers(environ)
        query = environ.get("QUERY_STRING", "")
        method = environ.get("REQUEST_METHOD", "GET")
        key = access_key_of(headers, query)
        if key is None and method == "POST" and headers.get("content-type", "").startswith("multipart/form-data"):
            return self._form_upload(environ, start_response, headers)
        principal = self.authorizer.principals.principal_of(key) if key else None
        if principal is None:
            return self.app(environ, start_response)
        # S3 PUT bodies (objects, parts) are not read: the checks need only the path and headers.
        upload = method == "PUT" and "/s3/aws4_request" in headers.get("authorization", "")
        body = b"" if upload else _read_body(environ)
        region = _region_of(headers, query)
        path = environ.get("PATH_INFO", "")
        described = describe(
            method, path, query, headers, body, region=region, account=principal.account, lookups=self.lookups
        )
        if described is None:
            return self.app(environ, start_response)
        refusal = self.authorizer.authorize(
            principal,
            described.checks,
            region,
            service=described.service,
            operation=described.operation,
            modelled=described.modelled,
        )
        if refusal is None:
            return self.app(environ, start_response)
        return _refuse(start_response, described, refusal, method)

    def _form_upload(
        self, environ: dict[str, Any], start_response: Callable[..., Any], headers: dict[str, str]
    ) -> Iterable[bytes]:
        """An S3 POST upload (a presigned form) carries its signature in the form: the object's PutObject check.

        "Authenticating Requests in Browser-Based Uploads Using POST" (AmazonS3/latest/API/sigv4-UsingHTTPPOST.html).
        """
        body = _read_body(environ)
        fields = _form_fields(body)
        credential = fields.get("x-amz-credential", "").split("/", 1)[0] or fields.get("awsaccesskeyid", "")
        principal = self.authorizer.principals.principal_of(credential) if credential else None
        if principal is None:
            return self.app(environ, start_response)
        bucket = (environ.get("PATH_INFO", "").strip("/").split("/", 1)[0]) or headers.get("host", "").split(".", 1)[0]
        object_key = fields.get("key", "")
        checks = self.authorizer.s3_object_checks("s3:PutObject", bucket, object_key)
        refusal = self.authorizer.authorize(principal, checks, "us-east-1", service="s3", operation="PostObject")
        if refusal is None:
            return self.app(environ, start_response)
        described = Described("s3", "PostObject", "rest-xml", tuple(checks))
        return _refuse(start_response, described, refusal, "POST")


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole body, put back for the service to read; a chunked one (no Content-Length) is read to its end."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated") or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    if body and not length:
        environ["CONTENT_LENGTH"] = str(len(body))
    return body


_FORM_FIELD = re.compile(rb'name="([^"]+)"\r\n(?:[^\r\n]+\r\n)*\r\n(.*?)\r\n--', re.DOTALL)


def _form_fields(body: bytes) -> dict[str, str]:
    """The text fields of a multipart form, by lower-case name (the file's content is not decoded)."""
    return {
        name.decode(errors="replace").lower(): value.decode(errors="replace")
        for name, value in _FORM_FIELD.findall(body)
        if name.lower() != b"file"
    }


def _refuse(start_response: Callable[..., Any], described: Described, refusal: Refusal, method: str) -> Iterable[bytes]:
    status, response_headers, payload = refusal_response(described, refusal)
    if method == "HEAD":
        payload = b""
    start_response(status, [*response_headers, ("Content-Length", str(len(payload)))])
    return [payload]
