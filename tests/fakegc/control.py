"""/__fakegc__/: inspection and control for tests (no authentication).

GET  /__fakegc__/state    everything received and built (format in README.md)
GET  /__fakegc__/faults   the fault configuration and how often each fault fired
POST /__fakegc__/faults   replace the fault configuration (JSON body)
POST /__fakegc__/clock    {"advance": seconds} and/or {"tick": seconds}
POST /__fakegc__/answer   {"display_set": pk, "answered": true} (refuse further changes)
GET  /__fakegc__/parts    part PUTs received and acknowledged per upload and part number
"""

from .core import Response
from .faults import FaultError
from . import cases, uploads as up


def _upload(u):
    return {"pk": u.pk, "user": u.user, "filename": u.filename,
            "status": up.STATUS_LABELS[u.status],
            "size": u.final_size if u.final_size is not None else u.pending_size(),
            "sha256": u.final_sha256, "md5": u.final_md5,
            "parts": sorted(u.parts), "deleted": u.deleted, "created": u.created}


def _civs(obj, attr="values"):
    return [c.inspect() for c in sorted(getattr(obj, attr).values(),
                                        key=lambda c: c.socket.pk)]


def state_snapshot(em):
    st = em.state
    with st.lock:
        st.pump()
        return {
            "now": st.now(), "tick": st.tick,
            "uploads": [_upload(u) for u in st.uploads.values()],
            "sessions": [{"pk": s.pk, "user": s.user, "status": cases.STATUS_LABELS[s.status],
                          "error_message": s.error_message, "filenames": s.upload_names,
                          "images": s.images, "target": s.target, "internal": s.internal,
                          "history": [h[1] for h in s.history]}
                         for s in st.sessions.values()],
            "images": [{"pk": i.pk, "name": i.name, "origin": i.origin,
                        "files": [{"pk": f.pk, "name": f.name, "size": f.blob.size,
                                   "sha256": f.blob.sha256} for f in i.files]}
                       for i in st.images.values()],
            "archive_items": [{"pk": a.pk, "archive": a.archive.slug, "title": a.title,
                               "values": _civs(a), "pending": a.pending,
                               "failures": a.failures}
                              for a in st.archive_items.values()],
            "display_sets": [{"pk": d.pk, "reader_study": d.reader_study.slug,
                              "title": d.title, "order": d.order, "values": _civs(d),
                              "pending": d.pending, "failures": d.failures,
                              "answered": d.answered}
                             for d in st.display_sets.values()],
            "jobs": [{"pk": j.pk, "user": j.user, "algorithm": j.algorithm.slug,
                      "status": j.status, "inputs": _civs(j), "outputs": _civs(j, "outputs"),
                      "pending": j.pending, "failures": j.failures,
                      "input_filenames": j.input_names,
                      "history": [h[1] for h in j.history]}
                     for j in st.jobs.values()],
            "requests": dict(sorted(st.requests.items())),
            "leaks": list(st.leaks),
            "limits": dict(em.limits),
            "faults": em.faults.report(),
            "log": list(st.log),
        }


def get_state(em, req):
    return Response(200, state_snapshot(em))


def get_faults(em, req):
    return Response(200, em.faults.report())


def post_faults(em, req):
    try:
        em.faults.configure(req.data)
    except (FaultError, TypeError, ValueError, KeyError) as e:
        return Response(400, {"error": str(e)})
    return Response(200, {"ok": True})


def post_clock(em, req):
    st = em.state
    data = req.data if isinstance(req.data, dict) else {}
    try:
        with st.lock:
            if "tick" in data:
                st.tick = float(data["tick"])
            if "advance" in data:
                st.advance(float(data["advance"]))
            st.pump()
            return Response(200, {"now": st.now(), "tick": st.tick})
    except (TypeError, ValueError) as e:
        return Response(400, {"error": str(e)})


def post_answer(em, req):
    data = req.data if isinstance(req.data, dict) else {}
    with em.state.lock:
        ds = em.state.display_sets.get(str(data.get("display_set")))
        if ds is None:
            return Response(404, {"error": "no such display set"})
        ds.answered = bool(data.get("answered", True))
    return Response(200, {"ok": True})


def get_storage(em, req):
    return Response(200, em.storage_stats.report())


def post_storage(em, req):
    em.storage_stats.reset()
    return Response(200, {"ok": True})


def get_parts(em, req):
    return Response(200, em.state.part_report())


ROUTES = [
    ("control-state", r"/__fakegc__/state", {"GET": get_state}),
    ("control-faults", r"/__fakegc__/faults", {"GET": get_faults, "POST": post_faults}),
    ("control-clock", r"/__fakegc__/clock", {"POST": post_clock}),
    ("control-answer", r"/__fakegc__/answer", {"POST": post_answer}),
    ("control-storage", r"/__fakegc__/storage", {"GET": get_storage, "POST": post_storage}),
    ("control-parts", r"/__fakegc__/parts", {"GET": get_parts}),
]
