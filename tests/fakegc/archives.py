"""archives/ and archives/items/ (contract 4.4).

Items are created empty (POST with the archive's api_url, optional title), then get
their values with PATCH; "values" in the POST is refused with the bare array
["Values can only be added via update"].  Non-empty titles are unique per archive.
A session targeted at an archive creates one item per image built (add_images_to_archive).
"""

from . import values as vals
from .algorithms import can_view
from .auth import paginate
from .core import (ApiError, Response, MSG_NO_OBJECT, MSG_NO_PERMISSION, MSG_NULL,
                   MSG_REQUIRED, detail, non_field, not_found, parse_uuid, resolve_hyperlink,
                   server_error)
from .cases import _fk_filter


class ArchiveItem(vals.CivSet):
    def __init__(self, state, archive, title, user):
        super().__init__()
        self.pk = state.new_uuid()
        self.archive = archive
        self.archive_pk = archive.pk
        self.title = title
        self.creator = user
        self.created = state.now()

    def viewers(self, emulator):
        return emulator.users_of(self.archive)

    def editors(self, emulator):
        return emulator.users_of(self.archive)


def archive_url(base, a):
    return f"{base}api/v1/archives/{a.pk}/"


def serialize_archive(base, a):
    return {"pk": a.pk, "title": a.title, "logo": None, "description": a.description,
            "api_url": archive_url(base, a), "url": f"{base}archives/{a.slug}/"}


def _item_common(base, item):
    return {"pk": item.pk, "title": item.title, "archive": archive_url(base, item.archive)}


def serialize_item(base, item):
    out = _item_common(base, item)
    out["values"] = [c.hyperlinked(base) for c in _sorted(item.values)]
    out.update({"hanging_protocol": None, "optional_hanging_protocols": [],
                "view_content": {}})
    return out


def serialize_item_post(base, item):
    out = _item_common(base, item)
    out["values"] = [c.post_repr(base) for c in _sorted(item.values)]
    out.update({"hanging_protocol": None, "optional_hanging_protocols": [],
                "view_content": {}})
    return out


def _sorted(values):
    return sorted(values.values(), key=lambda c: (c.socket.pk, c.pk))


def list_archives(req):
    items = [a for a in req.emulator.fixtures.archives if can_view(a, req.user)]
    slug = req.q("slug")
    if slug is not None:
        items = [a for a in items if a.slug == slug]
    base = req.emulator.base_url
    return paginate(req, items, lambda a: serialize_archive(base, a))


def get_archive(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    for a in req.emulator.fixtures.archives:
        if a.pk == pk and can_view(a, req.user):
            return Response(200, serialize_archive(req.emulator.base_url, a))
    raise not_found("Archive")


def _title(data, errors):
    if "title" not in data:
        return None
    t = data["title"]
    if t is None:
        errors["title"] = [MSG_NULL]
        return None
    if isinstance(t, bool) or not isinstance(t, (str, int, float)):
        errors["title"] = ["Not a valid string."]
        return None
    t = str(t).strip()
    if len(t) > 255:
        errors["title"] = ["Ensure this field has no more than 255 characters."]
    return t


def _values_field(req, data, errors):
    if "values" not in data:
        return None
    v = data["values"]
    if v is None:
        errors["values"] = [MSG_NULL]
        return None
    if not isinstance(v, list):
        errors["values"] = vals.not_a_list(v)
        return None
    specs, errs = vals.parse_list(req, v)
    if errs:
        errors["values"] = errs
    return specs


def _unique(state, archive, title, exclude=None):
    if not title:
        return
    for it in state.archive_items.values():
        if it.archive is archive and it.title == title and it is not exclude:
            raise non_field("The fields title, archive must make a unique set.")


def create_item(req):
    user = req.require_user()
    em = req.emulator
    data = req.data
    errors = {}
    archive = None
    if "archive" in data:
        if data["archive"] is None:
            errors["archive"] = [MSG_NULL]
        else:
            try:
                pk = resolve_hyperlink(data["archive"], r"/api/v1/archives/([^/]+)/")
                archive = em.archive_by_pk(parse_uuid(pk))
                if archive is None or user not in em.users_of(archive):
                    errors["archive"] = [MSG_NO_OBJECT]
            except ValueError as e:
                errors["archive"] = [str(e)]
    title = _title(data, errors)
    specs = _values_field(req, data, errors)
    if errors:
        raise ApiError(400, errors)
    if archive is None:
        raise server_error()  # the NOT NULL constraint on the archive column
    _unique(req.state, archive, title)
    if specs:
        raise ApiError(400, ["Values can only be added via update"])
    item = ArchiveItem(req.state, archive, title or "", user)
    req.state.archive_items[item.pk] = item
    return Response(201, serialize_item_post(em.base_url, item))


def _lookup(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    item = req.state.archive_items.get(pk)
    if item is None or req.user not in item.viewers(req.emulator):
        raise not_found("ArchiveItem")
    return item


def update_item(req):
    req.require_user()
    item = _lookup(req)
    if req.user not in item.editors(req.emulator):
        raise detail(403, MSG_NO_PERMISSION)
    data = req.data
    errors = {}
    title = _title(data, errors)
    specs = _values_field(req, data, errors)
    if req.method == "PUT" and "values" not in data:
        errors["values"] = [MSG_REQUIRED]
    if errors:
        raise ApiError(400, errors)
    if title is not None:
        _unique(req.state, item.archive, title, exclude=item)
        item.title = title
    specs = specs or []
    vals.apply(req, item, specs)
    if req.method == "PUT":
        mentioned = {s["interface"].slug for s in specs}
        for slug in list(item.values):
            if slug not in mentioned:
                del item.values[slug]
    return Response(200, serialize_item_post(req.emulator.base_url, item))


def get_item(req):
    return Response(200, serialize_item(req.emulator.base_url, _lookup(req)))


def list_items(req):
    em = req.emulator
    items = [i for i in req.state.archive_items.values() if req.user in i.viewers(em)]
    pk = _fk_filter(req, "archive", em.archive_exists)
    if pk is not None:
        items = [i for i in items if i.archive.pk == pk]
    base = em.base_url
    return paginate(req, items, lambda i: serialize_item(base, i))


def add_images_to_archive(emulator, archive, socket, images, user):
    """One new item per image not yet in the archive."""
    state = emulator.state
    present = {c.image for it in state.archive_items.values() if it.archive is archive
               for c in it.values.values() if c.image}
    for img in images:
        if img.pk in present:
            continue
        item = ArchiveItem(state, archive, "", user)
        state.archive_items[item.pk] = item
        item.attach(state, vals.Civ(state, socket, image=img.pk))


ROUTES = [
    ("archives-list", r"/api/v1/archives/", {"GET": list_archives}),
    ("archive-items-list", r"/api/v1/archives/items/",
     {"GET": list_items, "POST": create_item}),
    ("archive-items-detail", r"/api/v1/archives/items/(?P<pk>[^/.]+)/",
     {"GET": get_item, "PATCH": update_item, "PUT": update_item}),
    ("archives-detail", r"/api/v1/archives/(?P<pk>[^/.]+)/", {"GET": get_archive}),
]
