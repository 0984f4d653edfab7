"""Socket values: validation of value requests and their attachment to objects.

A value request (contract 4.1) names a socket and exactly one source: "value",
"image", "upload_session", "user_upload" or "user_uploads" (+ "image_name").  It is
checked the way ComponentInterfaceValuePostSerializer does: field errors first (unknown
socket, unresolvable hyperlinks), then the provided-keys rules, then the super-kind
rule, then the JSON schema of inline values.  Errors come back as DRF's nested list,
one object per item, {} for good items.

Inline values and existing images are attached at once; uploads and sessions are
imported asynchronously (one tick later) and the value appears then, or never
(a job is then cancelled, see jobs.py).  CivSet is the common base of archive items,
display sets and jobs.
"""

import json
import re

from . import algorithms, cases
from . import uploads as up
from .core import (MSG_NO_OBJECT, MSG_NULL, MSG_REQUIRED, resolve_hyperlink, type_name)

POSSIBLE_KEYS = ("['image', 'value', 'file', 'user_upload', 'upload_session', "
                 "('image_name', 'user_uploads')]")


class Civ:
    """A ComponentInterfaceValue: exactly one of value, image (pk), file (Blob)."""

    def __init__(self, state, socket, value=None, image=None, file=None, file_name=None):
        self.pk = next(state.civ_seq)
        self.socket = socket
        self.value = value
        self.image = image
        self.file = file
        self.file_name = file_name
        state.civs[self.pk] = self

    def file_path(self):
        h = f"{self.pk:04x}"
        name = valid_filename(self.file_name or "file")
        return f"components/componentinterfacevalue/{h[-4:-2]}/{h[-2:]}/{self.pk}/{name}"

    def file_url(self, base):
        return f"{base}media/{self.file_path()}" if self.file is not None else None

    def image_url(self, base):
        return f"{base}api/v1/cases/images/{self.image}/" if self.image else None

    def post_repr(self, base):
        return {"interface": self.socket.slug, "value": self.value,
                "file": self.file_url(base), "image": self.image_url(base), "pk": self.pk,
                "image_name": None}

    def hyperlinked(self, base):
        return {"interface": self.socket.serialize(), "value": self.value,
                "file": self.file_url(base), "image": self.image_url(base), "pk": self.pk}

    def inspect(self):
        out = {"pk": self.pk, "interface": self.socket.slug}
        if self.image:
            out["image"] = self.image
        elif self.file is not None:
            out["file"] = {"name": self.file_name, "size": self.file.size,
                           "sha256": self.file.sha256}
        else:
            out["value"] = self.value
        return out


def valid_filename(name):
    """django.utils.text.get_valid_filename."""
    s = str(name).strip().replace(" ", "_")
    return re.sub(r"(?u)[^-\w.]", "", s) or "file"


class CivSet:
    """Something holding one value per socket: archive item, display set, job."""

    def __init__(self):
        self.values = {}          # socket slug -> Civ
        self.pending = {}         # socket slug -> description of the running import
        self.failures = []        # [{"interface", "error"}] of async imports

    def viewers(self, emulator):
        raise NotImplementedError

    def attach(self, state, civ):
        self.values[civ.socket.slug] = civ
        self.pending.pop(civ.socket.slug, None)

    def import_failed(self, state, socket, message):
        self.pending.pop(socket.slug, None)
        self.failures.append({"interface": socket.slug, "error": message})

    def import_started(self, socket, what):
        self.pending[socket.slug] = what


# --- request validation ------------------------------------------------------------

def _resolve(req, value, pattern, find):
    """A hyperlinked field: the object, or an error message."""
    try:
        key = resolve_hyperlink(value, pattern)
    except ValueError as e:
        return None, str(e)
    obj = find(key)
    if obj is None:
        return None, MSG_NO_OBJECT
    return obj, None


def find_image(req, key):
    img = req.state.images.get(key)
    if img is None or not cases.can_view_image(req.emulator, img, req.user):
        return None
    return img


def find_pending_session(req, key):
    s = req.state.sessions.get(key)
    if s is None or s.user != req.user or s.status != cases.PENDING or s.internal:
        return None
    return s


def find_user_upload(req, key):
    u = req.state.uploads.get(key)
    if u is None or u.user != req.user or u.deleted is not None:
        return None
    return u


def parse_item(req, item):
    """One value request -> (spec, None) or (None, errors dict)."""
    if not isinstance(item, dict):
        return None, {"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type_name(item)}."]}
    errors = {}
    attrs = {}
    sockets = req.emulator.fixtures.sockets
    if "interface" not in item:
        errors["interface"] = [MSG_REQUIRED]
    elif item["interface"] is None:
        errors["interface"] = [MSG_NULL]
    elif not isinstance(item["interface"], str):
        errors["interface"] = ["Invalid value."]
    elif item["interface"] not in sockets:
        errors["interface"] = [f"Object with slug={item['interface']} does not exist."]
    else:
        attrs["interface"] = sockets[item["interface"]]
    if "value" in item:
        attrs["value"] = item["value"]
    if "file" in item:
        if item["file"] is None:
            attrs["file"] = None
        else:
            errors["file"] = ["The submitted data was not a file. Check the encoding type "
                              "on the form."]
    for key, pattern, find in (
            ("image", r"/api/v1/cases/images/([^/]+)/", lambda k: find_image(req, k)),
            ("upload_session", r"/api/v1/cases/upload-sessions/([^/]+)/",
             lambda k: find_pending_session(req, k)),
            ("user_upload", up.UPLOAD_PATH, lambda k: find_user_upload(req, k))):
        if key not in item:
            continue
        if item[key] is None:
            attrs[key] = None
            continue
        obj, err = _resolve(req, item[key], pattern, find)
        if err:
            errors[key] = [err]
        else:
            attrs[key] = obj
    if "user_uploads" in item:
        v = item["user_uploads"]
        if v is None:
            attrs["user_uploads"] = None
        elif not isinstance(v, list):
            errors["user_uploads"] = [
                f'Expected a list of items but got type "{type_name(v)}".']
        else:
            objs = []
            for url in v:
                obj, err = _resolve(req, url, up.UPLOAD_PATH, lambda k: find_user_upload(req, k))
                if err:
                    errors["user_uploads"] = [err]
                    break
                objs.append(obj)
            else:
                attrs["user_uploads"] = objs
    if "image_name" in item:
        v = item["image_name"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int, float))):
            errors["image_name"] = ["Not a valid string."]
        else:
            attrs["image_name"] = None if v is None else str(v)
    if errors:
        return None, errors
    msg = _validate(attrs)
    if msg is not None:
        return None, msg
    return attrs, None


def _validate(attrs):
    keys = set(attrs) - {"interface"}
    if not keys:
        return {"non_field_errors": [f"You must provide at least one of {POSSIBLE_KEYS}."]}
    not_none = {k for k in keys if attrs[k] is not None}
    if len(not_none) > 1 and not_none != {"image_name", "user_uploads"}:
        return {"non_field_errors": [
            f"You can only provide one of {POSSIBLE_KEYS} for each socket."]}
    socket = attrs["interface"]
    if socket.super_kind == "Image":
        if socket.is_dicom:
            if not (attrs.get("image") or (attrs.get("user_uploads") and
                                           attrs.get("image_name"))):
                return {"non_field_errors": [
                    "either user_uploads with image_name, or image are required for "
                    f"interface kind {socket.kind}"]}
        elif not (attrs.get("image") or attrs.get("user_uploads") or
                  attrs.get("upload_session")):
            return {"non_field_errors": [
                "upload_session, user_uploads or image are required for interface kind "
                f"{socket.kind}"]}
    elif socket.super_kind == "Value":
        if attrs.get("value") is None:
            return {"non_field_errors": [
                f"value is required for interface kind {socket.kind}"]}
    elif not attrs.get("user_upload"):
        return {"non_field_errors": [
            f"user_upload or file is required for interface kind {socket.kind}"]}
    if socket.super_kind == "Value":
        err = algorithms.schema_error(socket, attrs["value"])
        if err:
            return {"__all__": [err]}
    return None


def parse_list(req, items):
    """A list of value requests -> (specs, None) or (None, DRF nested errors)."""
    specs, errors, bad = [], [], False
    for item in items:
        spec, err = parse_item(req, item)
        errors.append(err or {})
        bad = bad or err is not None
        specs.append(spec)
    if bad:
        return None, errors
    return specs, None


def not_a_list(value):
    return {"non_field_errors": [f'Expected a list of items but got type "{type_name(value)}".']}


# --- attaching --------------------------------------------------------------------

def apply(req, target, specs, on_settled=None):
    """Attach inline values and images now; start imports for the rest.

    on_settled(state) is called (from an event) whenever an import of target finishes.
    """
    state = req.state
    for spec in specs:
        socket = spec["interface"]
        if spec.get("image") is not None:
            target.attach(state, Civ(state, socket, image=spec["image"].pk))
        elif "value" in spec and spec.get("value") is not None:
            target.attach(state, Civ(state, socket, value=spec["value"]))
        elif spec.get("user_upload") is not None:
            upload = spec["user_upload"]
            target.import_started(socket, {"user_upload": upload.pk})
            state.schedule(req.emulator.faults.file_import_ticks, import_file, req.emulator,
                           target, socket, upload, on_settled)
        elif spec.get("upload_session") is not None:
            session = spec["upload_session"]
            target.import_started(socket, {"upload_session": session.pk})
            cases.start_session(req.emulator, session,
                                link=("socket", target, socket, on_settled))
        elif spec.get("user_uploads"):
            session = cases.new_session(req.emulator, req.user, spec["user_uploads"],
                                        internal=True)
            target.import_started(socket, {"upload_session": session.pk})
            cases.start_session(req.emulator, session,
                                link=("socket", target, socket, on_settled))


def import_file(emulator, target, socket, upload, on_settled):
    """add_file_to_object: validate the upload for a File socket and attach it."""
    state = emulator.state
    error = None
    if upload.deleted is not None or upload.status != up.COMPLETED:
        error = "User upload is not completed."
    elif socket.family == "json":
        try:
            value = json.loads(upload.blob.read_all().decode("utf-8"))
        except UnicodeDecodeError:
            error = "The file could not be decoded"
        except ValueError as e:
            error = str(e)
        else:
            error = algorithms.schema_error(socket, value)
    elif socket.extension and not upload.filename.lower().endswith(socket.extension):
        error = (f"File extension {upload.filename.rsplit('.', 1)[-1] if '.' in upload.filename else ''}"
                 f" is not allowed for socket {socket.title}")
    if emulator.faults.take_import_failure(upload.filename):
        error = "An unexpected error occurred"
    if error:
        target.import_failed(state, socket, error)
    else:
        blob = upload.blob
        upload.blob = None
        up.delete_upload(state, upload, "consumed")
        civ = Civ(state, socket, file=blob, file_name=upload.filename)
        target.attach(state, civ)
        emulator.media_objects["protected/" + civ.file_path()] = blob
    if on_settled:
        on_settled(state)
