"""The emulator's state: objects, a virtual clock, an event scheduler, blob files.

Everything lives in memory under one re-entrant lock, except file content, which is
kept in files under the data directory.  A Blob is an ordered list of segment files:
an upload's parts become the object without being copied, and moving an upload into
an image or a socket value is a rename.

Time is virtual: now() is the monotonic time since start plus an offset that tests
can advance (POST /__fakegc__/clock).  Asynchronous platform work (image imports,
job steps, upload expiry) is a list of events, each due a number of ticks after the
event that scheduled it.  Events run lazily, in due order, at the start of every
request (pump), so a test that advances the clock by N ticks sees exactly N steps,
and a long pause runs the whole chain in one go.
"""

import heapq
import hashlib
import io
import itertools
import os
import random
import re
import threading
import time
import uuid

CHUNK = 1 << 20


class Blob:
    """File content: an ordered list of (path, size) segments owned by the blob."""

    def __init__(self, segments, sha256=None, md5=None):
        self.segments = list(segments)
        self.size = sum(size for _p, size in self.segments)
        self.sha256 = sha256
        self.md5 = md5

    def chunks(self, start=0, end=None):
        """Yield the bytes [start, end) in chunks of at most 1 MiB."""
        if end is None:
            end = self.size
        pos = 0
        for path, size in self.segments:
            seg_start, seg_end = pos, pos + size
            pos = seg_end
            if seg_end <= start or seg_start >= end:
                continue
            lo = max(start, seg_start) - seg_start
            hi = min(end, seg_end) - seg_start
            with open(path, "rb") as f:
                f.seek(lo)
                left = hi - lo
                while left > 0:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        raise IOError(f"segment {path} shorter than recorded")
                    left -= len(data)
                    yield data

    def head(self, n):
        out = bytearray()
        for data in self.chunks(0, min(n, self.size)):
            out += data
        return bytes(out)

    def read_all(self, limit=64 << 20):
        if self.size > limit:
            raise ValueError("blob too large to read into memory")
        return self.head(self.size)

    def open(self):
        return io.BufferedReader(SegmentReader(self), buffer_size=CHUNK)

    def compute_hashes(self):
        sha, md5 = hashlib.sha256(), hashlib.md5()
        for data in self.chunks():
            sha.update(data)
            md5.update(data)
        self.sha256, self.md5 = sha.hexdigest(), md5.hexdigest()

    def delete(self):
        for path, _size in self.segments:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.segments = []


class SegmentReader(io.RawIOBase):
    """A seekable read-only view of a Blob (for zipfile and friends)."""

    def __init__(self, blob):
        super().__init__()
        self.blob = blob
        self.pos = 0
        self.files = {}

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=0):
        if whence == 0:
            self.pos = offset
        elif whence == 1:
            self.pos += offset
        else:
            self.pos = self.blob.size + offset
        return self.pos

    def readinto(self, b):
        want = len(b)
        got = 0
        base = 0
        for path, size in self.blob.segments:
            if got >= want:
                break
            if self.pos < base + size:
                f = self.files.get(path)
                if f is None:
                    f = self.files[path] = open(path, "rb")
                f.seek(self.pos - base)
                data = f.read(min(want - got, base + size - self.pos))
                b[got:got + len(data)] = data
                got += len(data)
                self.pos += len(data)
            base += size
        return got

    def close(self):
        for f in self.files.values():
            f.close()
        self.files = {}
        super().close()


class State:
    """All mutable emulator state.  Hold `lock` while touching anything."""

    def __init__(self, data_dir, tick, seed):
        self.lock = threading.RLock()
        self.data_dir = data_dir
        os.makedirs(os.path.join(data_dir, "parts"), exist_ok=True)
        os.makedirs(os.path.join(data_dir, "objects"), exist_ok=True)
        self.tick = tick
        self.rng = random.Random(seed)
        self._start = time.monotonic()
        self._wall_start = time.time()
        self.offset = 0.0
        self._events = []
        self._seq = itertools.count()
        self._cursor = None
        self._file_seq = itertools.count(1)
        self.civ_seq = itertools.count(1)
        # objects, keyed by pk, in creation order (dicts keep insertion order)
        self.uploads = {}
        self.sessions = {}
        self.images = {}
        self.civs = {}
        self.jobs = {}
        self.archive_items = {}
        self.display_sets = {}
        self.requests = {}
        # part PUTs per (upload pk, part number): [received, acknowledged, size acked last]
        self.part_puts = {}
        # part bodies being received now, and the most at any one time
        self.parts_in_flight = 0
        self.parts_in_flight_max = 0
        # bytes of every part ever stored (an upper bound of any quota in use)
        self.part_bytes = 0
        self.leaks = []
        self.log = []

    # --- time -------------------------------------------------------------
    def now(self):
        return time.monotonic() - self._start + self.offset

    def wall(self, t=None):
        return self._wall_start + (self.now() if t is None else t)

    def advance(self, seconds):
        with self.lock:
            self.offset += seconds
            self.pump()

    # --- events -----------------------------------------------------------
    def schedule(self, ticks, fn, *args):
        """Run fn(*args) `ticks` ticks after the current event (or now)."""
        base = self._cursor if self._cursor is not None else self.now()
        heapq.heappush(self._events, (base + ticks * self.tick, next(self._seq), fn, args))

    def pump(self):
        with self.lock:
            now = self.now()
            while self._events and self._events[0][0] <= now:
                due, _seq, fn, args = heapq.heappop(self._events)
                self._cursor = due
                try:
                    fn(*args)
                finally:
                    self._cursor = None

    # --- ids and files ----------------------------------------------------
    def new_uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_token(self, nbytes=16):
        return "%0*x" % (nbytes * 2, self.rng.getrandbits(nbytes * 8))

    def new_path(self, kind="parts"):
        return os.path.join(self.data_dir, kind, "%08d" % next(self._file_seq))

    def adopt(self, blob):
        """Move a blob's segment files into the object store (cheap renames)."""
        segments = []
        for path, size in blob.segments:
            new = self.new_path("objects")
            os.rename(path, new)
            segments.append((new, size))
        blob.segments = segments
        return blob

    def blob_from_bytes(self, data):
        path = self.new_path("objects")
        with open(path, "wb") as f:
            f.write(data)
        blob = Blob([(path, len(data))])
        blob.sha256 = hashlib.sha256(data).hexdigest()
        blob.md5 = hashlib.md5(data).hexdigest()
        return blob

    def count_request(self, key):
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def count_part(self, path, query, acked=None):
        """Count a part PUT to /s3/uploads/<user>/<pk>?partNumber=n: received, or
        acknowledged with 'acked' bytes stored."""
        m = re.fullmatch(r"/s3/uploads/\d+/([0-9a-f-]{36})", path)
        number = (query.get("partNumber") or [""])[-1]
        if not m or not number.isdigit():
            return
        with self.lock:
            c = self.part_puts.setdefault((m.group(1), int(number)), [0, 0, None])
            if acked is None:
                c[0] += 1
            else:
                c[1] += 1
                c[2] = acked

    def part_body(self, delta):
        """A part body starts (+1) or ends (-1) arriving; keeps the maximum overlap."""
        with self.lock:
            self.parts_in_flight += delta
            self.parts_in_flight_max = max(self.parts_in_flight_max, self.parts_in_flight)

    def part_report(self):
        """GET /__fakegc__/parts (README.md)."""
        out, puts, acks = {}, 0, 0
        with self.lock:
            for (pk, n), (p, a, size) in sorted(self.part_puts.items()):
                u = out.setdefault(pk, {"puts": {}, "acks": {}, "sizes": {}})
                u["puts"][str(n)] = p
                if a:
                    u["acks"][str(n)] = a
                    u["sizes"][str(n)] = size
                puts += p
                acks += a
            return {"uploads": out, "puts": puts, "acks": acks,
                    "in_flight_max": self.parts_in_flight_max}
