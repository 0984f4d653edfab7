"""Seeded platform objects: sockets, algorithms, archives, reader studies.

A fixture file is JSON (see README.md); DEFAULT_FIXTURES below is the built-in set and
is also shipped as tests/data/fakegc/default-fixtures.json.  Socket kinds may be given
by code ("IMG") or label ("Image"); the super kind follows the platform's rule
(contract 6.2): image kinds -> Image, JSON kinds stored in the database -> Value,
everything else -> File.  Objects without a pk get a stable one derived from the slug.
"""

import json
import uuid

# code: (label, family, extension)   -- contract 6.2
KINDS = {
    "STR": ("String", "json", ".json"), "INT": ("Integer", "json", ".json"),
    "FLT": ("Float", "json", ".json"), "BOOL": ("Bool", "json", ".json"),
    "JSON": ("Anything", "json", ".json"), "CHART": ("Chart", "json", ".json"),
    "2DBB": ("2D bounding box", "json", ".json"),
    "M2DB": ("Multiple 2D bounding boxes", "json", ".json"),
    "DIST": ("Distance measurement", "json", ".json"),
    "MDIS": ("Multiple distance measurements", "json", ".json"),
    "POIN": ("Point", "json", ".json"), "MPOI": ("Multiple points", "json", ".json"),
    "POLY": ("Polygon", "json", ".json"), "MPOL": ("Multiple polygons", "json", ".json"),
    "LINE": ("Line", "json", ".json"), "MLIN": ("Multiple lines", "json", ".json"),
    "ANGL": ("Angle", "json", ".json"), "MANG": ("Multiple angles", "json", ".json"),
    "ELLI": ("Ellipse", "json", ".json"), "MELL": ("Multiple ellipses", "json", ".json"),
    "3ANG": ("Three-point angle", "json", ".json"),
    "M3AN": ("Multiple three-point angles", "json", ".json"),
    "ATRG": ("Affine transform registration", "json", ".json"),
    "CHOI": ("Choice", "json", ".json"), "MCHO": ("Multiple choice", "json", ".json"),
    "IMG": ("Image", "image", None), "SEG": ("Segmentation", "image", None),
    "HMAP": ("Heat Map", "image", None), "DSPF": ("Displacement field", "image", None),
    "DCMIS": ("DICOM Image Set", "image", None),
    "PDF": ("PDF file", "file", ".pdf"), "SQREG": ("SQREG file", "file", ".sqreg"),
    "JPEG": ("Thumbnail jpg", "file", ".jpeg"), "PNG": ("Thumbnail png", "file", ".png"),
    "OBJ": ("OBJ file", "file", ".obj"), "MP4": ("MP4 file", "file", ".mp4"),
    "NEWCK": ("Newick tree-format file", "file", ".newick"),
    "BIOM": ("BIOM format", "file", ".biom"), "CSV": ("CSV file (legacy)", "file", ".csv"),
    "ZIP": ("ZIP file (legacy)", "file", ".zip"),
}
LABEL_TO_CODE = {label: code for code, (label, _f, _e) in KINDS.items()}
MULTIPLE_KINDS = {"M2DB", "MDIS", "MPOI", "MPOL", "MLIN", "MANG", "MELL", "M3AN"}

DEFAULT_FIXTURES = {
    "sockets": [
        {"slug": "generic-medical-image", "title": "Generic Medical Image", "kind": "IMG",
         "relative_path": "images/generic-medical-image",
         "description": "A medical image"},
        {"slug": "ct-image", "title": "CT Image", "kind": "IMG",
         "relative_path": "images/ct-image"},
        {"slug": "generic-overlay", "title": "Generic Overlay", "kind": "HMAP",
         "relative_path": "images/generic-overlay"},
        {"slug": "dicom-image-set", "title": "DICOM Image Set", "kind": "DCMIS",
         "relative_path": "images/dicom-image-set"},
        {"slug": "lung-volume", "title": "Lung Volume", "kind": "FLT",
         "relative_path": "lung-volume.json", "description": "Volume in millilitres"},
        {"slug": "lesion-count", "title": "Lesion Count", "kind": "INT",
         "relative_path": "lesion-count.json"},
        {"slug": "case-metadata", "title": "Case Metadata", "kind": "JSON",
         "relative_path": "case-metadata.json"},
        {"slug": "results-json-file", "title": "Results JSON File", "kind": "JSON",
         "store_in_database": False, "relative_path": "results.json"},
        {"slug": "report-pdf", "title": "Report PDF", "kind": "PDF",
         "relative_path": "report.pdf"},
    ],
    "algorithms": [
        {"slug": "demo-algorithm", "title": "Demo Algorithm",
         "description": "One image in; a lung volume and a PDF report out.",
         "interfaces": [{"inputs": ["generic-medical-image"],
                         "outputs": ["lung-volume", "report-pdf"]}],
         "outputs": {"lung-volume": 1234.5}},
        {"slug": "multi-input-algorithm", "title": "Multi Input Algorithm",
         "description": "Image, value and file in; image, value and file out.",
         "interfaces": [
             {"inputs": ["ct-image", "case-metadata", "results-json-file"],
              "outputs": ["generic-overlay", "lung-volume", "results-json-file"]},
             {"inputs": ["ct-image"], "outputs": ["lung-volume"]}]},
    ],
    "archives": [
        {"slug": "demo-archive", "title": "Demo Archive", "description": "Where cases go."},
    ],
    "reader_studies": [
        {"slug": "demo-reader-study", "title": "Demo Reader Study",
         "description": "Cases to read."},
    ],
}

NAMESPACE = uuid.UUID("6b1f4a3c-3d0e-4e0f-9a57-6661a6e6b001")


def stable_pk(kind, slug):
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{slug}"))


class FixtureError(ValueError):
    pass


class Socket:
    def __init__(self, d, pk):
        self.slug = d["slug"]
        kind = d.get("kind", "JSON")
        code = kind if kind in KINDS else LABEL_TO_CODE.get(kind)
        if code is None:
            raise FixtureError(f"socket {self.slug}: unknown kind {kind!r}")
        self.kind = code
        self.label, self.family, self.extension = KINDS[code]
        self.title = d.get("title", self.slug.replace("-", " ").title())
        self.description = d.get("description", "")
        self.pk = d.get("pk", pk)
        self.default_value = d.get("default_value")
        self.schema = d.get("schema", {})
        self.overlay_segments = d.get("overlay_segments", [])
        store = d.get("store_in_database", code not in MULTIPLE_KINDS)
        if "super_kind" in d:
            store = d["super_kind"] == "Value"
        if self.family == "image":
            self.super_kind = "Image"
        elif self.family == "json" and store:
            self.super_kind = "Value"
        else:
            self.super_kind = "File"
        if "super_kind" in d and d["super_kind"] != self.super_kind:
            raise FixtureError(f"socket {self.slug}: super_kind {d['super_kind']} does not "
                               f"fit kind {code}")
        default_path = (f"images/{self.slug}" if self.family == "image"
                        else f"{self.slug}{self.extension}")
        self.relative_path = d.get("relative_path", default_path)

    @property
    def is_dicom(self):
        return self.kind == "DCMIS"

    def display(self):
        """str(ComponentInterface): 'Title (Kind label)'."""
        return f"{self.title} ({self.label})"

    def serialize(self):
        return {"title": self.title, "description": self.description, "slug": self.slug,
                "kind": self.label, "pk": self.pk, "default_value": self.default_value,
                "super_kind": self.super_kind, "relative_path": self.relative_path,
                "overlay_segments": self.overlay_segments, "look_up_table": None}


class Algorithm:
    def __init__(self, d, sockets):
        self.slug = d["slug"]
        self.pk = d.get("pk", stable_pk("algorithm", self.slug))
        self.image_pk = d.get("image_pk", stable_pk("algorithm-image", self.slug))
        self.title = d.get("title", self.slug)
        self.description = d.get("description", "")
        self.public = bool(d.get("public", False))
        self.users = d.get("users")
        self.image_ready = bool(d.get("image_ready", True))
        self.average_duration = d.get("average_duration")
        self.output_values = d.get("outputs", {})
        self.interfaces = []
        for itf in d.get("interfaces", []):
            ins = [_socket(sockets, s, self.slug) for s in itf.get("inputs", [])]
            outs = [_socket(sockets, s, self.slug) for s in itf.get("outputs", [])]
            # the platform orders an interface's sockets by pk
            self.interfaces.append((sorted(ins, key=lambda s: s.pk),
                                    sorted(outs, key=lambda s: s.pk)))


class Archive:
    def __init__(self, d):
        self.slug = d["slug"]
        self.pk = d.get("pk", stable_pk("archive", self.slug))
        self.title = d.get("title", self.slug)
        self.description = d.get("description", "")
        self.public = bool(d.get("public", False))
        self.users = d.get("users")


class ReaderStudy:
    def __init__(self, d):
        self.slug = d["slug"]
        self.pk = d.get("pk", stable_pk("reader-study", self.slug))
        self.title = d.get("title", self.slug)
        self.description = d.get("description", "")
        self.public = bool(d.get("public", False))
        self.users = d.get("users")
        self.shuffle = bool(d.get("shuffle_hanging_list", False))


def _socket(sockets, slug, owner):
    if slug not in sockets:
        raise FixtureError(f"{owner}: unknown socket {slug!r}")
    return sockets[slug]


class Fixtures:
    def __init__(self, data):
        self.sockets = {}
        for i, d in enumerate(data.get("sockets", []), start=1):
            s = Socket(d, i)
            self.sockets[s.slug] = s
        self.algorithms = [Algorithm(d, self.sockets) for d in data.get("algorithms", [])]
        self.archives = [Archive(d) for d in data.get("archives", [])]
        self.reader_studies = [ReaderStudy(d) for d in data.get("reader_studies", [])]

    @classmethod
    def load(cls, path=None):
        if path is None:
            return cls(DEFAULT_FIXTURES)
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))


def main():
    """python3 -m fakegc.fixtures: print the default fixtures as JSON."""
    print(json.dumps(DEFAULT_FIXTURES, indent=2))


if __name__ == "__main__":
    main()
