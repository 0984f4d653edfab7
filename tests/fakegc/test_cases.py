"""Upload sessions, the fake importer and images (contract 4.2, 5.2, 5.5, 8.3)."""

from .testutil import EmulatorCase, mha, sha256, zip_of


class SessionCase(EmulatorCase):
    def session(self, files, client=None, **target):
        c = client or self.c
        ups = [c.upload(n, d)["api_url"] for n, d in files.items()]
        return c.post("cases/upload-sessions/", dict(uploads=ups, **target))


class TestSessionValidation(SessionCase):
    def test_messages(self):
        u = self.c.upload("a.mha", mha())["api_url"]
        post = lambda body: self.c.post("cases/upload-sessions/", body)
        self.assertReply(post({}), 400, {"uploads": ["This field is required."]})
        self.assertReply(post({"uploads": [u], "archive": None}), 400,
                         {"archive": ["This field may not be null."]})
        self.assertReply(post({"uploads": [u], "archive": "nope"}), 400,
                         {"archive": ["Object with slug=nope does not exist."]})
        self.assertReply(post({"uploads": [u], "interface": "generic-medical-image"}), 400,
                         {"non_field_errors": ["An interface can only be defined for archive, "
                                               "archive item or display set uploads."]})
        ds = self.c.post("reader-studies/display-sets/",
                         {"reader_study": "demo-reader-study"}).json
        item = self.c.post("archives/items/", {"archive": self.c.get(
            "archives/?slug=demo-archive").json["results"][0]["api_url"]}).json
        self.assertReply(post({"uploads": [u], "archive_item": item["pk"]}), 400, {
            "non_field_errors": ["An interface needs to be defined to upload to an archive "
                                 "item."]})
        self.assertReply(post({"uploads": [u], "display_set": ds["pk"]}), 400, {
            "non_field_errors": ["An interface needs to be defined to upload to a display "
                                 "set."]})
        self.assertReply(post({"uploads": [u], "archive": "demo-archive",
                               "display_set": ds["pk"]}), 400, {
            "non_field_errors": ["Only one of archive, archive item, answer or reader study "
                                 "can be set"]})
        u2 = self.c.upload("a.mha", mha())["api_url"]
        self.assertReply(post({"uploads": [u, u2]}), 400,
                         {"non_field_errors": ["Filenames must be unique"]})
        self.assertReply(post({"uploads": [u] * 101}), 400, {"non_field_errors": [
            "Too many files uploaded. A maximum of 100 files may be uploaded per session."]})
        # foreign and incomplete uploads look like non-existent ones
        self.assertReply(self.c2.post("cases/upload-sessions/", {"uploads": [u]}), 400,
                         {"uploads": ["Invalid hyperlink - Object does not exist."]})
        inc = self.c.post("uploads/", {"filename": "b.mha"}).json["api_url"]
        self.assertReply(post({"uploads": [inc]}), 400,
                         {"uploads": ["Invalid hyperlink - Object does not exist."]})
        self.emulator.limits["post_processing_tasks"] = 16
        self.assertReply(post({"uploads": [u]}), 400, {"non_field_errors": [
            "You currently have 16 active image post processing tasks. Please wait for them "
            "to complete before trying again."]})


class TestImport(SessionCase):
    def run_archive_session(self, files):
        r = self.session(files, archive="demo-archive")
        self.assertReply(r, 201)
        self.assertEqual(r.json["status"], "Queued")
        self.assertIsNone(r.json["error_message"])
        s = self.c.get(r.json["api_url"]).json
        self.assertEqual(s["status"], "Re-Queued")
        self.step()
        return self.c.get(r.json["api_url"]).json

    def test_mha_becomes_archive_item(self):
        data = mha((3, 4, 5))
        s = self.run_archive_session({"ct.mha": data})
        self.assertEqual(s["status"], "Succeeded")
        self.assertEqual((s["uploads"], s["user_uploads"]), ([], []))
        self.assertEqual(len(s["image_set"]), 1)
        img = self.c.get(s["image_set"][0]).json
        self.assertEqual((img["name"], img["width"], img["height"], img["depth"]),
                         ("ct.mha", 3, 4, 5))
        self.assertEqual(img["files"][0]["image_type"], "MHD")
        self.assertTrue(img["files"][0]["file"].startswith(
            self.base + f"media/images/{img['pk'][:2]}/{img['pk'][2:4]}/{img['pk']}/"))
        r = self.c.get("cases/images/?origin=" + s["pk"])
        self.assertEqual([i["pk"] for i in r.json["results"]], [img["pk"]])
        items = self.c.get("archives/items/").json["results"]
        self.assertEqual(len(items), 1)
        self.assertEqual(items[0]["values"][0]["interface"]["slug"], "generic-medical-image")
        self.assertEqual(items[0]["values"][0]["image"], s["image_set"][0])
        st = self.c.state()
        self.assertEqual(st["images"][0]["files"][0]["sha256"], sha256(data))
        self.assertEqual([u["deleted"] for u in st["uploads"]], ["consumed"])
        # the image file downloads through /media/ -> /s3/
        r = self.c.get(img["files"][0]["file"])
        self.assertEqual(r.status, 302)
        r2 = self.c.get(r.headers["Location"], token=None)
        self.assertEqual((r2.status, r2.body), (200, data))
        self.assertEqual(r2.headers["Content-Type"], "application/octet-stream")
        # archive users may see it, the anonymous user may not (403 / 404)
        self.assertEqual(self.c2.get(img["files"][0]["file"]).status, 302)
        self.assertEqual(self.anon.get(img["files"][0]["file"]).status, 403)
        self.assertEqual(self.c.get(img["files"][0]["file"], token="ef" * 32).status, 403)
        self.assertReply(self.anon.get(s["image_set"][0]), 404,
                         {"detail": "No Image matches the given query."})

    def test_mhd_pair_zip_and_dicom(self):
        hdr = b"ObjectType = Image\nDimSize = 2 2\nElementDataFile = x.zraw\n"
        s = self.run_archive_session({"x.mhd": hdr, "x.zraw": b"\0" * 4,
                                      "pack.zip": zip_of({"sub/y.mha": mha(),
                                                          "d/1.dcm": b"D1", "d/2.dcm": b"D2"})})
        self.assertEqual(s["status"], "Succeeded")
        self.assertIsNone(s["error_message"])
        names = sorted(self.c.get(u).json["name"] for u in s["image_set"])
        self.assertEqual(names, ["1.dcm", "x.mhd", "y.mha"])

    def test_nothing_importable_fails(self):
        s = self.run_archive_session({"notes.txt": b"hello"})
        self.assertEqual((s["status"], s["error_message"]),
                         ("Failed", "1 file could not be imported"))
        self.assertEqual(len(s["uploads"]), 1)   # kept on failure
        s = self.run_archive_session({"a.txt": b"x", "b.raw": b"y", "c.mha": b""})
        self.assertEqual(s["error_message"], "3 files could not be imported")

    def test_partial_success_keeps_message(self):
        s = self.run_archive_session({"a.mha": mha(), "b.txt": b"x"})
        self.assertEqual((s["status"], s["error_message"]),
                         ("Succeeded", "1 file could not be imported"))

    def test_untargeted_session_waits(self):
        r = self.session({"a.mha": mha()})
        self.step(3)
        s = self.c.get(r.json["api_url"]).json
        self.assertEqual(s["status"], "Queued")
        self.assertEqual(self.c.get("cases/upload-sessions/").json["count"], 1)
        self.assertEqual(self.c2.get("cases/upload-sessions/").json["count"], 0)
        self.assertReply(self.c2.get(r.json["api_url"]), 404)

    def test_images_filters(self):
        self.assertReply(self.c.get("cases/images/?origin=00000000-0000-4000-8000-000000000000"),
                         400, {"origin": ["Select a valid choice. That choice is not one of the "
                                          "available choices."]})
        self.assertReply(self.c.get("cases/images/?job_input=x"), 400,
                         {"job_input": ["\u201cx\u201d is not a valid value."]})
