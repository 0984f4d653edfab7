"""algorithms/ and components/interfaces/: listing, lookup, socket JSON schemas.

Visibility: a fixture object with "users": [1, 2] is visible to those users only
(numbered in --token order, from 1); without "users" to every authenticated user;
with "public": true also to the anonymous user (lists only, as on the platform).
The socket list needs an authenticated user (contract 2.2).
"""

from .auth import paginate
from .core import Response, not_found, parse_uuid

ALGORITHM_PATH = r"/api/v1/algorithms/([^/]+)/"


def can_view(obj, user):
    if user is None:
        return obj.public
    return obj.users is None or user in obj.users


def algorithm_url(base, alg):
    return f"{base}api/v1/algorithms/{alg.pk}/"


def serialize_algorithm(base, alg):
    return {
        "api_url": algorithm_url(base, alg),
        "url": f"{base}algorithms/{alg.slug}/",
        "description": alg.description,
        "pk": alg.pk,
        "title": alg.title,
        "logo": None,
        "slug": alg.slug,
        "average_duration": alg.average_duration,
        "interfaces": [{"inputs": [s.serialize() for s in ins],
                        "outputs": [s.serialize() for s in outs]}
                       for ins, outs in alg.interfaces],
    }


def list_algorithms(req):
    fx = req.emulator.fixtures
    items = [a for a in fx.algorithms if can_view(a, req.user)]
    slug = req.q("slug")
    if slug is not None:
        items = [a for a in items if a.slug == slug]
    base = req.emulator.base_url
    return paginate(req, items, lambda a: serialize_algorithm(base, a))


def find_algorithm(emulator, pk):
    for a in emulator.fixtures.algorithms:
        if a.pk == pk:
            return a
    return None


def get_algorithm(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    alg = find_algorithm(req.emulator, pk)
    if alg is None or not can_view(alg, req.user):
        raise not_found("Algorithm")
    return Response(200, serialize_algorithm(req.emulator.base_url, alg))


def list_sockets(req):
    req.require_user()
    items = sorted(req.emulator.fixtures.sockets.values(), key=lambda s: s.pk)
    slug = req.q("slug")
    if slug is not None:
        items = [s for s in items if s.slug == slug]
    return paginate(req, items, lambda s: s.serialize())


def get_socket(req):
    req.require_user()
    try:
        pk = int(req.params["pk"])
    except ValueError:
        raise not_found() from None
    for s in req.emulator.fixtures.sockets.values():
        if s.pk == pk:
            return Response(200, s.serialize())
    raise not_found("ComponentInterface")


ROUTES = [
    ("algorithms-list", r"/api/v1/algorithms/", {"GET": list_algorithms}),
    ("algorithms-detail", r"/api/v1/algorithms/(?P<pk>[^/.]+)/", {"GET": get_algorithm}),
    ("interfaces-list", r"/api/v1/components/interfaces/", {"GET": list_sockets}),
    ("interfaces-detail", r"/api/v1/components/interfaces/(?P<pk>[^/.]+)/",
     {"GET": get_socket}),
]


# --- JSON schema checks for values (a small subset of JSON Schema) ---------------

BASE_SCHEMAS = {
    "STR": {"type": "string"}, "INT": {"type": "integer"}, "FLT": {"type": "number"},
    "BOOL": {"type": "boolean"}, "JSON": {}, "CHOI": {"type": "string"},
    "MCHO": {"type": "array", "items": {"type": "string"}}, "CHART": {"type": "object"},
}
ANNOTATION_KINDS = {"2DBB", "M2DB", "DIST", "MDIS", "POIN", "MPOI", "POLY", "MPOL", "LINE",
                    "MLIN", "ANGL", "MANG", "ELLI", "MELL", "3ANG", "M3AN", "ATRG"}


def _is_type(value, t):
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    if t == "null":
        return value is None
    return True


def _check(value, schema):
    """Return (failing instance, jsonschema-style message) or None."""
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_is_type(value, x) for x in types):
            shown = ", ".join(repr(x) for x in types)
            return value, f"{value!r} is not of type {shown}"
    if "enum" in schema and value not in schema["enum"]:
        return value, f"{value!r} is not one of {schema['enum']!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return value, f"{value!r} is less than the minimum of {schema['minimum']!r}"
        if "maximum" in schema and value > schema["maximum"]:
            return value, f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if isinstance(value, dict):
        for prop in schema.get("required", []):
            if prop not in value:
                return value, f"{prop!r} is a required property"
        for prop, sub in schema.get("properties", {}).items():
            if prop in value:
                bad = _check(value[prop], sub)
                if bad:
                    return bad
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            bad = _check(item, schema["items"])
            if bad:
                return bad
    return None


def schema_error(socket, value):
    """The platform's message when value does not fit socket, else None."""
    base = BASE_SCHEMAS.get(socket.kind)
    if base is None and socket.kind in ANNOTATION_KINDS:
        base = {"type": "object"}
    for schema in (base or {}, socket.schema or {}):
        bad = _check(value, schema)
        if bad:
            instance, message = bad
            message = message.replace(str(instance) + " ", "")
            return f"JSON does not fulfill schema: instance {message}"
    return None
