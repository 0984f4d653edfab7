"""reader-studies/ and reader-studies/display-sets/ (contract 4.5).

Display sets are posted with the reader study's *slug* (the read form links to it),
then get their values with PATCH.  A display set marked answered (POST
/__fakegc__/answer) refuses changes with the platform's bare-array message.
"""

from . import values as vals
from .algorithms import can_view
from .archives import _sorted, _title, _values_field
from .auth import paginate
from .cases import _fk_filter
from .core import (ApiError, Response, MSG_NO_PERMISSION, MSG_NULL, MSG_REQUIRED, detail,
                   non_field, not_found, parse_uuid, server_error)


class DisplaySet(vals.CivSet):
    def __init__(self, state, study, title, order, user):
        super().__init__()
        self.pk = state.new_uuid()
        self.reader_study = study
        self.reader_study_pk = study.pk
        self.title = title
        self.order = order
        self.creator = user
        self.created = state.now()
        self.answered = False

    def viewers(self, emulator):
        return emulator.users_of(self.reader_study)

    def editors(self, emulator):
        return emulator.users_of(self.reader_study)


def study_url(base, s):
    return f"{base}api/v1/reader-studies/{s.pk}/"


def serialize_study(base, s):
    return {"api_url": study_url(base, s), "url": f"{base}reader-studies/{s.slug}/",
            "slug": s.slug, "logo": None, "description": s.description, "help_text": "",
            "help_text_safe": "", "pk": s.pk, "questions": [], "title": s.title,
            "title_safe": s.title, "is_educational": False, "instant_verification": False,
            "has_ground_truth": False, "allow_answer_modification": False,
            "enable_autosaving": False, "allow_case_navigation": False,
            "allow_show_all_annotations": False, "roll_over_answers_for_n_cases": 0,
            "end_of_study_text_safe": ""}


def _ordered(state, study):
    return sorted((d for d in state.display_sets.values() if d.reader_study is study),
                  key=lambda d: (d.order, d.created))


def _serialize(base, state, ds, post):
    index = _ordered(state, ds.reader_study).index(ds)
    return {"pk": ds.pk, "title": ds.title, "title_safe": ds.title,
            "reader_study": ds.reader_study.slug if post else study_url(base, ds.reader_study),
            "values": [c.post_repr(base) if post else c.hyperlinked(base)
                       for c in _sorted(ds.values)],
            "order": ds.order, "api_url": f"{base}api/v1/reader-studies/display-sets/{ds.pk}/",
            "hanging_protocol": None, "optional_hanging_protocols": [], "view_content": {},
            "description": "", "index": index}


def list_studies(req):
    items = [s for s in req.emulator.fixtures.reader_studies if can_view(s, req.user)]
    slug = req.q("slug")
    if slug is not None:
        items = [s for s in items if s.slug == slug]
    base = req.emulator.base_url
    return paginate(req, items, lambda s: serialize_study(base, s))


def get_study(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    for s in req.emulator.fixtures.reader_studies:
        if s.pk == pk and can_view(s, req.user):
            return Response(200, serialize_study(req.emulator.base_url, s))
    raise not_found("ReaderStudy")


def _order(data, errors):
    if "order" not in data:
        return 0
    v = data["order"]
    if v is None:
        errors["order"] = [MSG_NULL]
        return 0
    try:
        if isinstance(v, bool):
            raise ValueError
        n = int(str(v)[:-2] if str(v).endswith(".0") else str(v))
    except ValueError:
        errors["order"] = ["A valid integer is required."]
        return 0
    if n < 0:
        errors["order"] = ["Ensure this value is greater than or equal to 0."]
    return n


def _unique(state, study, title, exclude=None):
    if not title:
        return
    for d in state.display_sets.values():
        if d.reader_study is study and d.title == title and d is not exclude:
            raise non_field("The fields title, reader_study must make a unique set.")


def create_display_set(req):
    user = req.require_user()
    em, state, data = req.emulator, req.state, req.data
    errors = {}
    study = None
    if "reader_study" in data:
        slug = data["reader_study"]
        if slug is None:
            errors["reader_study"] = [MSG_NULL]
        else:
            study = em.find_reader_study_slug(slug, user)
            if study is None:
                errors["reader_study"] = [f"Object with slug={slug} does not exist."]
    title = _title(data, errors)
    order = _order(data, errors)
    specs = _values_field(req, data, errors)
    if errors:
        raise ApiError(400, errors)
    if study is None:
        raise server_error()
    _unique(state, study, title)
    if specs:
        raise ApiError(400, ["Values can only be added via update"])
    if order == 0:
        existing = [d.order for d in state.display_sets.values() if d.reader_study is study]
        order = (max(existing) if existing else 0) + 10
    ds = DisplaySet(state, study, title or "", order, user)
    state.display_sets[ds.pk] = ds
    return Response(201, _serialize(em.base_url, state, ds, post=True))


def _lookup(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    ds = req.state.display_sets.get(pk)
    if ds is None or req.user not in ds.viewers(req.emulator):
        raise not_found("DisplaySet")
    return ds


def update_display_set(req):
    req.require_user()
    ds = _lookup(req)
    if req.user not in ds.editors(req.emulator):
        raise detail(403, MSG_NO_PERMISSION)
    data = req.data
    errors = {}
    title = _title(data, errors)
    order = _order(data, errors) if "order" in data else None
    specs = _values_field(req, data, errors)
    if req.method == "PUT" and "values" not in data:
        errors["values"] = [MSG_REQUIRED]
    if errors:
        raise ApiError(400, errors)
    if title is not None:
        _unique(req.state, ds.reader_study, title, exclude=ds)
    if ds.answered:
        raise ApiError(400, ["This display set cannot be changed, as answers for it already "
                             "exist."])
    if title is not None:
        ds.title = title
    if order is not None:
        ds.order = order
    specs = specs or []
    vals.apply(req, ds, specs)
    if req.method == "PUT":
        mentioned = {s["interface"].slug for s in specs}
        for slug in list(ds.values):
            if slug not in mentioned:
                del ds.values[slug]
    return Response(200, _serialize(req.emulator.base_url, req.state, ds, post=True))


def get_display_set(req):
    ds = _lookup(req)
    return Response(200, _serialize(req.emulator.base_url, req.state, ds, post=False))


def list_display_sets(req):
    em, state = req.emulator, req.state
    items = [d for d in state.display_sets.values() if req.user in d.viewers(em)]
    pk = _fk_filter(req, "reader_study", em.reader_study_exists)
    if pk is not None:
        items = [d for d in items if d.reader_study.pk == pk]
    items.sort(key=lambda d: (d.order, d.created))
    base = em.base_url
    return paginate(req, items, lambda d: _serialize(base, state, d, post=False))


ROUTES = [
    ("reader-studies-list", r"/api/v1/reader-studies/", {"GET": list_studies}),
    ("display-sets-list", r"/api/v1/reader-studies/display-sets/",
     {"GET": list_display_sets, "POST": create_display_set}),
    ("display-sets-detail", r"/api/v1/reader-studies/display-sets/(?P<pk>[^/.]+)/",
     {"GET": get_display_set, "PATCH": update_display_set, "PUT": update_display_set}),
    ("reader-studies-detail", r"/api/v1/reader-studies/(?P<pk>[^/.]+)/", {"GET": get_study}),
]
