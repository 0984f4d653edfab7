"""The fake S3 under /s3/: presigned part PUTs and signed object GETs.

URLs carry X-Amz-Date, X-Amz-Expires and an HMAC X-Amz-Signature over the method,
path and the identifying parameters, so a tampered or expired URL is refused with an
S3-style XML error.  These requests need no bearer token; one that carries an
Authorization header anyway is served but recorded in the state's "leaks" (a client
must never send its platform token to storage).

Part bodies are streamed to a file in 1 MiB chunks while md5 (the ETag) and, when the
part extends the upload's in-order prefix, the assembled SHA-256 are updated.

--fast-storage (benchmarks) moves presigned part PUTs to FastStorage, a lean HTTP/1.1
listener of its own on another port, so that storage is not what a client's upload
speed measures: it parses only what a PUT needs, reads bodies with recv_into() into
one reused buffer per connection, keeps only the first FAST_KEEP bytes of each part
(the rest of the part file is a hole: it reads back as zeros), makes the ETag from
those bytes and the length instead of an MD5 of the whole part, and computes no
SHA-256 (uploads report null).  Signatures, expiry, upload state and part numbers are
checked as usual; fault rules for s3-put do not apply there.  Both paths count parts,
bytes, completed uploads and the wall-clock times of the first body byte, the last
acknowledged part and the last completion (GET /__fakegc__/storage; POST resets),
which benchmarks use for latency and throughput.  Every part PUT is also counted per
(upload, part number), when received and when acknowledged (State.count_part, GET
/__fakegc__/parts), so that a test can tell which parts a client sent twice.
"""

import datetime
import hashlib
import hmac
import os
import re
import socket
import threading
import time
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .core import Response
from . import uploads as up

CHUNK = 1 << 20
FAST_KEEP = 64 << 10
FAST_BUFFER = 4 << 20
MAX_PART = 5 << 30
PUT_EXPIRES = 3600
GET_EXPIRES = 300


def s3_error(status, code, message, extra=""):
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>{extra}"
            "<RequestId>FAKEGC</RequestId></Error>").encode()
    return Response(status, body, content_type="application/xml")


class S3:
    def __init__(self, emulator, secret):
        self.em = emulator
        self.secret = secret

    # --- signing ------------------------------------------------------------
    def _sign(self, method, path, fields):
        msg = "\n".join([method, path] + [f"{k}={fields[k]}" for k in sorted(fields)])
        return hmac.new(self.secret, msg.encode(), hashlib.sha256).hexdigest()

    def _signed(self, method, path, fields, expires, base=None):
        state = self.em.state
        date = datetime.datetime.fromtimestamp(state.wall(), tz=datetime.timezone.utc)
        fields = dict(fields)
        fields["X-Amz-Algorithm"] = "AWS4-HMAC-SHA256"
        fields["X-Amz-Date"] = date.strftime("%Y%m%dT%H%M%SZ")
        fields["X-Amz-Expires"] = str(expires)
        # the virtual clock of issue, so that expiry follows the emulator's clock
        fields["X-Fakegc-T"] = "%.3f" % state.now()
        sig = self._sign(method, path, fields)
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items())
        base = base or self.em.base_url
        return f"{base.rstrip('/')}{path}?{query}&X-Amz-Signature={sig}"

    def presign_put(self, upload, number):
        path = f"/s3/{upload.key}"
        return self._signed("PUT", path, {"uploadId": upload.s3_upload_id,
                                          "partNumber": str(number)}, PUT_EXPIRES,
                            base=self.em.storage_base_url)

    def signed_get(self, object_path):
        return self._signed("GET", "/s3/" + object_path, {}, GET_EXPIRES)

    def check(self, method, path, query):
        """None if the URL's signature holds and has not expired, else an error Response."""
        fields = {k: v[-1] for k, v in query.items() if k != "X-Amz-Signature"}
        sig = query.get("X-Amz-Signature", [""])[-1]
        if not sig or "X-Fakegc-T" not in fields or "X-Amz-Expires" not in fields:
            return s3_error(403, "AccessDenied", "Query-string authentication requires the "
                            "Signature, Expires and AWSAccessKeyId parameters")
        good = self._sign(method, path, fields)
        if not hmac.compare_digest(good, sig):
            return s3_error(403, "SignatureDoesNotMatch", "The request signature we "
                            "calculated does not match the signature you provided.")
        try:
            issued, expires = float(fields["X-Fakegc-T"]), int(fields["X-Amz-Expires"])
        except ValueError:
            return s3_error(403, "AccessDenied", "Invalid date")
        if self.em.state.now() > issued + expires:
            return s3_error(403, "AccessDenied", "Request has expired")
        return None

    # --- part upload ----------------------------------------------------------
    def put_part(self, handler, path, query):
        """Handle PUT /s3/uploads/<user>/<pk>?uploadId=&partNumber=; reads the body."""
        state = self.em.state
        headers = handler.headers
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            handler.discard_body()
            return s3_error(501, "NotImplemented", "A header you provided implies "
                            "functionality that is not implemented",
                            "<Header>Transfer-Encoding</Header>")
        length = headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            handler.close_connection = True
            return s3_error(411, "MissingContentLength",
                            "You must provide the Content-Length HTTP header.")
        length = int(length)
        bad = self.check("PUT", path, query)
        m = re.fullmatch(r"/s3/uploads/(\d+)/([0-9a-f-]{36})", path)
        if bad is None and not m:
            bad = s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if bad is None and length > MAX_PART:
            bad = s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum "
                           "allowed size")
        if bad is not None:
            handler.discard_body(length)
            return bad
        uid = query.get("uploadId", [""])[-1]
        try:
            number = int(query.get("partNumber", [""])[-1])
        except ValueError:
            number = 0
        with state.lock:
            u = state.uploads.get(m.group(2))
            if (u is None or u.deleted is not None or u.status != up.INITIALIZED
                    or u.s3_upload_id != uid or str(u.user) != m.group(1)):
                u = None
            elif not 1 <= number <= 10000:
                u = False
            else:
                extends_prefix = number == u.prefix_n + 1
                sha = u.prefix_sha.copy() if extends_prefix else None
                md5_whole = u.prefix_md5.copy() if extends_prefix else None
                gen = u.prefix_n
        if u is False:
            handler.discard_body(length)
            return s3_error(400, "InvalidArgument", "Part number must be an integer between "
                            "1 and 10000, inclusive")
        if u is None:
            handler.discard_body(length)
            return s3_error(404, "NoSuchUpload", "The specified upload does not exist. The "
                            "upload ID may be invalid, or the upload may have been aborted "
                            "or completed.", f"<UploadId>{uid}</UploadId>")
        tmp = state.new_path("parts")
        md5 = hashlib.md5()
        left = length
        self.em.storage_stats.body_started()
        state.part_body(+1)
        try:
            with open(tmp, "wb") as f:
                while left > 0:
                    data = handler.rfile.read(min(CHUNK, left))
                    if not data:
                        raise ConnectionError("client closed the connection mid-body")
                    left -= len(data)
                    md5.update(data)
                    if sha is not None:
                        sha.update(data)
                        md5_whole.update(data)
                    f.write(data)
        except Exception:
            handler.close_connection = True
            _unlink(tmp)
            raise
        finally:
            state.part_body(-1)
        digest = md5.hexdigest()
        with state.lock:
            if (u.deleted is not None or u.status != up.INITIALIZED or u.s3_upload_id != uid
                    or u.completing):
                _unlink(tmp)
                return s3_error(404, "NoSuchUpload", "The specified upload does not exist.",
                                f"<UploadId>{uid}</UploadId>")
            old = u.parts.get(number)
            if old is not None:
                _unlink(old.path)
                if number <= u.prefix_n:
                    # a part inside the hashed prefix was replaced: the prefix is void
                    u.prefix_n = -1
            u.parts[number] = up.Part(number, tmp, length, digest, state.wall())
            state.part_bytes += length
            if sha is not None and u.prefix_n == gen and number == gen + 1:
                u.prefix_sha, u.prefix_md5, u.prefix_n = sha, md5_whole, number
        self.em.storage_stats.acknowledged(length)
        state.count_part(path, query, acked=length)
        return Response(200, b"", headers={"ETag": f'"{digest}"'},
                        content_type="application/octet-stream")

    # --- the fast path (--fast-storage) ---------------------------------------------
    def fast_put(self, path, query, headers, body):
        """A part PUT on FastStorage: (status, extra headers, body bytes).

        'body(n, keep)' reads the n body bytes and returns the first 'keep' of them."""
        state = self.em.state
        if headers.get("authorization") is not None:
            with state.lock:
                state.leaks.append({"method": "PUT", "path": path,
                                    "authorization": headers.get("authorization"),
                                    "t": state.now()})
        state.count_request("PUT /s3/uploads/{user}/{pk}")
        state.count_part(path, query)
        length = int(headers["content-length"])
        bad = self.check("PUT", path, query)
        m = re.fullmatch(r"/s3/uploads/(\d+)/([0-9a-f-]{36})", path)
        if bad is None and not m:
            bad = s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if bad is None and length > MAX_PART:
            bad = s3_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum "
                           "allowed size")
        uid = query.get("uploadId", [""])[-1]
        try:
            number = int(query.get("partNumber", [""])[-1])
        except ValueError:
            number = 0
        if bad is None:
            with state.lock:
                u = state.uploads.get(m.group(2))
                if (u is None or u.deleted is not None or u.status != up.INITIALIZED
                        or u.s3_upload_id != uid or str(u.user) != m.group(1)):
                    bad = s3_error(404, "NoSuchUpload", "The specified upload does not exist. "
                                   "The upload ID may be invalid, or the upload may have been "
                                   "aborted or completed.", f"<UploadId>{uid}</UploadId>")
                elif not 1 <= number <= 10000:
                    bad = s3_error(400, "InvalidArgument", "Part number must be an integer "
                                   "between 1 and 10000, inclusive")
        if bad is not None:
            body(length, 0)
            return bad
        self.em.storage_stats.body_started()
        state.part_body(+1)
        try:
            head = body(length, FAST_KEEP)
        finally:
            state.part_body(-1)
        digest = hashlib.md5(head + b"/%d" % length).hexdigest()
        tmp = state.new_path("parts")
        with open(tmp, "wb") as f:
            f.write(head)
            f.truncate(length)
        with state.lock:
            if (u.deleted is not None or u.status != up.INITIALIZED or u.s3_upload_id != uid
                    or u.completing):
                _unlink(tmp)
                return s3_error(404, "NoSuchUpload", "The specified upload does not exist.",
                                f"<UploadId>{uid}</UploadId>")
            old = u.parts.get(number)
            if old is not None:
                _unlink(old.path)
            u.parts[number] = up.Part(number, tmp, length, digest, state.wall())
            state.part_bytes += length
            u.prefix_n = -1     # no content hashes on the fast path
        self.em.storage_stats.acknowledged(length)
        state.count_part(path, query, acked=length)
        return Response(200, b"", headers={"ETag": f'"{digest}"'},
                        content_type="application/octet-stream")

    # --- object download --------------------------------------------------------
    def get_object(self, handler, path, query):
        bad = self.check("GET", path, query)
        if bad is not None:
            return bad
        name = path[len("/s3/"):]
        with self.em.state.lock:
            blob = self.em.media_objects.get(name)
        if blob is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        start, end, status = 0, blob.size, 200
        headers = {"Accept-Ranges": "bytes"}
        rng = handler.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)) + 1, blob.size) if m.group(2) else blob.size
            else:
                start = max(blob.size - int(m.group(2)), 0)
            if start >= blob.size or start >= end:
                return s3_error(416, "InvalidRange", "The requested range is not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
        headers["ETag"] = f'"{blob.md5}"' if blob.md5 else '"0"'
        return Response(status, headers=headers, content_type="application/octet-stream",
                        stream=blob.chunks(start, end), length=end - start)


class StorageStats:
    """Parts acknowledged by storage, for benchmarks (GET /__fakegc__/storage)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.parts = 0
            self.bytes = 0
            self.first_byte = None      # time.time() when the first body began
            self.last_ack = None        # time.time() of the last acknowledged part
            self.completed = 0          # uploads completed (complete-multipart-upload)
            self.last_complete = None

    def body_started(self):
        if self.first_byte is None:
            with self.lock:
                if self.first_byte is None:
                    self.first_byte = time.time()

    def acknowledged(self, length):
        with self.lock:
            self.parts += 1
            self.bytes += length
            self.last_ack = time.time()

    def upload_completed(self):
        with self.lock:
            self.completed += 1
            self.last_complete = time.time()

    def report(self):
        with self.lock:
            return {"parts": self.parts, "bytes": self.bytes, "first_byte": self.first_byte,
                    "last_ack": self.last_ack, "completed": self.completed,
                    "last_complete": self.last_complete}


class FastStorage:
    """The --fast-storage listener: presigned part PUTs over plain HTTP/1.1 on 127.0.0.1.

    One thread per connection, keep-alive, Expect: 100-continue answered after the
    headers; anything but a PUT with a Content-Length is refused and the connection
    closed.  Requests go to S3.fast_put()."""

    def __init__(self, emulator, port=0):
        self.em = emulator
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.closed = False

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = bytearray(FAST_BUFFER)
        view = memoryview(buf)
        pending = b""
        conn.settimeout(300)

        def body(n, keep):
            nonlocal pending
            head = bytearray()
            take = min(n, len(pending))
            head += pending[:min(take, keep)]
            pending = pending[take:]
            n -= take
            while n > 0:
                got = conn.recv_into(view, min(n, FAST_BUFFER))
                if got == 0:
                    raise ConnectionError("client closed the connection mid-body")
                if len(head) < keep:
                    head += view[:min(got, keep - len(head))]
                n -= got
            return bytes(head)

        try:
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                    if len(pending) > 65536:
                        return
                end = pending.index(b"\r\n\r\n")
                lines = pending[:end].decode("latin-1").split("\r\n")
                pending = pending[end + 4:]
                method, target, _version = (lines[0].split(" ") + ["", "", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = headers.get("content-length", "")
                if (method != "PUT" or not length.isdigit()
                        or "chunked" in headers.get("transfer-encoding", "").lower()):
                    self._reply(conn, s3_error(501 if method == "PUT" else 405, "NotImplemented",
                                               "Only part PUTs with a Content-Length here"), True)
                    return
                if headers.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                split = urlsplit(target)
                resp = self.em.s3.fast_put(unquote(split.path),
                                           parse_qs(split.query, keep_blank_values=True),
                                           headers, body)
                close = headers.get("connection", "").lower() == "close"
                self._reply(conn, resp, close)
                if close:
                    return
        except (OSError, ConnectionError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _reply(conn, resp, close):
        reason = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                  405: "Method Not Allowed", 501: "Not Implemented"}.get(resp.status, "Error")
        head = [f"HTTP/1.1 {resp.status} {reason}", "Server: fakegc",
                f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}"]
        head += [f"{k}: {v}" for k, v in resp.headers.items()]
        if close:
            head.append("Connection: close")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + resp.body)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
