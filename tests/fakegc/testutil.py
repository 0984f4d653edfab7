"""Helpers for the emulator's own unittest suites (not a test module itself).

EmulatorCase starts an in-process emulator per test (plain HTTP by default, HTTPS
with a throw-away CA when `tls = True`) and offers a small urllib client that never
raises on HTTP errors and never follows redirects.
"""

import atexit
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import zipfile

from .fixtures import Fixtures
from .server import Emulator, Server, make_ssl_context, serve_in_thread
from .tls import make_certs

TOKEN = "ab" * 32
TOKEN2 = "cd" * 32
BAD_TOKEN = "ef" * 32
_CERTS = {}


def certs():
    """One CA + server certificate per test run."""
    if not _CERTS:
        d = tempfile.mkdtemp(prefix="fakegc-tls-")
        atexit.register(shutil.rmtree, d, True)
        _CERTS["dir"] = d
        _CERTS["ca"], _CERTS["cert"], _CERTS["key"] = make_certs(d)
    return _CERTS


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return f"<Reply {self.status} {self.body[:300]!r}>"


class Client:
    def __init__(self, base, token=TOKEN, cafile=None):
        self.base = base
        self.token = token
        handlers = [NoRedirect()]
        if cafile:
            ctx = ssl.create_default_context(cafile=cafile)
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self.opener = urllib.request.build_opener(*handlers)

    def url(self, path):
        if path.startswith("http"):
            return path
        if path.startswith("/"):
            return self.base.rstrip("/") + path
        return self.base + "api/v1/" + path

    def call(self, method, path, body=None, token="default", headers=None, raw=None,
             length=None):
        hdrs = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs.setdefault("Authorization", f"Bearer {tok}")
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if length is not None:
            hdrs["Content-Length"] = str(length)
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=hdrs)
        try:
            with self.opener.open(req, timeout=60) as r:
                return Reply(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body=body, **kw)

    def state(self):
        return self.get("/__fakegc__/state", token=None).json

    def faults(self, cfg):
        r = self.post("/__fakegc__/faults", cfg, token=None)
        assert r.status == 200, r
        return r

    def advance(self, seconds):
        return self.post("/__fakegc__/clock", {"advance": seconds}, token=None).json

    # --- the upload protocol --------------------------------------------------------
    def upload(self, filename, data, part_size=None):
        """Upload bytes through the full protocol; returns the completed upload object."""
        r = self.post("uploads/", {"filename": filename})
        assert r.status == 201, r
        u = r.json
        part_size = part_size or max(len(data), 1)
        chunks = [data[i:i + part_size] for i in range(0, len(data), part_size)] or [b""]
        numbers = list(range(1, len(chunks) + 1))
        r = self.patch(f"uploads/{u['pk']}/{u['s3_upload_id']}/generate-presigned-urls/",
                       {"part_numbers": numbers})
        assert r.status == 200, r
        urls = r.json["presigned_urls"]
        parts = []
        for n, chunk in zip(numbers, chunks):
            p = self.call("PUT", urls[str(n)], raw=chunk, token=None)
            assert p.status == 200, p
            parts.append({"ETag": p.headers["ETag"], "PartNumber": n})
        r = self.patch(f"uploads/{u['pk']}/{u['s3_upload_id']}/complete-multipart-upload/",
                       {"parts": parts})
        assert r.status == 200, r
        return r.json


def mha(dims=(3, 4, 5)):
    header = ("ObjectType = Image\nNDims = %d\nDimSize = %s\nElementSpacing = 1 1 1\n"
              "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n"
              % (len(dims), " ".join(map(str, dims)))).encode()
    n = 1
    for d in dims:
        n *= d
    return header + bytes(range(256)) * (n // 256) + bytes(n % 256)


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class EmulatorCase(unittest.TestCase):
    """A fresh in-process emulator for every test."""

    tls = False
    tick = 1000.0          # steps happen only when a test advances the clock
    limits = None
    fixtures_path = None

    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="fakegc-test-")
        self.emulator = Emulator([TOKEN, TOKEN2], Fixtures.load(self.fixtures_path),
                                 self.data_dir, tick=self.tick, seed=1,
                                 limits=dict(self.limits or {}))
        ctx = None
        cafile = None
        if self.tls:
            c = certs()
            ctx = make_ssl_context(c["cert"], c["key"])
            cafile = c["ca"]
        self.server = Server(self.emulator, ssl_context=ctx)
        serve_in_thread(self.server)
        self.base = self.emulator.base_url
        self.c = Client(self.base, cafile=cafile)
        self.c2 = Client(self.base, token=TOKEN2, cafile=cafile)
        self.anon = Client(self.base, token=None, cafile=cafile)

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def step(self, n=1):
        """Advance the virtual clock by n ticks."""
        self.c.advance(self.tick * n)

    def assertReply(self, reply, status, body=None):
        self.assertEqual(reply.status, status, reply)
        if body is not None:
            self.assertEqual(reply.json, body)


def start_process(args, cwd=None, env=None):
    """Run `python3 -m fakegc ARGS`; returns (process, base URL)."""
    cwd = cwd or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.Popen([os.environ.get("PYTHON3") or sys.executable, "-m", "fakegc", *args],
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = p.stdout.readline().decode().strip()
    if not line:
        p.kill()
        raise RuntimeError("fakegc did not start: " + p.stderr.read().decode())
    return p, line
