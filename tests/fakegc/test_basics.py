"""Auth, pagination, routing, lookups: contract sections 1, 2 and 8.1."""

import http.client
import json
from urllib.parse import urlsplit

from .testutil import BAD_TOKEN, TOKEN, Client, EmulatorCase


class TestAuth(EmulatorCase):
    def test_gcapi_version_needs_no_token(self):
        r = self.anon.get("gcapi/")
        self.assertReply(r, 200, {"latest_version": "0.13.2",
                                  "lowest_supported_version": "0.13.0"})
        self.assertEqual(r.headers["Content-Type"], "application/json")

    def test_unknown_token(self):
        r = self.c.get("algorithms/", token=BAD_TOKEN)
        self.assertReply(r, 401, {"detail": "Invalid token."})
        self.assertEqual(r.headers["WWW-Authenticate"], "Bearer")
        # a bad token is refused even where no authentication is needed
        self.assertReply(self.c.get("gcapi/", token=BAD_TOKEN), 401)

    def test_non_hex_and_odd_tokens(self):
        for tok in ("zz" * 32, "abc", "ab" * 31 + "a"):
            self.assertReply(self.c.get("algorithms/", token=tok), 401,
                             {"detail": "Invalid token."})

    def test_malformed_headers(self):
        r = self.c.get("algorithms/", token=None, headers={"Authorization": "Bearer"})
        self.assertReply(r, 401, {"detail": "Invalid token header. No credentials provided."})
        r = self.c.get("algorithms/", token=None,
                       headers={"Authorization": f"Bearer {TOKEN} extra"})
        self.assertReply(r, 401, {"detail": "Invalid token header. Token string should not "
                                            "contain spaces."})

    def test_keyword_case_insensitive_and_uppercase_token(self):
        r = self.c.get("algorithms/", token=None,
                       headers={"Authorization": f"BEARER {TOKEN.upper()}"})
        self.assertReply(r, 200)
        self.assertEqual(r.json["count"], 2)

    def test_anonymous(self):
        # lists answer 200 with public objects only: the seeded ones are private
        self.assertReply(self.anon.get("algorithms/?slug=demo-algorithm"), 200,
                         {"count": 0, "next": None, "previous": None, "results": []})
        # writes and the socket list need a user
        r = self.anon.post("uploads/", {"filename": "a.mha"})
        self.assertReply(r, 401, {"detail": "Authentication credentials were not provided."})
        self.assertEqual(r.headers["WWW-Authenticate"], "Bearer")
        self.assertReply(self.anon.get("components/interfaces/"), 401)
        # a non-Bearer header is anonymous, not an error
        r = self.c.get("algorithms/", token=None, headers={"Authorization": f"Token {TOKEN}"})
        self.assertReply(r, 200)
        self.assertEqual(r.json["count"], 0)


class TestRouting(EmulatorCase):
    def test_unknown_route_is_django_404(self):
        r = self.c.get("nothing-here/")
        self.assertEqual(r.status, 404)
        self.assertTrue(r.headers["Content-Type"].startswith("text/html"))

    def test_missing_slash_redirects(self):
        r = self.c.get("algorithms?slug=x")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.headers["Location"], "/api/v1/algorithms/?slug=x")

    def test_wrong_method(self):
        r = self.c.call("DELETE", "algorithms/")
        self.assertReply(r, 405, {"detail": 'Method "DELETE" not allowed.'})

    def test_bad_json_and_media_type(self):
        r = self.c.post("uploads/", raw=b"{nope", headers={"Content-Type": "application/json"})
        self.assertReply(r, 400, {"detail": "JSON parse error - Expecting property name "
                                            "enclosed in double quotes: line 1 column 2 "
                                            "(char 1)"})
        r = self.c.post("uploads/", raw=b"x", headers={"Content-Type": "text/plain"})
        self.assertReply(r, 415, {"detail": 'Unsupported media type "text/plain" in request.'})
        r = self.c.post("uploads/", body=[1])
        self.assertReply(r, 400, {"non_field_errors": [
            "Invalid data. Expected a dictionary, but got list."]})

    def test_keep_alive(self):
        u = urlsplit(self.base)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        for _ in range(3):
            conn.request("GET", "/api/v1/algorithms/",
                         headers={"Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            body = r.read()
            self.assertEqual(r.status, 200)
            self.assertEqual(int(r.headers["Content-Length"]), len(body))
            self.assertEqual(r.version, 11)
        conn.close()
        # three requests, one connection
        self.assertEqual(self.c.state()["requests"]["GET /api/v1/algorithms/"], 3)


class TestLookups(EmulatorCase):
    def test_algorithm_by_slug_and_pk(self):
        r = self.c.get("algorithms/?slug=demo-algorithm&offset=0&limit=100")
        self.assertReply(r, 200)
        self.assertEqual(r.json["count"], 1)
        alg = r.json["results"][0]
        self.assertEqual(sorted(alg), sorted(["api_url", "url", "description", "pk", "title",
                                              "logo", "slug", "average_duration",
                                              "interfaces"]))
        itf = alg["interfaces"][0]
        self.assertEqual([s["slug"] for s in itf["inputs"]], ["generic-medical-image"])
        self.assertEqual([s["slug"] for s in itf["outputs"]], ["lung-volume", "report-pdf"])
        self.assertEqual(itf["inputs"][0]["kind"], "Image")
        self.assertEqual(itf["inputs"][0]["relative_path"], "images/generic-medical-image")
        self.assertTrue(alg["api_url"].startswith(self.base + "api/v1/algorithms/"))
        self.assertReply(self.c.get(alg["api_url"]), 200, alg)
        self.assertReply(self.c.get("algorithms/00000000-0000-4000-8000-000000000000/"), 404,
                         {"detail": "No Algorithm matches the given query."})
        self.assertReply(self.c.get("algorithms/not-a-uuid/"), 404, {"detail": "Not found."})

    def test_archive_has_no_slug(self):
        r = self.c.get("archives/?slug=demo-archive")
        a = r.json["results"][0]
        self.assertEqual(sorted(a), sorted(["pk", "title", "logo", "description", "api_url",
                                            "url"]))
        self.assertReply(self.c.get(a["api_url"]), 200, a)

    def test_reader_study_and_sockets(self):
        r = self.c.get("reader-studies/?slug=demo-reader-study")
        self.assertEqual(r.json["results"][0]["slug"], "demo-reader-study")
        r = self.c.get("components/interfaces/?slug=lung-volume")
        s = r.json["results"][0]
        self.assertEqual((s["kind"], s["super_kind"], s["relative_path"]),
                         ("Float", "Value", "lung-volume.json"))
        r = self.c.get("components/interfaces/?slug=results-json-file")
        self.assertEqual(r.json["results"][0]["super_kind"], "File")
        self.assertEqual(r.json["results"][0]["kind"], "Anything")
        r = self.c.get("components/interfaces/?slug=report-pdf")
        self.assertEqual(r.json["results"][0]["kind"], "PDF file")


class TestPagination(EmulatorCase):
    limits = {"max_uploads": 5000}

    def test_envelope_and_links(self):
        for i in range(150):
            self.c.post("uploads/", {"filename": f"f{i}"})
        r = self.c.get("uploads/")
        self.assertEqual(r.json["count"], 150)
        self.assertEqual(len(r.json["results"]), 100)
        self.assertIsNone(r.json["previous"])
        self.assertEqual(r.json["next"], self.base + "api/v1/uploads/?limit=100&offset=100")
        r2 = self.c.get(r.json["next"])
        self.assertEqual(len(r2.json["results"]), 50)
        self.assertIsNone(r2.json["next"])
        self.assertEqual(r2.json["previous"], self.base + "api/v1/uploads/?limit=100")
        r = self.c.get("uploads/?limit=20&offset=60")
        self.assertEqual(r.json["previous"], self.base + "api/v1/uploads/?limit=20&offset=40")
        self.assertEqual(r.json["next"], self.base + "api/v1/uploads/?limit=20&offset=80")
        # bad limits fall back to 100, a huge one is clamped to 1000, a bad offset is 0
        for q in ("limit=0", "limit=-3", "limit=x"):
            self.assertEqual(len(self.c.get("uploads/?" + q).json["results"]), 100)
        self.assertEqual(len(self.c.get("uploads/?limit=5000").json["results"]), 150)
        self.assertEqual(self.c.get("uploads/?offset=zz&limit=1").json["results"][0]["filename"],
                         "f0")
        # the other user sees none of them
        self.assertEqual(self.c2.get("uploads/").json["count"], 0)


class TestTls(EmulatorCase):
    tls = True

    def test_https_with_ca(self):
        r = self.c.get("algorithms/?slug=demo-algorithm")
        self.assertReply(r, 200)
        self.assertTrue(self.base.startswith("https://127.0.0.1:"))
        self.assertTrue(r.json["results"][0]["api_url"].startswith(self.base))

    def test_untrusted_ca_is_refused(self):
        import ssl
        import urllib.error
        plain = Client(self.base)       # system CAs only
        with self.assertRaises(urllib.error.URLError) as cm:
            plain.get("gcapi/")
        self.assertIsInstance(cm.exception.reason, ssl.SSLCertVerificationError)

    def test_state_over_https(self):
        self.c.get("gcapi/")
        st = self.c.state()
        self.assertEqual(st["requests"]["GET /api/v1/gcapi/"], 1)
        json.dumps(st)
