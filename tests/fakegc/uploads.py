"""uploads/: the platform's S3 multipart upload broker (contract section 3).

Create -> presign part URLs (they point at this emulator's /s3/, see s3.py) -> PUT
parts -> complete with the parts list (checked as S3 would: ETags, ascending numbers,
minimum size of non-final parts, only ETag/PartNumber keys; any violation is a 500
because the platform lets the boto3 error escape) -> Completed; or abort.

The upload's assembled SHA-256 is computed while parts stream in, as long as they
arrive in order; only a completion that does not match that prefix re-reads the parts
(outside the lock).
"""

import hashlib
import os

from .auth import paginate
from .core import (
    ApiError, Response, field_error, non_field, not_found, parse_uuid, iso_time,
    server_error, MSG_BLANK, MSG_NULL, MSG_REQUIRED)
from .store import Blob

PENDING, INITIALIZED, COMPLETED, ABORTED = 0, 1, 2, 3
STATUS_LABELS = {0: "Pending", 1: "Initialized", 2: "Completed", 3: "Aborted"}
UPLOAD_PATH = r"/api/v1/uploads/([^/]+)/"


class Part:
    def __init__(self, number, path, size, md5, wall):
        self.number = number
        self.path = path
        self.size = size
        self.md5 = md5
        self.etag = f'"{md5}"'
        self.wall = wall


class Upload:
    def __init__(self, state, user, filename):
        self.pk = state.new_uuid()
        self.user = user
        self.filename = filename
        self.status = INITIALIZED
        self.s3_upload_id = state.new_token(24)
        self.created = state.now()
        self.created_wall = state.wall()
        self.parts = {}
        self.blob = None
        self.mimetype = "application/octet-stream"
        self.deleted = None          # None, or why it was deleted
        self.completing = False
        self.final_size = self.final_sha256 = self.final_md5 = None
        # running sha256 over parts 1..prefix_n, fed while they stream in
        self.prefix_n = 0
        self.prefix_sha = hashlib.sha256()
        self.prefix_md5 = hashlib.md5()

    @property
    def key(self):
        return f"uploads/{self.user}/{self.pk}"

    def pending_size(self):
        return sum(p.size for p in self.parts.values())

    def size(self):
        if self.status == INITIALIZED:
            return self.pending_size()
        if self.status == COMPLETED and self.blob is not None:
            return self.blob.size
        return 0

    def drop_parts(self):
        for p in self.parts.values():
            try:
                os.unlink(p.path)
            except FileNotFoundError:
                pass
        self.parts = {}


def upload_url(base, upload):
    return f"{base}api/v1/uploads/{upload.pk}/"


def serialize(base, u):
    return {"pk": u.pk, "created": iso_time(u.created_wall), "filename": u.filename,
            "key": u.key, "s3_upload_id": u.s3_upload_id, "status": STATUS_LABELS[u.status],
            "api_url": upload_url(base, u)}


def live_uploads(state, user):
    return [u for u in state.uploads.values() if u.user == user and u.deleted is None]


def delete_upload(state, upload, reason):
    """The platform deletes consumed and expired uploads (and their objects)."""
    if upload.deleted is not None:
        return
    upload.deleted = reason
    upload.drop_parts()
    if upload.blob is not None and reason != "consumed":
        upload.blob.delete()
    state.log.append({"t": state.now(), "event": "upload-deleted", "upload": upload.pk,
                      "reason": reason})


def expire_uploads(emulator):
    state = emulator.state
    max_age = emulator.limits["upload_max_age"]
    now = state.now()
    # uploads are kept in creation order and the clock only goes forward: the first
    # one young enough ends the walk (this runs before every request)
    for u in state.uploads.values():
        if now - u.created < max_age:
            break
        if u.deleted is None:
            delete_upload(state, u, "expired")


def _char_field(data, name, max_length=None):
    """DRF CharField validation; returns the value or raises a field error."""
    if name not in data:
        raise field_error(name, MSG_REQUIRED)
    value = data[name]
    if value is None:
        raise field_error(name, MSG_NULL)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise field_error(name, "Not a valid string.")
    value = str(value).strip()
    if value == "":
        raise field_error(name, MSG_BLANK)
    if max_length is not None and len(value) > max_length:
        raise field_error(name, f"Ensure this field has no more than {max_length} characters.")
    return value


def create(req):
    user = req.require_user()
    em = req.emulator
    filename = _char_field(req.data, "filename", max_length=128)
    if filename != os.path.basename(filename) or filename in (".", ".."):
        raise field_error("filename", f"{filename} is not a valid filename")
    limit = em.limits["max_uploads"]
    # the count of all uploads bounds the live ones: no walk while far from the limit
    if len(req.state.uploads) > limit and len(live_uploads(req.state, user)) > limit:
        raise non_field("You have created too many uploads. Please try again later.")
    u = Upload(req.state, user, filename)
    req.state.uploads[u.pk] = u
    return Response(201, serialize(em.base_url, u))


def list_uploads(req):
    if req.user is None:
        items = []
    else:
        items = live_uploads(req.state, req.user)
    base = req.emulator.base_url
    return paginate(req, items, lambda u: serialize(base, u))


def lookup(req):
    """The caller's upload named in the path, or a 404 as DRF would give."""
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    u = req.state.uploads.get(pk)
    if u is None or u.deleted is not None or u.user != req.user:
        raise not_found("UserUpload")
    return u


def lookup_with_uid(req):
    if req.user is None and req.method != "GET":
        req.require_user()
    u = lookup(req)
    if u.s3_upload_id != req.params["uid"]:
        raise not_found()
    return u


def get_upload(req):
    return Response(200, serialize(req.emulator.base_url, lookup(req)))


def quota_used(state, upload):
    completed = sum(x.blob.size for x in live_uploads(state, upload.user)
                    if x.status == COMPLETED and x.blob is not None)
    return upload.pending_size() + completed


def _int_child(value, low, high):
    if value is None:
        return None, MSG_NULL
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        return None, "A valid integer is required."
    text = str(value)
    if text.endswith(".0"):
        text = text[:-2]
    try:
        n = int(text)
    except ValueError:
        return None, "A valid integer is required."
    if n < low:
        return None, f"Ensure this value is greater than or equal to {low}."
    if n > high:
        return None, f"Ensure this value is less than or equal to {high}."
    return n, None


def presign(req):
    u = lookup_with_uid(req)
    em = req.emulator
    quota = em.limits["upload_quota"]
    # every byte in use arrived as a part: no walk while all parts ever fit the quota
    if u.status != INITIALIZED or (req.state.part_bytes >= quota
                                   and quota_used(req.state, u) >= quota):
        raise ApiError(403, {"detail": "Upload limit reached"})
    if em.faults.take_presign_quota():
        raise ApiError(403, {"detail": "Upload limit reached"})
    data = req.data
    if "part_numbers" not in data:
        raise non_field("The `part_numbers` field is required")
    numbers = data["part_numbers"]
    if numbers is None:
        raise field_error("part_numbers", MSG_NULL)
    if not isinstance(numbers, list):
        raise ApiError(400, {"part_numbers": [
            f'Expected a list of items but got type "{_pytype(numbers)}".']})
    errors, parsed = {}, []
    for i, v in enumerate(numbers):
        n, err = _int_child(v, 1, 10000)
        if err:
            errors[str(i)] = [err]
        else:
            parsed.append(n)
    if errors:
        raise ApiError(400, {"part_numbers": errors})
    body = serialize(em.base_url, u)
    body["presigned_urls"] = {str(n): em.s3.presign_put(u, n) for n in parsed}
    return Response(200, body)


def _pytype(v):
    return {str: "str", dict: "dict", int: "int", float: "float", bool: "bool"}.get(
        type(v), type(v).__name__)


def _validate_parts(data):
    """UserUploadCompleteSerializer: returns the list of part dicts or raises 400."""
    if "parts" not in data:
        raise non_field("The `parts` field is required")
    parts = data["parts"]
    if parts is None:
        raise field_error("parts", MSG_NULL)
    if not isinstance(parts, list):
        raise ApiError(400, {"parts": {"non_field_errors": [
            f'Expected a list of items but got type "{_pytype(parts)}".']}})
    errors, any_error = [], False
    for p in parts:
        err = {}
        if not isinstance(p, dict):
            err["non_field_errors"] = [
                f"Invalid data. Expected a dictionary, but got {_pytype(p)}."]
        else:
            if "ETag" in p:
                e = p["ETag"]
                if e is None:
                    err["ETag"] = [MSG_NULL]
                elif isinstance(e, bool) or not isinstance(e, (str, int, float)):
                    err["ETag"] = ["Not a valid string."]
                elif str(e).strip() == "":
                    err["ETag"] = [MSG_BLANK]
            if "PartNumber" in p:
                _n, e = _int_child(p["PartNumber"], 1, 10000)
                if e:
                    err["PartNumber"] = [e]
            if "Size" in p:
                _n, e = _int_child(p["Size"], 0, 1 << 62)
                if e:
                    err["Size"] = [e]
        errors.append(err)
        any_error = any_error or bool(err)
    if any_error:
        raise ApiError(400, {"parts": errors})
    return parts


def _s3_complete_check(upload, parts, min_part_size):
    """What S3 CompleteMultipartUpload (via boto3) would refuse; None when fine."""
    if not parts:
        return "MalformedXML: no parts"
    last = 0
    chosen = []
    for p in parts:
        extra = set(p) - {"ETag", "PartNumber"}
        if extra & {"LastModified", "Size"}:
            return f"ParamValidationError: unknown parameter {sorted(extra)}"
        if "ETag" not in p or "PartNumber" not in p:
            return "InvalidPart: ETag and PartNumber are required"
        n, _e = _int_child(p["PartNumber"], 1, 10000)
        if n <= last:
            return "InvalidPartOrder"
        last = n
        stored = upload.parts.get(n)
        if stored is None or str(p["ETag"]).strip('"') != stored.md5:
            return f"InvalidPart: part {n}"
        chosen.append(stored)
    for stored in chosen[:-1]:
        if stored.size < min_part_size:
            return f"EntityTooSmall: part {stored.number} is {stored.size} bytes"
    return chosen


def complete(req):
    em = req.emulator
    state = req.state
    u = lookup_with_uid(req)
    parts = _validate_parts(req.data)
    if u.status != INITIALIZED or u.completing:
        raise server_error()
    chosen = _s3_complete_check(u, parts, em.limits["min_part_size"])
    if isinstance(chosen, str):
        state.log.append({"t": state.now(), "event": "complete-refused", "upload": u.pk,
                          "reason": chosen})
        raise server_error()
    fail = em.faults.take_complete_failure()
    if fail == "before":
        raise server_error()
    numbers = [p.number for p in chosen]
    if em.storage_base_url is not None:
        # --fast-storage keeps no content to hash (see s3.py)
        sha = md5 = None
    elif numbers == list(range(1, len(numbers) + 1)) and u.prefix_n == len(numbers):
        sha, md5 = u.prefix_sha.hexdigest(), u.prefix_md5.hexdigest()
    else:
        # Parts arrived out of order or a subset was chosen: hash them, without the lock.
        u.completing = True
        blob = Blob([(p.path, p.size) for p in chosen])
        state.lock.release()
        try:
            blob.compute_hashes()
        finally:
            state.lock.acquire()
            u.completing = False
        sha, md5 = blob.sha256, blob.md5
        if u.status != INITIALIZED or any(u.parts.get(p.number) is not p for p in chosen):
            raise server_error()
    for n in list(u.parts):
        if n not in numbers:
            os.unlink(u.parts[n].path)
    blob = Blob([(p.path, p.size) for p in chosen], sha256=sha, md5=md5)
    u.parts = {}
    u.blob = state.adopt(blob)
    u.final_size, u.final_sha256, u.final_md5 = blob.size, sha, md5
    u.status = COMPLETED
    em.storage_stats.upload_completed()
    u.mimetype = sniff_mimetype(u.blob.head(2048))
    if fail == "after":
        raise server_error()
    return Response(200, serialize(em.base_url, u))


def sniff_mimetype(head):
    if not head:
        return "application/x-empty"
    if head.startswith(b"%PDF"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    if head[:1] in (b"{", b"["):
        return "application/json"
    try:
        head.decode("utf-8")
        return "text/plain"
    except UnicodeDecodeError:
        return "application/octet-stream"


def abort(req):
    u = lookup_with_uid(req)
    if u.status != INITIALIZED or u.completing:
        raise server_error()
    u.drop_parts()
    u.s3_upload_id = ""
    u.status = ABORTED
    return Response(200, serialize(req.emulator.base_url, u))


def list_parts(req):
    u = lookup_with_uid(req)
    if u.status != INITIALIZED:
        raise server_error()
    body = serialize(req.emulator.base_url, u)
    body["parts"] = [{"ETag": p.etag, "PartNumber": p.number,
                      "LastModified": iso_time(round(p.wall, 3)), "Size": p.size}
                     for _n, p in sorted(u.parts.items())]
    return Response(200, body)


ROUTES = [
    ("uploads-list", r"/api/v1/uploads/", {"GET": list_uploads, "POST": create}),
    ("uploads-detail", r"/api/v1/uploads/(?P<pk>[^/.]+)/", {"GET": get_upload}),
    ("uploads-presign", r"/api/v1/uploads/(?P<pk>[^/.]+)/(?P<uid>[^/]+)/generate-presigned-urls/",
     {"PATCH": presign}),
    ("uploads-complete",
     r"/api/v1/uploads/(?P<pk>[^/.]+)/(?P<uid>[^/]+)/complete-multipart-upload/",
     {"PATCH": complete}),
    ("uploads-abort", r"/api/v1/uploads/(?P<pk>[^/.]+)/(?P<uid>[^/]+)/abort-multipart-upload/",
     {"PATCH": abort}),
    ("uploads-list-parts", r"/api/v1/uploads/(?P<pk>[^/.]+)/(?P<uid>[^/]+)/list-parts/",
     {"GET": list_parts}),
]
