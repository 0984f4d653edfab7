"""Fault injection: every kind of fault, and that random ones are reproducible."""

import email.utils
import http.client
import time
from urllib.parse import urlsplit

from .testutil import TOKEN, EmulatorCase, mha


class TestRules(EmulatorCase):
    limits = {"min_part_size": 1}

    def test_status_codes_and_count(self):
        self.c.faults({"rules": [{"route": "algorithms-list", "status": 503, "count": 2}]})
        self.assertEqual([self.c.get("algorithms/").status for _ in range(3)], [503, 503, 200])
        self.c.faults({"rules": [{"route": "GET /api/v1/archives/", "status": 502},
                                 {"route": "uploads-list", "status": 500}]})
        self.assertEqual(self.c.get("archives/").status, 502)
        r = self.c.get("uploads/")
        self.assertEqual(r.status, 500)
        self.assertIn(b"Server Error (500)", r.body)
        self.assertEqual(self.c.get("algorithms/").status, 200)
        hits = self.c.get("/__fakegc__/faults", token=None).json["rules"]
        self.assertEqual([h["hits"] for h in hits], [1, 1])

    def test_retry_after_forms(self):
        self.c.faults({"rules": [{"route": "gcapi", "status": 429, "retry_after": 3,
                                  "count": 1},
                                 {"route": "gcapi", "status": 429, "retry_after_date": 60,
                                  "skip": 1, "count": 1}]})
        r = self.c.get("gcapi/")
        self.assertEqual((r.status, r.headers["Retry-After"]), (429, "3"))
        r = self.c.get("gcapi/")
        self.assertEqual(r.status, 429)
        when = email.utils.parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
        self.assertAlmostEqual(when, time.time() + 60, delta=5)
        self.assertEqual(self.c.get("gcapi/").status, 200)

    def test_latency_close_truncate(self):
        self.c.faults({"rules": [{"route": "gcapi", "latency": 0.3, "count": 1}]})
        t = time.monotonic()
        self.assertEqual(self.c.get("gcapi/").status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.3)
        u = urlsplit(self.base)
        self.c.faults({"rules": [{"route": "gcapi", "action": "close", "count": 1},
                                 {"route": "algorithms-list", "action": "truncate",
                                  "count": 1}]})
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conn.request("GET", "/api/v1/gcapi/")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
        conn.close()
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conn.request("GET", "/api/v1/algorithms/", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        with self.assertRaises(http.client.IncompleteRead):
            resp.read()
        conn.close()

    def test_fraction_is_seeded(self):
        def run():
            self.c.faults({"seed": 7, "rules": [{"route": "gcapi", "status": 503,
                                                 "fraction": 0.5}]})
            return [self.c.get("gcapi/").status for _ in range(20)]
        a, b = run(), run()
        self.assertEqual(a, b)
        self.assertIn(503, a)
        self.assertIn(200, a)

    def test_s3_put_faults(self):
        u = self.c.post("uploads/", {"filename": "a"}).json
        url = self.c.patch(f"uploads/{u['pk']}/{u['s3_upload_id']}/generate-presigned-urls/",
                           {"part_numbers": [1]}).json["presigned_urls"]["1"]
        self.c.faults({"rules": [{"route": "s3-put", "status": 503, "count": 1}]})
        self.assertEqual(self.c.call("PUT", url, raw=b"abc", token=None).status, 503)
        self.assertEqual(self.c.call("PUT", url, raw=b"abc", token=None).status, 200)
        # both PUTs reached the emulator; only the second was acknowledged
        parts = self.c.get("/__fakegc__/parts", token=None).json
        self.assertEqual(parts["uploads"], {u["pk"]: {"puts": {"1": 2}, "acks": {"1": 1},
                                                      "sizes": {"1": 3}}})
        self.assertEqual((parts["puts"], parts["acks"]), (2, 1))

    def test_down(self):
        self.c.faults({"down": {"requests": 2}})
        for _ in range(2):
            with self.assertRaises(Exception):
                self.c.get("gcapi/")
        self.assertEqual(self.c.get("gcapi/").status, 200)
        self.c.faults({"down": {"seconds": 0.5, "action": "status"}})
        self.assertEqual(self.c.get("gcapi/").status, 503)
        time.sleep(0.6)
        self.assertEqual(self.c.get("gcapi/").status, 200)

    def test_bad_config_is_refused(self):
        r = self.c.post("/__fakegc__/faults", {"rules": [{"status": 500}]}, token=None)
        self.assertEqual(r.status, 400)
        r = self.c.post("/__fakegc__/faults", {"bogus": 1}, token=None)
        self.assertEqual(r.status, 400)


class TestPlatformFaults(EmulatorCase):
    limits = {"min_part_size": 1}

    def test_complete_fails(self):
        self.c.faults({"complete": {"count": 1, "when": "after"}})
        with self.assertRaises(AssertionError):
            self.c.upload("a.mha", b"abc")
        st = self.c.state()["uploads"][0]
        self.assertEqual(st["status"], "Completed")   # the 500 came after the commit
        self.c.faults({"complete": {"count": 1}})
        with self.assertRaises(AssertionError):
            self.c.upload("b.mha", b"abc")
        self.assertEqual(self.c.state()["uploads"][1]["status"], "Initialized")
        self.c.upload("c.mha", b"abc")

    def test_presign_quota(self):
        self.c.faults({"presign_quota": {"count": 1}})
        u = self.c.post("uploads/", {"filename": "a"}).json
        path = f"uploads/{u['pk']}/{u['s3_upload_id']}/generate-presigned-urls/"
        self.assertReply(self.c.patch(path, {"part_numbers": [1]}), 403,
                         {"detail": "Upload limit reached"})
        self.assertReply(self.c.patch(path, {"part_numbers": [1]}), 200)

    def test_limits_through_faults(self):
        self.c.faults({"limits": {"max_uploads": 0}})
        self.c.post("uploads/", {"filename": "a"})
        self.assertEqual(self.c.post("uploads/", {"filename": "b"}).status, 400)
        self.c.faults({})
        self.assertEqual(self.c.post("uploads/", {"filename": "b"}).status, 201)

    def test_job_and_import_failures(self):
        alg = self.c.get("algorithms/?slug=demo-algorithm").json["results"][0]
        self.c.faults({"jobs": [{"input": r"^bad", "after": "Provisioned"}],
                       "imports": [{"filename": r"broken", "count": 1,
                                    "error": "Time limit exceeded"}]})

        def job(name):
            up = self.c.upload(name, mha())
            return self.c.post("algorithms/jobs/", {"algorithm": alg["api_url"], "inputs": [
                {"interface": "generic-medical-image", "user_uploads": [up["api_url"]]}]}).json
        j1, j2, j3 = job("bad.mha"), job("good.mha"), job("broken.mha")
        self.step(8)
        status = lambda j: self.c.get(f"algorithms/jobs/{j['pk']}/").json["status"]
        self.assertEqual([status(j1), status(j2), status(j3)],
                         ["Failed", "Succeeded", "Cancelled"])
        hist = [j["history"] for j in self.c.state()["jobs"]]
        self.assertEqual(hist[0], ["Validating inputs", "Queued", "Provisioned", "Failed"])
        sessions = {s["filenames"][0]: s for s in self.c.state()["sessions"]}
        self.assertEqual(sessions["broken.mha"]["error_message"], "Time limit exceeded")

    def test_job_stall(self):
        alg = self.c.get("algorithms/?slug=demo-algorithm").json["results"][0]
        self.c.faults({"jobs": [{"input": r"^stuck", "count": 1, "stall": "Executing"}]})

        def job(name):
            up = self.c.upload(name, mha())
            return self.c.post("algorithms/jobs/", {"algorithm": alg["api_url"], "inputs": [
                {"interface": "generic-medical-image", "user_uploads": [up["api_url"]]}]}).json
        j1, j2, j3 = job("stuck.mha"), job("stuck-too.mha"), job("fine.mha")
        self.step(50)
        status = lambda j: self.c.get(f"algorithms/jobs/{j['pk']}/").json["status"]
        self.assertEqual([status(j1), status(j2), status(j3)],
                         ["Executing", "Succeeded", "Succeeded"])
        hist = [j["history"] for j in self.c.state()["jobs"]]
        self.assertEqual(hist[0], ["Validating inputs", "Queued", "Provisioned", "Executing"])
        r = self.c.post("/__fakegc__/faults", {"jobs": [{"stall": "Succeeded"}]}, token=None)
        self.assertEqual(r.status, 400)

    def test_media_host(self):
        alg = self.c.get("algorithms/?slug=demo-algorithm").json["results"][0]
        up = self.c.upload("a.mha", mha())
        j = self.c.post("algorithms/jobs/", {"algorithm": alg["api_url"], "inputs": [
            {"interface": "generic-medical-image", "user_uploads": [up["api_url"]]}]}).json
        self.step(8)
        outs = {o["interface"]["slug"]: o
                for o in self.c.get(f"algorithms/jobs/{j['pk']}/").json["outputs"]}
        self.c.faults({"media_host": "localhost"})
        loc = self.c.get(outs["report-pdf"]["file"]).headers["Location"]
        self.assertEqual(urlsplit(loc).hostname, "localhost")
        self.assertEqual(urlsplit(loc).port, urlsplit(self.base).port)
        self.assertTrue(self.c.get(loc, token=None).body.startswith(b"%PDF"))
        self.assertEqual(self.c.get("/__fakegc__/faults", token=None).json["hits"],
                         {"media_host": 1})
