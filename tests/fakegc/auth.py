"""Bearer-token authentication and DRF limit/offset pagination.

Authentication follows DRF's TokenAuthentication with the platform's knox variant
(contract 1.2): the keyword "Bearer" is compared case-insensitively; a header that is
not a Bearer header leaves the request anonymous; "Bearer" alone or three words are
refused with DRF's messages; the token is hex-decoded before lookup, so an upper-case
spelling of a valid token is the same token, and anything non-hex is "Invalid token.".

Pagination follows LimitOffsetPagination with the platform's settings (contract 2.1):
default limit 100, maximum 1000, bad limits fall back to the default, bad offsets to 0,
next/previous links are the request URL with limit/offset replaced (sorted query).
"""

from urllib.parse import parse_qs, urlencode

from .core import ApiError, Response

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _auth_failed(message):
    return ApiError(401, {"detail": message}, headers={"WWW-Authenticate": "Bearer"})


def authenticate(header, tokens):
    """Return the user id for an Authorization header value, None for anonymous.

    tokens maps lower-case 64-hex tokens to user ids.  Raises ApiError(401).
    """
    if header is None:
        return None
    try:
        raw = header.encode("latin-1")
    except UnicodeEncodeError:
        raw = header.encode("utf-8", "replace")
    words = raw.split()
    if not words or words[0].lower() != b"bearer":
        return None
    if len(words) == 1:
        raise _auth_failed("Invalid token header. No credentials provided.")
    if len(words) > 2:
        raise _auth_failed("Invalid token header. Token string should not contain spaces.")
    try:
        key = words[1].decode("utf-8")
    except UnicodeError:
        raise _auth_failed("Invalid token header. Token string should not contain invalid "
                           "characters.") from None
    try:
        canonical = bytes.fromhex(key).hex()
    except ValueError:
        raise _auth_failed("Invalid token.") from None
    if len(key) % 2 or canonical not in tokens:
        raise _auth_failed("Invalid token.")
    return tokens[canonical]


def _positive_int(text, strict, cutoff=None):
    value = int(text)
    if value < 0 or (value == 0 and strict):
        raise ValueError(text)
    if cutoff:
        return min(value, cutoff)
    return value


def page_bounds(query):
    """(limit, offset) from the query parameters, DRF-style."""
    limit = DEFAULT_LIMIT
    if "limit" in query:
        try:
            limit = _positive_int(query["limit"][-1], strict=True, cutoff=MAX_LIMIT)
        except ValueError:
            limit = DEFAULT_LIMIT
    offset = 0
    if "offset" in query:
        try:
            offset = _positive_int(query["offset"][-1], strict=False)
        except ValueError:
            offset = 0
    return limit, offset


def _replace(url, raw_query, remove=(), **values):
    q = parse_qs(raw_query, keep_blank_values=True)
    for key in remove:
        q.pop(key, None)
    for key, value in values.items():
        q[key] = [str(value)]
    qs = urlencode(sorted(q.items()), doseq=True)
    return url + ("?" + qs if qs else "")


def paginate(req, items, serialize):
    """The DRF envelope for items (already filtered and ordered)."""
    limit, offset = page_bounds(req.query)
    count = len(items)
    page = items[offset:offset + limit]
    base = req.emulator.base_url.rstrip("/") + req.path
    raw = req.raw_query
    nxt = None
    if offset + limit < count:
        nxt = _replace(base, raw, limit=limit, offset=offset + limit)
    prev = None
    if offset > 0:
        if offset - limit <= 0:
            prev = _replace(base, raw, remove=("offset",), limit=limit)
        else:
            prev = _replace(base, raw, limit=limit, offset=offset - limit)
    return Response(200, {"count": count, "next": nxt, "previous": prev,
                          "results": [serialize(x) for x in page]})
