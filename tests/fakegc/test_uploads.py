"""The multipart upload protocol and the fake S3 (contract sections 3 and 8.2 #6-12)."""

import hashlib

from .testutil import EmulatorCase, sha256


class UploadCase(EmulatorCase):
    limits = {"min_part_size": 10}

    def create(self, name="a.mha", client=None):
        r = (client or self.c).post("uploads/", {"filename": name})
        self.assertEqual(r.status, 201, r)
        return r.json

    def action(self, u, name, body=None, method="PATCH", client=None):
        return (client or self.c).call(method, f"uploads/{u['pk']}/{u['s3_upload_id']}/{name}/",
                                       body=body)

    def presign(self, u, numbers):
        r = self.action(u, "generate-presigned-urls", {"part_numbers": numbers})
        self.assertEqual(r.status, 200, r)
        return r.json["presigned_urls"]

    def put(self, url, data, **kw):
        return self.c.call("PUT", url, raw=data, token=None, **kw)


class TestFlow(UploadCase):
    def test_create_presign_put_complete(self):
        u = self.create()
        self.assertEqual(u["status"], "Initialized")
        self.assertEqual(u["key"], f"uploads/1/{u['pk']}")
        self.assertEqual(sorted(u), sorted(["pk", "created", "filename", "key", "s3_upload_id",
                                            "status", "api_url"]))
        self.assertRegex(u["created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        urls = self.presign(u, [1, 2, 3])
        self.assertEqual(sorted(urls), ["1", "2", "3"])
        self.assertTrue(urls["1"].startswith(self.base + "s3/uploads/1/" + u["pk"] + "?"))
        data = [b"A" * 10, b"B" * 12, b"C" * 3]
        etags = []
        for n, d in enumerate(data, start=1):
            r = self.put(urls[str(n)], d)
            self.assertReply(r, 200)
            self.assertEqual(r.headers["ETag"], '"%s"' % hashlib.md5(d).hexdigest())
            etags.append(r.headers["ETag"])
        r = self.action(u, "list-parts", method="GET")
        self.assertEqual([(p["PartNumber"], p["Size"], p["ETag"]) for p in r.json["parts"]],
                         [(1, 10, etags[0]), (2, 12, etags[1]), (3, 3, etags[2])])
        r = self.action(u, "complete-multipart-upload",
                        {"parts": [{"ETag": e, "PartNumber": n}
                                   for n, e in enumerate(etags, start=1)]})
        self.assertReply(r, 200)
        self.assertEqual(r.json["status"], "Completed")
        self.assertReply(self.c.get(u["api_url"]), 200, r.json)
        st = self.c.state()["uploads"][0]
        self.assertEqual((st["filename"], st["status"], st["size"], st["sha256"]),
                         ("a.mha", "Completed", 25, sha256(b"".join(data))))
        # actions on a completed upload are server errors
        self.assertEqual(self.action(u, "abort-multipart-upload").status, 500)
        self.assertEqual(self.action(u, "list-parts", method="GET").status, 500)
        self.assertReply(self.action(u, "generate-presigned-urls", {"part_numbers": [4]}), 403,
                         {"detail": "Upload limit reached"})

    def test_out_of_order_and_replaced_parts_hash_correctly(self):
        u = self.create()
        urls = self.presign(u, [1, 2, 3])
        self.put(urls["3"], b"3" * 4)
        self.put(urls["1"], b"x" * 10)
        self.put(urls["2"], b"2" * 10)
        self.put(urls["1"], b"1" * 10)  # replaces part 1
        r = self.action(u, "list-parts", method="GET")
        etags = {p["PartNumber"]: p["ETag"] for p in r.json["parts"]}
        r = self.action(u, "complete-multipart-upload",
                        {"parts": [{"ETag": etags[n], "PartNumber": n} for n in (1, 2, 3)]})
        self.assertReply(r, 200)
        self.assertEqual(self.c.state()["uploads"][0]["sha256"],
                         sha256(b"1" * 10 + b"2" * 10 + b"3" * 4))

    def test_part_puts_are_counted_per_upload_and_part(self):
        self.assertEqual(self.c.get("/__fakegc__/parts", token=None).json,
                         {"uploads": {}, "puts": 0, "acks": 0, "in_flight_max": 0})
        u, v = self.create(), self.create("b.mha")
        urls, vurls = self.presign(u, [1, 2]), self.presign(v, [1])
        self.assertReply(self.put(urls["1"], b"x" * 10), 200)
        self.assertReply(self.put(urls["1"], b"y" * 10), 200)     # sent again
        self.assertReply(self.put(urls["2"], b"z"), 200)
        self.assertReply(self.put(vurls["1"], b"v"), 200)
        bad = urls["2"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
        self.assertEqual(self.put(bad, b"w").status, 403)         # received, refused
        parts = self.c.get("/__fakegc__/parts", token=None).json
        self.assertEqual(parts["uploads"][u["pk"]], {"puts": {"1": 2, "2": 2},
                                                     "acks": {"1": 2, "2": 1},
                                                     "sizes": {"1": 10, "2": 1}})
        self.assertEqual(parts["uploads"][v["pk"]], {"puts": {"1": 1}, "acks": {"1": 1},
                                                     "sizes": {"1": 1}})
        self.assertEqual((parts["puts"], parts["acks"], parts["in_flight_max"]), (5, 4, 1))

    def test_overlapping_part_bodies_are_seen(self):
        import socket
        import time
        from urllib.parse import urlsplit
        u = self.create()
        urls = self.presign(u, [1, 2])
        p = urlsplit(urls["1"])
        s = socket.create_connection((p.hostname, p.port), timeout=10)
        try:
            # part 1's body is half sent when part 2 is PUT whole on another connection
            s.sendall(f"PUT {p.path}?{p.query} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                      "\r\nab".encode())
            deadline = time.monotonic() + 10
            while self.emulator.state.parts_in_flight < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertReply(self.put(urls["2"], b"xyz"), 200)
            s.sendall(b"cd")
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 200"))
        finally:
            s.close()
        parts = self.c.get("/__fakegc__/parts", token=None).json
        self.assertEqual(parts["in_flight_max"], 2)
        self.assertEqual(parts["uploads"][u["pk"]]["sizes"], {"1": 4, "2": 3})

    def test_abort(self):
        u = self.create()
        urls = self.presign(u, [1])
        self.put(urls["1"], b"abc")
        r = self.action(u, "abort-multipart-upload")
        self.assertReply(r, 200)
        self.assertEqual((r.json["status"], r.json["s3_upload_id"]), ("Aborted", ""))
        # the old upload id is gone: part PUTs answer NoSuchUpload (XML)
        r = self.put(urls["1"], b"abc")
        self.assertEqual(r.status, 404)
        self.assertIn(b"<Code>NoSuchUpload</Code>", r.body)

    def test_list_and_detail_are_per_user(self):
        u = self.create()
        self.assertEqual(self.c.get("uploads/").json["count"], 1)
        self.assertReply(self.c2.get(u["api_url"]), 404,
                         {"detail": "No UserUpload matches the given query."})
        self.assertReply(self.action(u, "generate-presigned-urls", {"part_numbers": [1]},
                                     client=self.c2), 404)


class TestCreateValidation(UploadCase):
    def test_filename(self):
        cases = [({}, {"filename": ["This field is required."]}),
                 ({"filename": None}, {"filename": ["This field may not be null."]}),
                 ({"filename": "  "}, {"filename": ["This field may not be blank."]}),
                 ({"filename": "x" * 129},
                  {"filename": ["Ensure this field has no more than 128 characters."]}),
                 ({"filename": "../../foo.bat"},
                  {"filename": ["../../foo.bat is not a valid filename"]}),
                 ({"filename": "dir/a.mha"}, {"filename": ["dir/a.mha is not a valid filename"]}),
                 ({"filename": ["a"]}, {"filename": ["Not a valid string."]})]
        for body, expected in cases:
            self.assertReply(self.c.post("uploads/", body), 400, expected)

    def test_too_many_uploads(self):
        self.emulator.limits["max_uploads"] = 2
        for i in range(3):
            self.create(f"f{i}")
        self.assertReply(self.c.post("uploads/", {"filename": "x"}), 400, {
            "non_field_errors": ["You have created too many uploads. Please try again later."]})
        self.create("y", client=self.c2)


class TestPresignValidation(UploadCase):
    def test_messages(self):
        u = self.create()
        self.assertReply(self.action(u, "generate-presigned-urls", {}), 400,
                         {"non_field_errors": ["The `part_numbers` field is required"]})
        self.assertReply(self.action(u, "generate-presigned-urls", {"part_numbers": "1"}), 400,
                         {"part_numbers": ['Expected a list of items but got type "str".']})
        r = self.action(u, "generate-presigned-urls", {"part_numbers": [0, 2, "x", 10001]})
        self.assertReply(r, 400, {"part_numbers": {
            "0": ["Ensure this value is greater than or equal to 1."],
            "2": ["A valid integer is required."],
            "3": ["Ensure this value is less than or equal to 10000."]}})
        self.assertReply(self.c.patch(f"uploads/{u['pk']}/wrong/generate-presigned-urls/",
                                      {"part_numbers": [1]}), 404, {"detail": "Not found."})

    def test_quota(self):
        self.emulator.limits["upload_quota"] = 20
        u = self.create()
        urls = self.presign(u, [1, 2])
        self.put(urls["1"], b"x" * 20)
        self.assertReply(self.action(u, "generate-presigned-urls", {"part_numbers": [3]}), 403,
                         {"detail": "Upload limit reached"})


class TestCompleteChecks(UploadCase):
    def setUp(self):
        super().setUp()
        self.u = self.create()
        urls = self.presign(self.u, [1, 2, 3])
        self.etags = [self.put(urls["1"], b"a" * 10).headers["ETag"],
                      self.put(urls["2"], b"b" * 5).headers["ETag"],
                      self.put(urls["3"], b"c" * 10).headers["ETag"]]

    def complete(self, parts):
        return self.action(self.u, "complete-multipart-upload", {"parts": parts})

    def test_serializer_errors(self):
        self.assertReply(self.action(self.u, "complete-multipart-upload", {}), 400,
                         {"non_field_errors": ["The `parts` field is required"]})
        self.assertReply(self.complete({"a": 1}), 400, {"parts": {"non_field_errors": [
            'Expected a list of items but got type "dict".']}})
        self.assertReply(self.complete([{"ETag": self.etags[0], "PartNumber": 1},
                                        {"PartNumber": "x"}]), 400,
                         {"parts": [{}, {"PartNumber": ["A valid integer is required."]}]})

    def test_s3_refusals_are_500(self):
        e = self.etags
        bad = [
            [],                                                       # no parts
            [{"ETag": e[1], "PartNumber": 2}, {"ETag": e[0], "PartNumber": 1}],  # order
            [{"ETag": e[0], "PartNumber": 1}, {"ETag": e[0], "PartNumber": 2}],  # etag
            [{"ETag": e[1], "PartNumber": 2}, {"ETag": e[2], "PartNumber": 3}],  # 5 B part 2
            [{"ETag": e[0], "PartNumber": 1, "Size": 10}],           # extra key
            [{"PartNumber": 1}],                                      # no ETag
            [{"ETag": e[0], "PartNumber": 4}],                        # unknown part
        ]
        for parts in bad:
            r = self.complete(parts)
            self.assertEqual(r.status, 500, parts)
            self.assertTrue(r.headers["Content-Type"].startswith("text/html"))
        self.assertEqual(self.c.get(self.u["api_url"]).json["status"], "Initialized")

    def test_subset_and_unquoted_etag_accepted(self):
        r = self.complete([{"ETag": self.etags[0].strip('"'), "PartNumber": 1},
                           {"ETag": self.etags[1], "PartNumber": 2, "Other": "ignored"}])
        self.assertReply(r, 200)
        self.assertEqual(self.c.state()["uploads"][0]["sha256"], sha256(b"a" * 10 + b"b" * 5))


class TestFakeS3(UploadCase):
    def test_signature_expiry_and_headers(self):
        u = self.create()
        url = self.presign(u, [1])["1"]
        r = self.put(url.replace("partNumber=1", "partNumber=2"), b"x")
        self.assertEqual(r.status, 403)
        self.assertIn(b"SignatureDoesNotMatch", r.body)
        self.assertEqual(self.put(url[:url.index("&X-Amz-Signature")], b"x").status, 403)
        # a part PUT carrying the platform token works (S3 ignores it) but is a leak
        r = self.c.call("PUT", url, raw=b"x")
        self.assertEqual(r.status, 200)
        leaks = self.c.state()["leaks"]
        self.assertEqual(len(leaks), 1)
        self.assertTrue(leaks[0]["authorization"].startswith("Bearer "))
        self.c.advance(3601)
        r = self.put(url, b"x")
        self.assertEqual(r.status, 403)
        self.assertIn(b"Request has expired", r.body)

    def test_chunked_refused(self):
        u = self.create()
        url = self.presign(u, [1])["1"]

        def gen():
            yield b"abc"
        r = self.c.call("PUT", url, raw=gen(), token=None,
                        headers={"Transfer-Encoding": "chunked"})
        self.assertEqual(r.status, 501)
        self.assertIn(b"NotImplemented", r.body)

    def test_expiry_of_uploads(self):
        self.emulator.limits["upload_max_age"] = 100
        u = self.create()
        self.c.advance(99)
        self.assertReply(self.c.get(u["api_url"]), 200)
        self.c.advance(2)
        self.assertReply(self.c.get(u["api_url"]), 404)
        self.assertEqual(self.c.state()["uploads"][0]["deleted"], "expired")


class TestFastStorage(UploadCase):
    """--fast-storage: part PUTs on a lean listener of their own (benchmarks)."""

    def setUp(self):
        super().setUp()
        self.fast = self.emulator.start_fast_storage()

    def tearDown(self):
        self.fast.close()
        super().tearDown()

    def raw(self, url, head, body=b""):
        """One request over a plain socket: (status line, headers text, body)."""
        import socket
        from urllib.parse import urlsplit
        u = urlsplit(url)
        s = socket.create_connection((u.hostname, u.port), timeout=10)
        try:
            target = u.path + ("?" + u.query if u.query else "")
            s.sendall(head.replace("TARGET", target).encode() + b"\r\n\r\n" + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return data

    def test_flow_and_counters(self):
        self.assertReply(self.c.call("POST", "/__fakegc__/storage", {}), 200)
        u = self.create()
        urls = self.presign(u, [1, 2])
        self.assertTrue(urls["1"].startswith(self.fast.base_url + "s3/uploads/1/"))
        self.assertNotEqual(self.fast.base_url, self.base)
        big = bytes(range(256)) * 1024        # 256 KiB: more than the 64 KiB kept
        r1 = self.put(urls["1"], big)
        r2 = self.put(urls["2"], b"tail")
        self.assertReply(r1, 200)
        self.assertReply(r2, 200)
        self.assertRegex(r1.headers["ETag"], r'^"[0-9a-f]{32}"$')
        st = self.c.get("/__fakegc__/storage").json
        self.assertEqual((st["parts"], st["bytes"], st["completed"]), (2, len(big) + 4, 0))
        self.assertLessEqual(st["first_byte"], st["last_ack"])
        r = self.action(u, "complete-multipart-upload",
                        {"parts": [{"ETag": r1.headers["ETag"], "PartNumber": 1},
                                   {"ETag": r2.headers["ETag"], "PartNumber": 2}]})
        self.assertReply(r, 200)
        self.assertEqual(self.c.get("/__fakegc__/storage").json["completed"], 1)
        up = self.c.state()["uploads"][0]
        # sizes are exact; content beyond the first 64 KiB of a part is not kept
        self.assertEqual((up["status"], up["size"], up["sha256"]), ("Completed", len(big) + 4,
                                                                    None))
        blob = self.emulator.state.uploads[u["pk"]].blob
        self.assertEqual(blob.head(64 << 10), big[:64 << 10])
        self.assertEqual(self.c.state()["requests"]["PUT /s3/uploads/{user}/{pk}"], 2)
        parts = self.c.get("/__fakegc__/parts", token=None).json
        self.assertEqual(parts["uploads"][u["pk"]], {"puts": {"1": 1, "2": 1},
                                                     "acks": {"1": 1, "2": 1},
                                                     "sizes": {"1": len(big), "2": 4}})
        self.assertReply(self.c.call("POST", "/__fakegc__/storage", {}), 200)
        st = self.c.get("/__fakegc__/storage").json
        self.assertEqual((st["parts"], st["bytes"], st["first_byte"]), (0, 0, None))

    def test_expect_keepalive_and_refusals(self):
        u = self.create()
        url = self.presign(u, [1])["1"]
        # Expect: 100-continue is answered before the body; two requests on one connection
        import socket
        from urllib.parse import urlsplit
        p = urlsplit(url)
        target = p.path + "?" + p.query
        s = socket.create_connection((p.hostname, p.port), timeout=10)
        try:
            s.sendall(f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                      "Expect: 100-continue\r\n\r\n".encode())
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 100 Continue"))
            s.sendall(b"abc")
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(1000)
            self.assertTrue(got.startswith(b"HTTP/1.1 200 OK"), got)
            s.sendall(f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nde"
                      .encode())
            got = b""
            while b"\r\n\r\n" not in got:
                got += s.recv(1000)
            self.assertTrue(got.startswith(b"HTTP/1.1 200 OK"), got)
        finally:
            s.close()
        # a tampered signature, an unknown upload, a bad part number
        r = self.put(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"), b"x")
        self.assertEqual(r.status, 403)
        self.assertIn(b"SignatureDoesNotMatch", r.body)
        other = self.presign(self.create("b.mha"), [1])["1"]
        self.assertReply(self.action(self.create("c.mha"), "abort-multipart-upload"), 200)
        self.assertReply(self.put(other, b"ok"), 200)
        # anything but a PUT with a Content-Length is refused and the connection closed
        data = self.raw(url, "GET TARGET HTTP/1.1\r\nHost: x")
        self.assertTrue(data.startswith(b"HTTP/1.1 405"), data)
        data = self.raw(url, "PUT TARGET HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
                        b"3\r\nabc\r\n0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 501"), data)
        # the token sent to storage is recorded as a leak, as on the normal path
        r = self.c.call("PUT", url, raw=b"x")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(self.c.state()["leaks"]), 1)

    def test_unknown_upload(self):
        u = self.create()
        url = self.presign(u, [1])["1"]
        self.assertReply(self.action(u, "abort-multipart-upload"), 200)
        r = self.put(url, b"x")
        self.assertEqual(r.status, 404)
        self.assertIn(b"NoSuchUpload", r.body)
