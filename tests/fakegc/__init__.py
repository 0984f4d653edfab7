"""fakegc: a local emulator of the grand-challenge.org REST API.

It speaks the protocol described in docs/grand-challenge-api.md (the "contract"):
bearer-token auth, DRF limit/offset pagination, S3-style multipart uploads through
presigned URLs served by the emulator itself under /s3/, upload sessions with a fake
image importer, archive items, display sets and algorithm jobs with their status
progressions, and protected media downloads.

It is a test tool: it keeps everything in memory (large bodies are streamed to a
temporary directory), records what it received (GET /__fakegc__/state) and can inject
faults (POST /__fakegc__/faults).  Standard library only.

Layout (one module per API area):
  core.py          errors, responses, request context, URL and id helpers
  auth.py          bearer-token authentication and DRF pagination
  store.py         the shared state, the virtual clock and the event scheduler
  fixtures.py      default and file-loaded algorithms, archives, reader studies, sockets
  algorithms.py    algorithms/, components/interfaces/, socket serialisation, JSON schemas
  values.py        socket-value requests (job inputs, item values) and their validation
  uploads.py       uploads/ (multipart protocol)
  s3.py            the fake S3: presigned part PUTs and signed GETs under /s3/
  cases.py         cases/upload-sessions/, cases/images/, the fake importer
  archives.py      archives/, archives/items/
  readerstudies.py reader-studies/, reader-studies/display-sets/
  jobs.py          algorithms/jobs/ and the job state machine
  media.py         /media/ downloads (302 to signed /s3/ URLs)
  faults.py        fault injection
  control.py       /__fakegc__/ inspection and control endpoints
  server.py        the threaded HTTP(S) server and the router
  tls.py           throw-away CA and server certificate via the openssl CLI
"""

__version__ = "1.0"
