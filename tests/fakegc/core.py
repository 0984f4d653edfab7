"""Shared building blocks: responses, errors, the request context, URL helpers.

Handlers return a Response or raise ApiError; the server turns both into bytes on the
wire.  Bodies that the platform renders with DRF are JSON (compact separators, UTF-8,
as DRF's JSONRenderer does); Django's own error pages (500, unknown URL, media 403/404)
are small HTML documents, because that is what the real server sends there.
"""

import datetime
import json
import re
import uuid
from urllib.parse import urlsplit

JSON_TYPE = "application/json"

# Messages reused verbatim from DRF / Django (see the contract, section 2.4).
MSG_REQUIRED = "This field is required."
MSG_NULL = "This field may not be null."
MSG_BLANK = "This field may not be blank."
MSG_NO_OBJECT = "Invalid hyperlink - Object does not exist."
MSG_NO_URL_MATCH = "Invalid hyperlink - No URL match."
MSG_NOT_AUTHENTICATED = "Authentication credentials were not provided."
MSG_NO_PERMISSION = "You do not have permission to perform this action."
MSG_NOT_FOUND = "Not found."


class Response:
    """An HTTP response: status, body (bytes, or a JSON-able object) and headers."""

    def __init__(self, status, body=None, headers=None, content_type=JSON_TYPE,
                 stream=None, length=None):
        self.status = status
        self.headers = dict(headers or {})
        self.content_type = content_type
        # stream: an iterable of byte chunks (large downloads); length is then required
        self.stream = stream
        self.length = length
        if stream is not None:
            self.body = b""
        elif body is None:
            self.body = b""
        elif isinstance(body, (bytes, bytearray)):
            self.body = bytes(body)
        else:
            self.body = render_json(body)


def render_json(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class ApiError(Exception):
    """Raised by handlers: becomes a response with this status and body."""

    def __init__(self, status, body, headers=None, content_type=JSON_TYPE):
        super().__init__(status, body)
        self.response = Response(status, body, headers=headers, content_type=content_type)


def detail(status, message, headers=None):
    return ApiError(status, {"detail": message}, headers=headers)


def field_error(field, message):
    return ApiError(400, {field: [message]})


def non_field(message):
    return ApiError(400, {"non_field_errors": [message]})


def not_found(model=None):
    """DRF 3.16: a valid-looking pk that matches nothing gives Django's message."""
    if model is None:
        return detail(404, MSG_NOT_FOUND)
    return detail(404, f"No {model} matches the given query.")


def server_error():
    """Django's generic 500 page (DEBUG off): not JSON."""
    body = (b"\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>"
            b"\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n")
    return ApiError(500, body, content_type="text/html; charset=utf-8")


def html_error(status, title):
    body = (f"\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>{title}</title>\n"
            f"</head>\n<body>\n  <h1>{title}</h1><p>The requested resource was not found on "
            f"this server.</p>\n</body>\n</html>\n").encode()
    return ApiError(status, body, content_type="text/html; charset=utf-8")


UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                     r"[0-9a-fA-F]{12}$")


def parse_uuid(text):
    """Canonical uuid string, or None when text is not a uuid (DRF then answers 404)."""
    if not isinstance(text, str) or not UUID_RE.match(text):
        return None
    return str(uuid.UUID(text))


def iso_time(wall):
    """DRF's DateTimeField rendering with TIME_ZONE UTC: 2025-11-15T10:00:00.123456Z."""
    dt = datetime.datetime.fromtimestamp(wall, tz=datetime.timezone.utc)
    text = dt.isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


class Request:
    """What a handler sees of one API request."""

    def __init__(self, emulator, method, path, query, headers, data, user, params):
        self.emulator = emulator
        self.state = emulator.state
        self.method = method
        self.path = path
        self.query = query            # dict: name -> list of values
        self.headers = headers
        self.data = data              # parsed JSON body ({} when none)
        self.user = user              # int user id, or None for the anonymous user
        self.params = params          # path parameters from the route

    def q(self, name):
        """Last value of a query parameter (Django's QueryDict.get), or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def require_user(self):
        if self.user is None:
            raise detail(401, MSG_NOT_AUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        return self.user


def resolve_hyperlink(value, pattern):
    """DRF HyperlinkedRelatedField: resolve only the path of a URL against pattern.

    Returns the match's first group, or raises a ValueError carrying the DRF message.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"Incorrect type. Expected URL string, received {type_name(value)}.")
    path = urlsplit(value).path
    m = re.fullmatch(pattern, path)
    if not m:
        raise ValueError(MSG_NO_URL_MATCH)
    return m.group(1)


def type_name(value):
    """The Python type name DRF puts in 'Incorrect type' messages."""
    if value is None:
        return "NoneType"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list",
            dict: "dict"}.get(type(value), type(value).__name__)
