"""/media/ downloads: token-checked redirects to signed /s3/ GET URLs (contract 5.6).

These are plain Django views on the platform, not DRF: a bad or missing token does not
give a 401, the request simply runs as the anonymous user.  Images the caller may not
view give 403, unknown images 404; socket-value files give 404 in both cases.  Error
bodies are Django's small HTML pages.
"""

from . import cases
from .auth import authenticate
from .core import ApiError, Response, html_error


def _user(req_headers, emulator):
    try:
        return authenticate(req_headers.get("Authorization"), emulator.tokens)
    except ApiError:
        return None


def serve_image(emulator, headers, params):
    state = emulator.state
    img = state.images.get(params["pk"])
    if img is None:
        raise html_error(404, "Not Found")
    user = _user(headers, emulator)
    if not cases.can_view_image(emulator, img, user):
        raise html_error(403, "403 Forbidden")
    name = f"images/{params['pa']}/{params['pb']}/{params['pk']}/{params['path']}"
    if "protected/" + name not in emulator.media_objects:
        raise html_error(404, "Not Found")
    return Response(302, b"", headers={"Location": emulator.faults.media_location(
        emulator.s3.signed_get("protected/" + name))},
                    content_type="text/html; charset=utf-8")


def serve_civ(emulator, headers, params):
    state = emulator.state
    try:
        civ = state.civs.get(int(params["pk"]))
    except ValueError:
        civ = None
    if civ is None or civ.file is None:
        raise html_error(404, "Not Found")
    user = _user(headers, emulator)
    holders = [o for coll in (state.jobs, state.archive_items, state.display_sets)
               for o in coll.values()
               if civ in o.values.values() or civ in getattr(o, "outputs", {}).values()]
    if user is None or not any(user in h.viewers(emulator) for h in holders):
        raise html_error(404, "Not Found")
    name = "protected/" + civ.file_path()
    if name != "protected/" + "components/componentinterfacevalue/" + \
            f"{params['a']}/{params['b']}/{params['pk']}/{params['path']}":
        raise html_error(404, "Not Found")
    return Response(302, b"", headers={"Location": emulator.faults.media_location(
        emulator.s3.signed_get(name))},
                    content_type="text/html; charset=utf-8")


ROUTES = [
    ("media-images", r"/media/images/(?P<pa>[0-9a-fA-F]{2})/(?P<pb>[0-9a-fA-F]{2})/"
     r"(?P<pk>[0-9a-f-]{36})/(?P<path>.+)", serve_image),
    ("media-civ", r"/media/components/componentinterfacevalue/(?P<a>[0-9a-f]{2})/"
     r"(?P<b>[0-9a-f]{2})/(?P<pk>\d+)/(?P<path>[^/]+)", serve_civ),
]
