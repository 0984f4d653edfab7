"""Fault injection (test control, not platform behaviour).

The configuration is one JSON object (README.md has the full format), given with
--faults (inline JSON or a file name) or POSTed to /__fakegc__/faults, which replaces
it.  Random choices ("fraction") come from a generator seeded with "seed" (default:
the emulator's --seed), so a run with the same requests sees the same faults.
"""

import email.utils
import random
import re
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class FaultError(ValueError):
    pass


ACTIONS = ("status", "close", "truncate", "latency")
STALLABLE = ("Validating inputs", "Queued", "Provisioned", "Executing", "Executed")


class Rule:
    def __init__(self, d):
        if "route" not in d:
            raise FaultError("a rule needs a 'route'")
        self.route = d["route"]
        try:
            self.regex = re.compile(self.route)
        except re.error as e:
            raise FaultError(f"bad route regex {self.route!r}: {e}") from None
        self.method = d.get("method")
        self.fraction = float(d.get("fraction", 1.0))
        self.count = d.get("count")
        self.skip = int(d.get("skip", 0))
        self.status = d.get("status")
        self.latency = float(d.get("latency", 0))
        self.action = d.get("action") or ("status" if self.status else "latency")
        if self.action not in ACTIONS:
            raise FaultError(f"unknown action {self.action!r}")
        if self.action == "status" and not self.status:
            raise FaultError("action 'status' needs a 'status'")
        self.retry_after = d.get("retry_after")
        self.retry_after_date = d.get("retry_after_date")
        self.body = d.get("body")
        self.seen = 0
        self.hits = 0

    def matches(self, name, key, method):
        if self.method and self.method.upper() != method:
            return False
        return self.route == name or bool(self.regex.search(key))


class Faults:
    def __init__(self, emulator, seed):
        self.em = emulator
        self.default_seed = seed
        self.lock = threading.Lock()
        self.config = {}
        self.configure({})

    def configure(self, cfg):
        """Replace the whole fault configuration (raises FaultError when malformed)."""
        if not isinstance(cfg, dict):
            raise FaultError("the fault configuration must be a JSON object")
        known = {"seed", "rules", "down", "jobs", "imports", "complete", "presign_quota",
                 "limits", "media_host", "file_import_ticks"}
        unknown = set(cfg) - known
        if unknown:
            raise FaultError(f"unknown keys {sorted(unknown)}")
        rules = [Rule(r) for r in cfg.get("rules", [])]
        limits = dict(self.em.base_limits)
        for k, v in cfg.get("limits", {}).items():
            if k not in limits:
                raise FaultError(f"unknown limit {k!r}")
            limits[k] = v
        down = cfg.get("down") or {}
        with self.lock:
            self.config = cfg
            self.rng = random.Random(cfg.get("seed", self.default_seed))
            self.rules = rules
            self.down_until = (time.monotonic() + float(down["seconds"])
                               if "seconds" in down else None)
            self.down_requests = int(down.get("requests", 0))
            self.down_action = down.get("action", "close")
            self.jobs = [dict(j, left=j.get("count")) for j in cfg.get("jobs", [])]
            for j in self.jobs:
                if "stall" in j and j["stall"] not in STALLABLE:
                    raise FaultError(f"cannot stall a job in {j['stall']!r}")
            self.imports = [dict(i, left=i.get("count")) for i in cfg.get("imports", [])]
            c = cfg.get("complete")
            self.complete = dict(c, left=c.get("count", 1)) if c else None
            self.presign_quota = int((cfg.get("presign_quota") or {}).get("count", 0))
            self.media_host = cfg.get("media_host")
            self.file_import_ticks = float(cfg.get("file_import_ticks") or 1)
            self.hits = {}
        with self.em.state.lock:
            self.em.limits.clear()
            self.em.limits.update(limits)

    def _hit(self, what):
        self.hits[what] = self.hits.get(what, 0) + 1

    def is_down(self):
        with self.lock:
            if self.down_until is not None and time.monotonic() < self.down_until:
                self._hit("down")
                return self.down_action
            if self.down_requests > 0:
                self.down_requests -= 1
                self._hit("down")
                return self.down_action
        return None

    def decide(self, name, key, method):
        """(latency seconds, rule or None) for one request."""
        latency, chosen = 0.0, None
        with self.lock:
            for i, r in enumerate(self.rules):
                if not r.matches(name, key, method):
                    continue
                r.seen += 1
                if r.seen <= r.skip:
                    continue
                if r.count is not None and r.hits >= r.count:
                    continue
                if self.rng.random() >= r.fraction:
                    continue
                r.hits += 1
                self._hit(f"rule {i}")
                latency += r.latency
                if r.action != "latency" and chosen is None:
                    chosen = r
        return latency, chosen

    @staticmethod
    def retry_after(rule):
        if rule.retry_after_date is not None:
            return email.utils.formatdate(time.time() + float(rule.retry_after_date),
                                          usegmt=True)
        if rule.retry_after is not None:
            return str(rule.retry_after)
        return None

    def take_job_failure(self, job):
        """(fail after, stall at): the status after which this new job fails, and the
        status in which it stops moving (a platform that lost track of it), or None."""
        with self.lock:
            for f in self.jobs:
                if f["left"] is not None and f["left"] <= 0:
                    continue
                if "algorithm" in f and f["algorithm"] != job.algorithm.slug:
                    continue
                if "input" in f and not any(re.search(f["input"], n)
                                            for n in job.input_names):
                    continue
                if f["left"] is not None:
                    f["left"] -= 1
                self._hit("jobs")
                if "stall" in f:
                    return None, f["stall"]
                return f.get("after", "Executing"), None
        return None, None

    def take_import_failure(self, *filenames):
        """An error message if an import of these files must fail, else None."""
        with self.lock:
            for f in self.imports:
                if f["left"] is not None and f["left"] <= 0:
                    continue
                if "filename" in f and not any(re.search(f["filename"], n)
                                               for n in filenames):
                    continue
                if f["left"] is not None:
                    f["left"] -= 1
                self._hit("imports")
                return f.get("error", "An unexpected error occurred")
        return None

    def take_complete_failure(self):
        with self.lock:
            c = self.complete
            if c is None or c["left"] <= 0:
                return None
            c["left"] -= 1
            self._hit("complete")
            return c.get("when", "before")

    def take_presign_quota(self):
        with self.lock:
            if self.presign_quota > 0:
                self.presign_quota -= 1
                self._hit("presign_quota")
                return True
        return False

    def media_location(self, url):
        """The /media/ redirect's target, moved to the host "media_host" names (another
        origin: a client must not send its token there)."""
        with self.lock:
            if not self.media_host:
                return url
            self._hit("media_host")
            split = urlsplit(url)
            netloc = self.media_host + (f":{split.port}" if split.port else "")
            return urlunsplit(split._replace(netloc=netloc))

    def report(self):
        with self.lock:
            return {"config": self.config, "hits": dict(self.hits),
                    "rules": [{"route": r.route, "seen": r.seen, "hits": r.hits}
                              for r in self.rules]}
