"""cases/upload-sessions/ and cases/images/, with the fake image importer.

A session with a target (archive, archive item, display set), or one referenced as an
"upload_session" value, or created internally for "user_uploads", is processed: the
database row turns Re-Queued at once (the 201 still says Queued, as on the platform),
and one tick later the importer runs:

  * every .zip is extracted (recursively; members are flattened to their base names);
  * each .mha, each .mhd with a .zraw/.raw of the same stem, each .nii/.nii.gz/.tif/
    .tiff/.png/.jpg/.jpeg/.svs/... file becomes one image; all .dcm files together
    become one image; empty files and anything else are "could not be imported";
  * two files with the same name fail the session ("Duplicate files uploaded, ...");
  * at least one image -> Succeeded (uploads deleted), else Failed with
    "<n> file(s) could not be imported" (singular "1 file", as Django's pluralize).

Then the linked task runs: archive items are created, or the single image is attached
to the socket of the linked object; anything but exactly one image fails the session
with "Image validation for socket <title> failed with error: Image imports should
result in a single image. ".
"""

import os
import re
import zipfile

from . import uploads as up
from .auth import paginate
from .core import (ApiError, Response, MSG_NO_OBJECT, MSG_NULL, MSG_REQUIRED, non_field,
                   not_found, parse_uuid, resolve_hyperlink, type_name)
from .store import Blob

PENDING, STARTED, REQUEUED, FAILURE, SUCCESS, CANCELLED = range(6)
STATUS_LABELS = {0: "Queued", 1: "Started", 2: "Re-Queued", 3: "Failed", 4: "Succeeded",
                 5: "Cancelled"}
SINGLE_FILE_IMAGES = (".mha", ".nii", ".nii.gz", ".tif", ".tiff", ".png", ".jpg", ".jpeg",
                      ".svs", ".vms", ".vmu", ".ndpi", ".scn", ".mrxs", ".bif")
MAX_PP_TASKS = 16


class Session:
    def __init__(self, emulator, user, uploads, internal=False):
        state = emulator.state
        self.pk = state.new_uuid()
        self.user = user
        self.status = PENDING
        self.error_message = None
        self.images = []
        self.uploads = list(uploads)
        self.upload_names = [u.filename for u in uploads]
        self.internal = internal
        self.target = None
        self.created = state.now()
        self.history = [(state.now(), "Queued")]
        self.file_errors = []

    def set_status(self, state, status):
        self.status = status
        self.history.append((state.now(), STATUS_LABELS[status]))


class ImageFile:
    def __init__(self, state, image, name, blob, image_type="MHD"):
        self.pk = state.new_uuid()
        self.image = image
        self.name = name
        self.blob = blob
        self.image_type = image_type

    def path(self):
        p = self.image.pk
        return f"images/{p[0:2]}/{p[2:4]}/{p}/{self.pk}/{self.name}"


class Image:
    def __init__(self, state, name, origin, user):
        self.pk = state.new_uuid()
        self.name = name
        self.origin = origin
        self.creator = user
        self.files = []
        self.width, self.height, self.depth = 1, 1, None
        self.voxel = [None, None, None]


def new_session(emulator, user, uploads, internal=False):
    s = Session(emulator, user, uploads, internal)
    emulator.state.sessions[s.pk] = s
    return s


def session_url(base, s):
    return f"{base}api/v1/cases/upload-sessions/{s.pk}/"


def image_url(base, pk):
    return f"{base}api/v1/cases/images/{pk}/"


def serialize_session(base, s, status=None):
    live = [u for u in s.uploads if u.deleted is None]
    return {"pk": s.pk, "creator": s.user,
            "status": STATUS_LABELS[s.status if status is None else status],
            "error_message": s.error_message,
            "image_set": [image_url(base, pk) for pk in s.images],
            "api_url": session_url(base, s),
            "user_uploads": [u.pk for u in live],
            "uploads": [up.upload_url(base, u) for u in live]}


def serialize_image(base, img):
    shape = ([img.depth] if img.depth is not None else []) + [img.height, img.width]
    return {"pk": img.pk, "name": img.name,
            "files": [{"pk": f.pk, "image": img.pk, "file": f"{base}media/{f.path()}",
                       "image_type": f.image_type} for f in img.files],
            "dicom_image_set": None, "width": img.width, "height": img.height,
            "depth": img.depth, "color_space": "GRAY", "modality": None,
            "eye_choice": "NA", "stereoscopic_choice": None, "field_of_view": None,
            "shape_without_color": shape, "shape": shape,
            "voxel_width_mm": img.voxel[0], "voxel_height_mm": img.voxel[1],
            "voxel_depth_mm": img.voxel[2], "api_url": image_url(base, img.pk),
            "patient_id": "", "patient_name": "", "patient_birth_date": None,
            "patient_age": "", "patient_sex": "", "study_date": None,
            "study_instance_uid": "", "series_instance_uid": "", "study_description": "",
            "series_description": "", "window_center": None, "window_width": None,
            "segments": None}


# --- who may see an image ---------------------------------------------------------

def image_holders(emulator, pk):
    """Every job, archive item and display set that holds image pk as a value."""
    st = emulator.state
    for coll in (st.jobs, st.archive_items, st.display_sets):
        for obj in coll.values():
            civs = list(obj.values.values())
            civs += list(getattr(obj, "outputs", {}).values())
            if any(c.image == pk for c in civs):
                yield obj


def can_view_image(emulator, img, user):
    if user is None:
        return False
    return any(user in h.viewers(emulator) for h in image_holders(emulator, img.pk))


# --- the API ------------------------------------------------------------------------

def create_session(req):
    user = req.require_user()
    em = req.emulator
    state = req.state
    data = req.data
    errors = {}
    uploads = []
    if "uploads" not in data:
        errors["uploads"] = [MSG_REQUIRED]
    elif data["uploads"] is None:
        errors["uploads"] = [MSG_NULL]
    elif not isinstance(data["uploads"], list):
        errors["uploads"] = [f'Expected a list of items but got type "{type_name(data["uploads"])}".']
    else:
        for url in data["uploads"]:
            try:
                key = resolve_hyperlink(url, up.UPLOAD_PATH)
            except ValueError as e:
                errors["uploads"] = [str(e)]
                break
            u = state.uploads.get(parse_uuid(key) or "")
            if (u is None or u.user != user or u.deleted is not None
                    or u.status != up.COMPLETED):
                errors["uploads"] = [MSG_NO_OBJECT]
                break
            uploads.append(u)
    targets = {}
    if "archive" in data:
        slug = data["archive"]
        if slug is None:
            errors["archive"] = [MSG_NULL]
        else:
            arc = em.find_archive_slug(slug, user)
            if arc is None:
                errors["archive"] = [f"Object with slug={slug} does not exist."]
            else:
                targets["archive"] = arc
    for key, coll in (("archive_item", state.archive_items),
                      ("display_set", state.display_sets)):
        if key in data:
            v = data[key]
            if v is None:
                errors[key] = [MSG_NULL]
                continue
            obj = coll.get(parse_uuid(str(v)) or "")
            if obj is None or user not in obj.editors(em):
                errors[key] = [f'Invalid pk "{v}" - object does not exist.']
            else:
                targets[key] = obj
    if "answer" in data:
        if data["answer"] is None:
            errors["answer"] = [MSG_NULL]
        else:
            errors["answer"] = [f'Invalid pk "{data["answer"]}" - object does not exist.']
    socket = None
    if "interface" in data:
        slug = data["interface"]
        if slug is None:
            errors["interface"] = [MSG_NULL]
        elif slug not in em.fixtures.sockets:
            errors["interface"] = [f"Object with slug={slug} does not exist."]
        else:
            socket = em.fixtures.sockets[slug]
    if errors:
        raise ApiError(400, errors)
    pp = em.limits["post_processing_tasks"]
    if pp >= MAX_PP_TASKS:
        raise non_field(f"You currently have {pp} active image post processing tasks. "
                        "Please wait for them to complete before trying again.")
    if len(uploads) > 100:
        raise non_field("Too many files uploaded. A maximum of 100 files may be uploaded per "
                        "session.")
    if len({u.filename for u in uploads}) != len(uploads):
        raise non_field("Filenames must be unique")
    if len(targets) > 1:
        raise non_field("Only one of archive, archive item, answer or reader study can be set")
    if socket is not None and not targets.keys() & {"archive", "archive_item", "display_set"}:
        raise non_field("An interface can only be defined for archive, archive item or "
                        "display set uploads.")
    if "archive_item" in targets and socket is None:
        raise non_field("An interface needs to be defined to upload to an archive item.")
    if "display_set" in targets and socket is None:
        raise non_field("An interface needs to be defined to upload to a display set.")
    s = new_session(em, user, uploads)
    s.target = {k: getattr(v, "slug", getattr(v, "pk", None)) for k, v in targets.items()}
    if socket is not None:
        s.target["interface"] = socket.slug
    if "archive" in targets:
        sock = socket or em.fixtures.sockets.get("generic-medical-image")
        start_session(em, s, link=("archive", targets["archive"], sock, user))
    elif targets:
        obj = next(iter(targets.values()))
        obj.import_started(socket, {"upload_session": s.pk})
        start_session(em, s, link=("socket", obj, socket, None))
    return Response(201, serialize_session(em.base_url, s, status=PENDING))


def list_sessions(req):
    items = [s for s in req.state.sessions.values() if req.user is not None and
             s.user == req.user]
    base = req.emulator.base_url
    return paginate(req, items, lambda s: serialize_session(base, s))


def get_session(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    s = req.state.sessions.get(pk)
    if s is None or s.user != req.user or req.user is None:
        raise not_found("RawImageUploadSession")
    return Response(200, serialize_session(req.emulator.base_url, s))


def _fk_filter(req, name, exists):
    """A django-filter ModelChoiceFilter on a uuid: (pk or None), 400 when unknown."""
    v = req.q(name)
    if v in (None, ""):
        return None
    pk = parse_uuid(v)
    if pk is None or not exists(pk):
        raise ApiError(400, {name: ["Select a valid choice. That choice is not one of the "
                                    "available choices."]})
    return pk


def _multi_filter(req, name, exists):
    """ModelMultipleChoiceFilter: a set of pks, or None when absent."""
    values = [v for v in req.query.get(name, []) if v != ""]
    if not values:
        return None
    out = set()
    for v in values:
        pk = parse_uuid(v)
        if pk is None:
            raise ApiError(400, {name: [f"\u201c{v}\u201d is not a valid value."]})
        if not exists(pk):
            raise ApiError(400, {name: [f"Select a valid choice. {v} is not one of the "
                                        "available choices."]})
        out.add(pk)
    return out


def list_images(req):
    em, st = req.emulator, req.state
    items = [i for i in st.images.values() if can_view_image(em, i, req.user)]
    origin = _fk_filter(req, "origin", lambda pk: pk in st.sessions)
    if origin is not None:
        items = [i for i in items if i.origin == origin]
    name = req.q("name")
    if name not in (None, ""):
        items = [i for i in items if i.name == name]

    for fname, coll, attr, exists in (
            ("job_input", st.jobs, "pk", lambda pk: pk in st.jobs),
            ("archive", st.archive_items, "archive_pk", em.archive_exists),
            ("reader_study", st.display_sets, "reader_study_pk", em.reader_study_exists)):
        pks = _multi_filter(req, fname, exists)
        if pks is not None:
            keep = set()
            for o in coll.values():
                if getattr(o, attr) in pks:
                    keep |= {c.image for c in o.values.values() if c.image}
            items = [i for i in items if i.pk in keep]
    pks = _multi_filter(req, "job_output", lambda pk: pk in st.jobs)
    if pks is not None:
        keep = set()
        for j in st.jobs.values():
            if j.pk in pks:
                keep |= {c.image for c in j.outputs.values() if c.image}
        items = [i for i in items if i.pk in keep]
    base = em.base_url
    return paginate(req, items, lambda i: serialize_image(base, i))


def get_image(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    img = req.state.images.get(pk)
    if img is None or not can_view_image(req.emulator, img, req.user):
        raise not_found("Image")
    return Response(200, serialize_image(req.emulator.base_url, img))


ROUTES = [
    ("upload-sessions-list", r"/api/v1/cases/upload-sessions/",
     {"GET": list_sessions, "POST": create_session}),
    ("upload-sessions-detail", r"/api/v1/cases/upload-sessions/(?P<pk>[^/.]+)/",
     {"GET": get_session}),
    ("images-list", r"/api/v1/cases/images/", {"GET": list_images}),
    ("images-detail", r"/api/v1/cases/images/(?P<pk>[^/.]+)/", {"GET": get_image}),
]


# --- processing --------------------------------------------------------------------

def start_session(emulator, session, link):
    """process_images: Re-Queued now, the import one tick later, then the link."""
    state = emulator.state
    session.set_status(state, REQUEUED)
    state.schedule(1, build_images, emulator, session, link)


def _files_of(state, session):
    """(name, blob) of every upload, with zips extracted; plus unreadable zips."""
    files, bad = [], []
    for u in session.uploads:
        if u.deleted is not None or u.blob is None:
            bad.append(u.filename)
            continue
        files.append((u.filename, u.blob))
    out = []
    while files:
        name, blob = files.pop(0)
        if not name.lower().endswith(".zip"):
            out.append((name, blob))
            continue
        try:
            with zipfile.ZipFile(blob.open()) as z:
                for info in z.infolist():
                    if info.is_dir():
                        continue
                    path = state.new_path("objects")
                    with z.open(info) as src, open(path, "wb") as dst:
                        while True:
                            data = src.read(1 << 20)
                            if not data:
                                break
                            dst.write(data)
                    files.append((os.path.basename(info.filename),
                                  Blob([(path, info.file_size)])))
        except (zipfile.BadZipFile, OSError, EOFError):
            bad.append(name)
    return out, bad


def _metaimage_dims(img, blob):
    head = blob.head(4096)
    m = re.search(rb"^DimSize\s*=\s*([\d ]+)$", head, re.M)
    if m:
        dims = [int(x) for x in m.group(1).split()]
        if len(dims) >= 2:
            img.width, img.height = dims[0], dims[1]
            img.depth = dims[2] if len(dims) > 2 else None
    m = re.search(rb"^ElementSpacing\s*=\s*([\d. eE+-]+)$", head, re.M)
    if m:
        try:
            sp = [float(x) for x in m.group(1).split()]
            img.voxel = (sp + [None, None, None])[:3]
        except ValueError:
            pass


def _build(emulator, session):
    """Run the fake importer: (list of Image, number of unimportable files) or a message."""
    state = emulator.state
    names = [u.filename for u in session.uploads]
    if len(set(names)) != len(names):
        return "Duplicate files uploaded, please try again with a unique set of files"
    files, bad = _files_of(state, session)
    names = [n for n, _b in files]
    if len(set(names)) != len(names):
        return "Duplicate files uploaded, please try again with a unique set of files"
    by_name = dict(files)
    used, groups = set(), []
    for name, blob in files:
        low = name.lower()
        if blob.size == 0:
            continue
        if low.endswith(SINGLE_FILE_IMAGES):
            groups.append((name, [(name, blob)]))
            used.add(name)
        elif low.endswith(".mhd"):
            stem = name[:-4]
            for ext in (".zraw", ".raw"):
                data = by_name.get(stem + ext)
                if data is not None and data.size:
                    groups.append((name, [(name, blob), (stem + ext, data)]))
                    used |= {name, stem + ext}
                    break
    dcm = [(n, b) for n, b in files if n.lower().endswith(".dcm") and b.size]
    if dcm:
        groups.append((sorted(n for n, _b in dcm)[0], sorted(dcm)))
        used |= {n for n, _b in dcm}
    n_errors = len(bad) + sum(1 for n, _b in files if n not in used)
    images = []
    for name, members in groups:
        img = Image(state, name, session.pk, session.user)
        if len(members) == 1 and not name.lower().endswith(".dcm"):
            itype = "TIFF" if name.lower().endswith((".tif", ".tiff")) else "MHD"
            img.files.append(ImageFile(state, img, members[0][0], members[0][1], itype))
            _metaimage_dims(img, members[0][1])
        elif name.lower().endswith(".mhd"):
            for n, b in members:
                img.files.append(ImageFile(state, img, n, b))
            _metaimage_dims(img, members[0][1])
        else:
            header = (f"ObjectType = Image\nNDims = 3\nDimSize = 1 1 {len(members)}\n"
                      "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n").encode()
            blob = state.blob_from_bytes(header + bytes(len(members)))
            img.files.append(ImageFile(state, img, name.rsplit(".", 1)[0] + ".mha", blob))
            img.depth = len(members)
        images.append(img)
    return images, n_errors


def build_images(emulator, session, link):
    state = emulator.state
    result = _build(emulator, session)
    forced = emulator.faults.take_import_failure(*session.upload_names)
    if forced:
        for img in result[0] if not isinstance(result, str) else []:
            for f in img.files:
                f.blob.delete()
        result = forced if isinstance(forced, str) else "An unexpected error occurred"
    if isinstance(result, str):
        fail_session(emulator, session, result, link)
        return
    images, n_errors = result
    session.file_errors = n_errors
    if not images:
        msg = None
        if n_errors:
            msg = f"{n_errors} file{'s' if n_errors != 1 else ''} could not be imported"
        fail_session(emulator, session, msg, link)
        return
    for img in images:
        state.images[img.pk] = img
        for f in img.files:
            state.adopt(f.blob)
            emulator.media_objects["protected/" + f.path()] = f.blob
    session.images = [img.pk for img in images]
    if n_errors:
        session.error_message = (f"{n_errors} file{'s' if n_errors != 1 else ''} could not "
                                 "be imported")
    session.set_status(state, SUCCESS)
    for u in session.uploads:
        u.blob = None  # the content now belongs to the images
        up.delete_upload(state, u, "consumed")
    run_link(emulator, session, link, images)


def fail_session(emulator, session, message, link):
    state = emulator.state
    session.error_message = message
    session.set_status(state, FAILURE)
    if link and link[0] == "socket":
        _kind, target, socket, on_settled = link
        target.import_failed(state, socket, message or "An unexpected error occurred")
        if on_settled:
            on_settled(state)


def run_link(emulator, session, link, images):
    from .values import Civ
    state = emulator.state
    if link is None:
        return
    if link[0] == "archive":
        _kind, archive, socket, user = link
        emulator.add_images_to_archive(archive, socket, images, user)
        return
    _kind, target, socket, on_settled = link
    if len(images) != 1:
        msg = "Image imports should result in a single image"
        session.error_message = (f"Image validation for socket {socket.title} failed with "
                                 f"error: {msg}. ")
        session.set_status(state, FAILURE)
        target.import_failed(state, socket, session.error_message)
    else:
        target.attach(state, Civ(state, socket, image=images[0].pk))
    if on_settled:
        on_settled(state)
