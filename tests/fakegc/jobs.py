"""algorithms/jobs/ and the job state machine (contract 4.3, 5.3, 5.4).

POST checks, in the platform's order: field errors (algorithm hyperlink, each input),
then image ready, credits, active-job limit, interface match, duplicate.  The job is
created "Validating inputs"; inputs from uploads/sessions are imported one tick later
(a failed import cancels the job); then one step per tick:
Queued -> Provisioned -> Executing -> Executed -> Succeeded, with one output value per
output socket of the matched interface.  Faults can fail a job after a given step, or
stall it in one (it never moves again: a platform that lost track of it).
"""

import json

from . import algorithms as algs
from . import cases
from . import values as vals
from .auth import paginate
from .core import (ApiError, Response, MSG_NULL, MSG_REQUIRED, MSG_NO_OBJECT, non_field,
                   not_found, parse_uuid, resolve_hyperlink)
from .cases import _fk_filter, _multi_filter

STATUS = {"Queued": 0, "Started": 1, "Re-Queued": 2, "Failed": 3, "Succeeded": 4,
          "Cancelled": 5, "Provisioning": 6, "Provisioned": 7, "Executing": 8, "Executed": 9,
          "Parsing Outputs": 10, "Executing Algorithm": 11,
          "External Execution In Progress": 12, "Validating inputs": 13}
TERMINAL = {"Failed", "Succeeded", "Cancelled"}
CHAIN = ["Queued", "Provisioned", "Executing", "Executed", "Succeeded"]


class Job(vals.CivSet):
    def __init__(self, state, user, algorithm, interface):
        super().__init__()
        self.pk = state.new_uuid()
        self.user = user
        self.algorithm = algorithm
        self.interface = interface
        self.status = "Validating inputs"
        self.outputs = {}
        self.created = state.now()
        self.history = [(state.now(), self.status)]
        self.fail_after = None
        self.stall_at = None
        self.started = None
        self.finished = None
        self.input_names = []

    def viewers(self, emulator):
        return {self.user}

    def set_status(self, state, status):
        self.status = status
        self.history.append((state.now(), status))


def job_url(base, job):
    return f"{base}api/v1/algorithms/jobs/{job.pk}/"


def _duration(seconds):
    s = int(round(seconds))
    return f"P{s // 86400}DT{(s % 86400) // 3600:02d}H{(s % 3600) // 60:02d}M{s % 60:02d}S"


def serialize(base, job):
    civs = sorted(job.values.values(), key=lambda c: (c.socket.pk, c.pk))
    outs = sorted(job.outputs.values(), key=lambda c: (c.socket.pk, c.pk))
    exec_d = None
    if job.started is not None and job.finished is not None:
        exec_d = _duration(job.finished - job.started)
    return {"pk": job.pk, "url": f"{base}algorithms/{job.algorithm.slug}/jobs/{job.pk}/",
            "api_url": job_url(base, job),
            "algorithm_image": f"{base}api/v1/algorithms/images/{job.algorithm.image_pk}/",
            "inputs": [c.hyperlinked(base) for c in civs],
            "outputs": [c.hyperlinked(base) for c in outs],
            "status": job.status, "hanging_protocol": None, "optional_hanging_protocols": [],
            "view_content": {}, "exec_duration": exec_d, "invoke_duration": exec_d,
            "algorithm": algs.algorithm_url(base, job.algorithm)}


def active_jobs(state, user):
    return [j for j in state.jobs.values() if j.user == user and j.status not in TERMINAL]


def _interfaces_message(alg):
    def oxford(items):
        items = [str(i) for i in items]
        if len(items) > 2:
            return ", and ".join([", ".join(items[:-1]), items[-1]])
        return " and ".join(items)
    combos = [f"Interface {n}: {oxford(s.display() for s in ins)}"
              for n, (ins, _outs) in enumerate(alg.interfaces, start=1)]
    return ("The set of inputs provided does not match any of the algorithm's interfaces. "
            f"This algorithm supports the following input combinations: {oxford(combos)}")


def _input_key(spec):
    if spec.get("image") is not None:
        return (spec["interface"].slug, "image", spec["image"].pk)
    if spec.get("value") is not None:
        return (spec["interface"].slug, "value", json.dumps(spec["value"], sort_keys=True))
    return None


def create_job(req):
    user = req.require_user()
    em, state, data = req.emulator, req.state, req.data
    errors = {}
    alg = None
    if "algorithm" not in data:
        errors["algorithm"] = [MSG_REQUIRED]
    elif data["algorithm"] is None:
        errors["algorithm"] = [MSG_NULL]
    else:
        try:
            pk = resolve_hyperlink(data["algorithm"], algs.ALGORITHM_PATH)
            alg = algs.find_algorithm(em, parse_uuid(pk))
            if alg is None or not algs.can_view(alg, user):
                errors["algorithm"] = [MSG_NO_OBJECT]
        except ValueError as e:
            errors["algorithm"] = [str(e)]
    specs = None
    if "inputs" not in data:
        errors["inputs"] = [MSG_REQUIRED]
    elif data["inputs"] is None:
        errors["inputs"] = [MSG_NULL]
    elif not isinstance(data["inputs"], list):
        errors["inputs"] = vals.not_a_list(data["inputs"])
    else:
        specs, errs = vals.parse_list(req, data["inputs"])
        if errs:
            errors["inputs"] = errs
    if errors:
        raise ApiError(400, errors)
    if not alg.image_ready:
        raise non_field("Algorithm image is not ready to be used")
    credits = em.limits["credits"]
    if credits is not None and credits < 1:
        raise non_field("You have run out of algorithm credits")
    if len(active_jobs(state, user)) >= em.limits["max_active_jobs"]:
        raise non_field("You have too many active jobs, please try again after they have "
                        "completed")
    provided = {s["interface"].slug for s in specs}
    interface = None
    for ins, outs in alg.interfaces:
        if {s.slug for s in ins} == provided:
            interface = (ins, outs)
            break
    if interface is None:
        raise non_field(_interfaces_message(alg))
    keys = [_input_key(s) for s in specs]
    if all(k is not None for k in keys):
        for j in state.jobs.values():
            if j.algorithm is alg and j.status != "Cancelled":
                existing = set()
                for c in j.values.values():
                    existing.add((c.socket.slug, "image", c.image) if c.image else
                                 (c.socket.slug, "value", json.dumps(c.value, sort_keys=True)))
                if existing == set(keys) and not j.pending:
                    raise non_field("A result for these inputs with the current image and "
                                    "model already exists.")
    if credits is not None:
        em.limits["credits"] = credits - 1
    job = Job(state, user, alg, interface)
    job.input_names = sorted(
        u.filename for s in specs for u in (
            ([s["user_upload"]] if s.get("user_upload") else []) +
            list(s.get("user_uploads") or []) +
            (list(s["upload_session"].uploads) if s.get("upload_session") else [])))
    job.fail_after, job.stall_at = em.faults.take_job_failure(job)
    state.jobs[job.pk] = job
    vals.apply(req, job, specs, on_settled=lambda st: inputs_settled(em, job))
    if not job.pending:
        state.schedule(1, step, em, job)
    body = {"pk": job.pk, "inputs": [c.post_repr(em.base_url) for c in
                                     sorted(job.values.values(), key=lambda c: c.socket.pk)],
            "status": "Validating inputs"}
    return Response(201, body)


def inputs_settled(emulator, job):
    """Called (from an event) whenever one of the job's imports has finished."""
    if job.status != "Validating inputs":
        return
    if job.failures:
        job.set_status(emulator.state, "Cancelled")
        return
    if not job.pending:
        emulator.state.schedule(1, step, emulator, job)


def step(emulator, job):
    """Move the job one step along CHAIN (or fail it where the faults say so)."""
    state = emulator.state
    if job.status in TERMINAL or job.status == job.stall_at:
        return
    if job.status == "Validating inputs":
        nxt = "Queued"
    else:
        nxt = CHAIN[CHAIN.index(job.status) + 1]
    if job.fail_after is not None and job.status == job.fail_after:
        job.set_status(state, "Failed")
        job.finished = state.now()
        return
    if nxt == "Executing":
        job.started = state._cursor if state._cursor is not None else state.now()
    if nxt == "Succeeded":
        job.finished = state._cursor if state._cursor is not None else state.now()
        make_outputs(emulator, job)
    job.set_status(state, nxt)
    if nxt != "Succeeded":
        state.schedule(1, step, emulator, job)


DEFAULT_VALUES = {"STR": "fakegc", "INT": 1, "FLT": 1.5, "BOOL": True, "CHOI": "fakegc",
                  "MCHO": ["fakegc"], "CHART": {}}


def make_outputs(emulator, job):
    state = emulator.state
    configured = job.algorithm.output_values
    for socket in job.interface[1]:
        if socket.super_kind == "Value":
            value = configured.get(socket.slug, DEFAULT_VALUES.get(socket.kind,
                                                                   {"job": job.pk}))
            civ = vals.Civ(state, socket, value=value)
        elif socket.super_kind == "File":
            name = socket.relative_path.rsplit("/", 1)[-1]
            if socket.family == "json":
                data = json.dumps(configured.get(socket.slug, {"job": job.pk}),
                                  indent=2).encode()
            elif socket.kind == "PDF":
                data = (b"%PDF-1.4\n% fakegc output of job " + job.pk.encode() +
                        b"\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>"
                        b"\n%%EOF\n")
            else:
                data = b"fakegc output of job " + job.pk.encode() + b"\n"
            civ = vals.Civ(state, socket, file=state.blob_from_bytes(data), file_name=name)
            emulator.media_objects["protected/" + civ.file_path()] = civ.file
        else:
            img = cases.Image(state, f"{socket.slug}.mha", None, job.user)
            header = (b"ObjectType = Image\nNDims = 3\nDimSize = 2 2 1\nElementSpacing = 1 1 1"
                      b"\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n")
            blob = state.blob_from_bytes(header + bytes(4))
            f = cases.ImageFile(state, img, f"{socket.slug}.mha", blob)
            img.files.append(f)
            img.width, img.height, img.depth = 2, 2, 1
            img.voxel = [1.0, 1.0, 1.0]
            state.images[img.pk] = img
            emulator.media_objects["protected/" + f.path()] = blob
            civ = vals.Civ(state, socket, image=img.pk)
        job.outputs[socket.slug] = civ


def list_jobs(req):
    em, state = req.emulator, req.state
    items = [j for j in state.jobs.values() if req.user is not None and j.user == req.user]
    alg = _fk_filter(req, "algorithm_image__algorithm",
                     lambda pk: algs.find_algorithm(em, pk) is not None)
    if alg is not None:
        items = [j for j in items if j.algorithm.pk == alg]
    for name, attr in (("input_image", "values"), ("output_image", "outputs")):
        pks = _multi_filter(req, name, lambda pk: pk in state.images)
        if pks is not None:
            items = [j for j in items
                     if any(c.image in pks for c in getattr(j, attr).values())]
    base = em.base_url
    return paginate(req, items, lambda j: serialize(base, j))


def get_job(req):
    pk = parse_uuid(req.params["pk"])
    if pk is None:
        raise not_found()
    job = req.state.jobs.get(pk)
    if job is None or req.user is None or job.user != req.user:
        raise not_found("Job")
    return Response(200, serialize(req.emulator.base_url, job))


ROUTES = [
    ("jobs-list", r"/api/v1/algorithms/jobs/", {"GET": list_jobs, "POST": create_job}),
    ("jobs-detail", r"/api/v1/algorithms/jobs/(?P<pk>[^/.]+)/", {"GET": get_job}),
]
