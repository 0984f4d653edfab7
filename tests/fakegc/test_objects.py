"""Archive items, display sets and algorithm jobs (contract 4.1, 4.3-4.5, 5.3-5.6)."""

import json

from .testutil import EmulatorCase, mha, sha256

POSSIBLE = ("['image', 'value', 'file', 'user_upload', 'upload_session', "
            "('image_name', 'user_uploads')]")


class ObjectCase(EmulatorCase):
    def setUp(self):
        super().setUp()
        self.archive = self.c.get("archives/?slug=demo-archive").json["results"][0]
        self.alg = self.c.get("algorithms/?slug=demo-algorithm").json["results"][0]
        self.multi = self.c.get("algorithms/?slug=multi-input-algorithm").json["results"][0]


class TestArchiveItems(ObjectCase):
    def test_post_then_patch(self):
        r = self.c.post("archives/items/", {"archive": self.archive["api_url"], "title": "c1"})
        self.assertReply(r, 201, {"pk": r.json["pk"], "title": "c1",
                                  "archive": self.archive["api_url"], "values": [],
                                  "hanging_protocol": None, "optional_hanging_protocols": [],
                                  "view_content": {}})
        item = r.json
        up = self.c.upload("ct.mha", mha())
        pdf = self.c.upload("report.pdf", b"%PDF-1.4 x")
        r = self.c.patch(f"archives/items/{item['pk']}/", {"values": [
            {"interface": "lung-volume", "value": 2.5},
            {"interface": "generic-medical-image", "user_uploads": [up["api_url"]]},
            {"interface": "report-pdf", "user_upload": pdf["api_url"]}]})
        self.assertReply(r, 200)
        self.assertEqual([(v["interface"], v["value"]) for v in r.json["values"]],
                         [("lung-volume", 2.5)])
        self.step()
        got = self.c.get(f"archives/items/{item['pk']}/").json
        kinds = {v["interface"]["slug"]: v for v in got["values"]}
        self.assertEqual(sorted(kinds), ["generic-medical-image", "lung-volume", "report-pdf"])
        self.assertIsNotNone(kinds["generic-medical-image"]["image"])
        self.assertTrue(kinds["report-pdf"]["file"].startswith(
            self.base + "media/components/componentinterfacevalue/"))
        r = self.c.get(kinds["report-pdf"]["file"])
        self.assertEqual(r.status, 302)
        self.assertEqual(self.c.get(r.headers["Location"], token=None).body, b"%PDF-1.4 x")
        self.assertEqual(self.anon.get(kinds["report-pdf"]["file"]).status, 404)
        # a second value for a socket replaces the first
        self.c.patch(f"archives/items/{item['pk']}/", {"values": [
            {"interface": "lung-volume", "value": 3}]})
        got = self.c.get(f"archives/items/{item['pk']}/").json
        self.assertEqual([v["value"] for v in got["values"]
                          if v["interface"]["slug"] == "lung-volume"], [3])
        r = self.c.get(f"archives/items/?archive={self.archive['pk']}")
        self.assertEqual(r.json["count"], 1)
        self.assertEqual(self.c.state()["archive_items"][0]["title"], "c1")

    def test_rules(self):
        url = self.archive["api_url"]
        self.assertReply(self.c.post("archives/items/", {"archive": url, "values": [
            {"interface": "lung-volume", "value": 1}]}), 400,
            ["Values can only be added via update"])
        self.assertReply(self.c.post("archives/items/", {
            "archive": self.base + "api/v1/archives/00000000-0000-4000-8000-000000000000/"}),
            400, {"archive": ["Invalid hyperlink - Object does not exist."]})
        self.assertReply(self.c.post("archives/items/", {"archive": "https://x/nothing/"}),
                         400, {"archive": ["Invalid hyperlink - No URL match."]})
        self.assertReply(self.c.post("archives/items/", {"archive": url, "title": "t"}), 201)
        self.assertReply(self.c.post("archives/items/", {"archive": url, "title": "t"}), 400,
                         {"non_field_errors": ["The fields title, archive must make a unique "
                                               "set."]})
        self.assertReply(self.c.post("archives/items/", {"archive": url}), 201)
        self.assertReply(self.c.post("archives/items/", {"archive": url}), 201)

    def test_value_errors(self):
        item = self.c.post("archives/items/", {"archive": self.archive["api_url"]}).json
        path = f"archives/items/{item['pk']}/"
        up = self.c.upload("a.mha", mha())
        cases = [
            ({"interface": "lung-volume"},
             {"non_field_errors": [f"You must provide at least one of {POSSIBLE}."]}),
            ({"interface": "lung-volume", "value": 1, "user_upload": up["api_url"]},
             {"non_field_errors": [f"You can only provide one of {POSSIBLE} for each socket."]}),
            ({"interface": "lung-volume", "value": None},
             {"non_field_errors": ["value is required for interface kind FLT"]}),
            ({"interface": "lung-volume", "value": "abc"},
             {"__all__": ["JSON does not fulfill schema: instance 'abc' is not of type "
                          "'number'"]}),
            ({"interface": "lesion-count", "value": 1.5},
             {"__all__": ["JSON does not fulfill schema: instance is not of type 'integer'"]}),
            ({"interface": "generic-medical-image", "value": 1},
             {"non_field_errors": ["upload_session, user_uploads or image are required for "
                                   "interface kind IMG"]}),
            ({"interface": "report-pdf", "user_uploads": [up["api_url"]]},
             {"non_field_errors": ["user_upload or file is required for interface kind PDF"]}),
            ({"interface": "dicom-image-set", "user_uploads": [up["api_url"]]},
             {"non_field_errors": ["either user_uploads with image_name, or image are "
                                   "required for interface kind DCMIS"]}),
            ({"interface": "nope", "value": 1},
             {"interface": ["Object with slug=nope does not exist."]}),
            ({"interface": "generic-medical-image",
              "image": self.base + "api/v1/cases/images/00000000-0000-4000-8000-000000000000/"},
             {"image": ["Invalid hyperlink - Object does not exist."]}),
            ({"interface": "generic-medical-image", "user_uploads": "x"},
             {"user_uploads": ['Expected a list of items but got type "str".']}),
        ]
        for value, err in cases:
            r = self.c.patch(path, {"values": [{"interface": "case-metadata", "value": {}},
                                               value]})
            self.assertReply(r, 400, {"values": [{}, err]})
        # gcapi sends every key, null for the unused ones: accepted
        full = {"interface": "lung-volume", "value": 4.0, "file": None, "image": None,
                "upload_session": None, "user_upload": None, "user_uploads": None,
                "image_name": None}
        self.assertReply(self.c.patch(path, {"values": [full]}), 200)

    def test_session_to_item_and_failed_import(self):
        item = self.c.post("archives/items/", {"archive": self.archive["api_url"]}).json
        bad = self.c.upload("notes.txt", b"x")
        r = self.c.post("cases/upload-sessions/", {"uploads": [bad["api_url"]],
                                                   "archive_item": item["pk"],
                                                   "interface": "generic-medical-image"})
        self.assertReply(r, 201)
        self.step()
        self.assertEqual(self.c.get(r.json["api_url"]).json["status"], "Failed")
        self.assertEqual(self.c.get(f"archives/items/{item['pk']}/").json["values"], [])


class TestDisplaySets(ObjectCase):
    def test_flow_and_rules(self):
        r = self.c.post("reader-studies/display-sets/",
                        {"reader_study": "demo-reader-study", "title": "c1", "order": 0})
        self.assertReply(r, 201)
        ds = r.json
        self.assertEqual((ds["reader_study"], ds["order"], ds["index"]),
                         ("demo-reader-study", 10, 0))
        self.assertEqual(sorted(ds), sorted(["pk", "title", "title_safe", "reader_study",
                                             "values", "order", "api_url", "hanging_protocol",
                                             "optional_hanging_protocols", "view_content",
                                             "description", "index"]))
        self.assertReply(self.c.post("reader-studies/display-sets/",
                                     {"reader_study": "demo-reader-study", "title": "c1"}), 400,
                         {"non_field_errors": ["The fields title, reader_study must make a "
                                               "unique set."]})
        self.assertReply(self.c.post("reader-studies/display-sets/",
                                     {"reader_study": "other"}), 400,
                         {"reader_study": ["Object with slug=other does not exist."]})
        self.assertReply(self.c.post("reader-studies/display-sets/", {
            "reader_study": "demo-reader-study", "values": [
                {"interface": "lung-volume", "value": 1}]}), 400,
            ["Values can only be added via update"])
        r = self.c.patch(f"reader-studies/display-sets/{ds['pk']}/",
                         {"values": [{"interface": "lung-volume", "value": 1}]})
        self.assertReply(r, 200)
        got = self.c.get(ds["api_url"]).json
        self.assertEqual(got["reader_study"], self.c.get(
            "reader-studies/?slug=demo-reader-study").json["results"][0]["api_url"])
        rs_pk = self.c.get("reader-studies/").json["results"][0]["pk"]
        self.assertEqual(self.c.get(f"reader-studies/display-sets/?reader_study={rs_pk}")
                         .json["count"], 1)
        self.c.post("/__fakegc__/answer", {"display_set": ds["pk"]}, token=None)
        self.assertReply(self.c.patch(f"reader-studies/display-sets/{ds['pk']}/",
                                      {"values": [{"interface": "lung-volume", "value": 2}]}),
                         400, ["This display set cannot be changed, as answers for it already "
                               "exist."])


class TestJobs(ObjectCase):
    def start(self, inputs, alg=None):
        return self.c.post("algorithms/jobs/", {"algorithm": (alg or self.alg)["api_url"],
                                                "inputs": inputs})

    def test_progression_outputs_and_downloads(self):
        up = self.c.upload("ct.mha", mha())
        r = self.start([{"interface": "generic-medical-image", "user_uploads": [up["api_url"]]}])
        self.assertReply(r, 201, {"pk": r.json["pk"], "inputs": [],
                                  "status": "Validating inputs"})
        url = self.base + f"api/v1/algorithms/jobs/{r.json['pk']}/"
        seen = [self.c.get(url).json["status"]]
        for _ in range(6):
            self.step()
            seen.append(self.c.get(url).json["status"])
        self.assertEqual(seen, ["Validating inputs", "Validating inputs", "Queued",
                                "Provisioned", "Executing", "Executed", "Succeeded"])
        job = self.c.get(url).json
        self.assertEqual(job["algorithm"], self.alg["api_url"])
        self.assertRegex(job["exec_duration"], r"^P0DT\d\dH\d\dM\d\dS$")
        outs = {o["interface"]["slug"]: o for o in job["outputs"]}
        self.assertEqual(outs["lung-volume"]["value"], 1234.5)
        r = self.c.get(outs["report-pdf"]["file"])
        self.assertEqual(r.status, 302)
        body = self.c.get(r.headers["Location"], token=None)
        self.assertTrue(body.body.startswith(b"%PDF"))
        img = job["inputs"][0]["image"]
        r = self.c.get(f"algorithms/jobs/?algorithm_image__algorithm={self.alg['pk']}"
                       f"&input_image={img.rstrip('/').rsplit('/', 1)[1]}")
        self.assertEqual([j["pk"] for j in r.json["results"]], [job["pk"]])
        self.assertEqual(self.c2.get(url).status, 404)
        st = self.c.state()["jobs"][0]
        self.assertEqual(st["history"], ["Validating inputs", "Queued", "Provisioned",
                                         "Executing", "Executed", "Succeeded"])
        self.assertEqual(self.c.state()["uploads"][0]["deleted"], "consumed")

    def test_image_output_and_session_input(self):
        up = self.c.upload("ct.mha", mha())
        s = self.c.post("cases/upload-sessions/", {"uploads": [up["api_url"]]}).json
        res = self.c.upload("results.json", json.dumps({"a": 1}).encode())
        r = self.start([{"interface": "ct-image", "upload_session": s["api_url"]},
                        {"interface": "case-metadata", "value": {"age": 3}},
                        {"interface": "results-json-file", "user_upload": res["api_url"]}],
                       alg=self.multi)
        self.assertReply(r, 201)
        self.assertEqual([i["interface"] for i in r.json["inputs"]], ["case-metadata"])
        # the session is consumed: a second reference is refused
        r2 = self.start([{"interface": "ct-image", "upload_session": s["api_url"]}],
                        alg=self.multi)
        self.assertReply(r2, 400, {"inputs": [{"upload_session": [
            "Invalid hyperlink - Object does not exist."]}]})
        self.step(7)
        job = self.c.get(f"algorithms/jobs/{r.json['pk']}/").json
        self.assertEqual(job["status"], "Succeeded")
        outs = {o["interface"]["slug"]: o for o in job["outputs"]}
        img = self.c.get(outs["generic-overlay"]["image"]).json
        self.assertEqual(len(img["files"]), 1)
        self.assertTrue(img["files"][0]["file"].endswith(".mha"))
        r = self.c.get(f"algorithms/jobs/?output_image={img['pk']}")
        self.assertEqual(r.json["count"], 1)

    def test_failed_input_import_cancels(self):
        up = self.c.upload("ct.txt", b"not an image")
        r = self.start([{"interface": "generic-medical-image", "user_uploads": [up["api_url"]]}])
        self.step(3)
        job = self.c.get(f"algorithms/jobs/{r.json['pk']}/").json
        self.assertEqual(job["status"], "Cancelled")
        self.assertEqual(job["outputs"], [])
        sess = self.c.get("cases/upload-sessions/").json["results"][0]
        self.assertEqual((sess["status"], sess["error_message"]),
                         ("Failed", "1 file could not be imported"))

    def test_validation(self):
        self.assertReply(self.c.post("algorithms/jobs/", {}), 400, {
            "algorithm": ["This field is required."], "inputs": ["This field is required."]})
        self.assertReply(self.c.post("algorithms/jobs/", {
            "algorithm": self.base + "api/v1/algorithms/00000000-0000-4000-8000-000000000000/",
            "inputs": []}), 400, {"algorithm": ["Invalid hyperlink - Object does not exist."]})
        self.assertReply(self.start([{"interface": "lung-volume", "value": 1}]), 400, {
            "non_field_errors": [
                "The set of inputs provided does not match any of the algorithm's interfaces. "
                "This algorithm supports the following input combinations: Interface 1: "
                "Generic Medical Image (Image)"]})
        r = self.start([{"interface": "ct-image", "value": 1}], alg=self.multi)
        self.assertReply(r, 400, {"inputs": [{"non_field_errors": [
            "upload_session, user_uploads or image are required for interface kind IMG"]}]})
        r = self.start([{"interface": "case-metadata", "value": 1}], alg=self.multi)
        self.assertEqual(r.json["non_field_errors"][0].split(": ", 1)[1],
                         "Interface 1: CT Image (Image), Case Metadata (Anything), and Results "
                         "JSON File (Anything) and Interface 2: CT Image (Image)")

    def test_limits_and_duplicates(self):
        up = self.c.upload("ct.mha", mha())
        first = self.start([{"interface": "generic-medical-image", "user_uploads": [
            up["api_url"]]}]).json
        self.step(7)
        img = self.c.get(f"algorithms/jobs/{first['pk']}/").json["inputs"][0]["image"]
        self.assertReply(self.start([{"interface": "generic-medical-image", "image": img}]), 400,
                         {"non_field_errors": ["A result for these inputs with the current "
                                               "image and model already exists."]})
        self.emulator.limits["max_active_jobs"] = 0
        self.assertReply(self.start([{"interface": "generic-medical-image", "image": img}]), 400,
                         {"non_field_errors": ["You have too many active jobs, please try "
                                               "again after they have completed"]})
        self.emulator.limits["credits"] = 0
        self.assertReply(self.start([{"interface": "generic-medical-image", "image": img}]), 400,
                         {"non_field_errors": ["You have run out of algorithm credits"]})
