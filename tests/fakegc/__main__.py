"""python3 -m fakegc: run the emulator until SIGTERM/SIGINT.

The first line on stdout is the base URL (e.g. https://127.0.0.1:40123/); the API is
under api/v1/ of it.  See README.md for all flags.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading

from .faults import FaultError
from .fixtures import Fixtures, FixtureError
from .server import Emulator, Server, make_ssl_context, serve_in_thread


def _faults_arg(text):
    if text is None:
        return None
    if not text.lstrip().startswith("{"):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    return json.loads(text)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m fakegc",
                                description="Local grand-challenge.org API emulator")
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--token", action="append", default=[],
                   help="accepted API token (hex, repeatable; user ids 1, 2, ...)")
    p.add_argument("--tls-cert", help="server certificate (PEM); HTTPS when given")
    p.add_argument("--tls-key", help="server key (PEM)")
    p.add_argument("--fixtures", help="JSON file with sockets/algorithms/archives/...")
    p.add_argument("--seed", type=int, default=0, help="seed for ids and faults")
    p.add_argument("--state-dir", help="directory for file content (default: a temp dir, "
                   "removed at exit)")
    p.add_argument("--tick", type=float, default=0.2,
                   help="seconds per asynchronous step (imports, job statuses)")
    p.add_argument("--min-part-size", type=int, default=5 << 20,
                   help="minimum size of non-final parts (S3: 5 MiB)")
    p.add_argument("--upload-quota", type=int, default=128 << 30,
                   help="bytes per user in flight before presigning is refused")
    p.add_argument("--max-uploads", type=int, default=2000,
                   help="live uploads per user above which creating one is refused")
    p.add_argument("--max-active-jobs", type=int, default=16)
    p.add_argument("--credits", type=int, default=None,
                   help="jobs a user may still start (default: unlimited)")
    p.add_argument("--upload-max-age", type=float, default=86400.0,
                   help="seconds after which uploads are deleted")
    p.add_argument("--post-processing-tasks", type=int, default=0,
                   help="pretend this many image post-processing tasks are pending")
    p.add_argument("--faults", help="fault configuration: inline JSON or a file name")
    p.add_argument("--fast-storage", action="store_true",
                   help="benchmarks: serve part PUTs on a lean listener of their own that "
                   "keeps only the first 64 KiB of each part (see s3.py)")
    p.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = p.parse_args(argv)
    if not args.token:
        p.error("at least one --token is needed")
    for t in args.token:
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", t):
            p.error(f"--token must be hex: {t!r}")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        fixtures = Fixtures.load(args.fixtures)
        faults = _faults_arg(args.faults)
    except (OSError, ValueError, FixtureError) as e:
        print(f"fakegc: {e}", file=sys.stderr)
        return 2
    temp = args.state_dir is None
    data_dir = tempfile.mkdtemp(prefix="fakegc-") if temp else args.state_dir
    limits = {"min_part_size": args.min_part_size, "upload_quota": args.upload_quota,
              "max_uploads": args.max_uploads, "max_active_jobs": args.max_active_jobs,
              "credits": args.credits, "upload_max_age": args.upload_max_age,
              "post_processing_tasks": args.post_processing_tasks}
    try:
        emulator = Emulator(args.token, fixtures, data_dir, tick=args.tick, seed=args.seed,
                            limits=limits, faults=faults)
        ctx = make_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        server = Server(emulator, port=args.port, ssl_context=ctx, verbose=args.verbose)
    except (OSError, FaultError, ValueError) as e:
        print(f"fakegc: {e}", file=sys.stderr)
        if temp:
            shutil.rmtree(data_dir, ignore_errors=True)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.fast_storage:
        emulator.start_fast_storage()
    serve_in_thread(server)
    sys.stdout.write(emulator.base_url + "\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    if emulator.fast_storage is not None:
        emulator.fast_storage.close()
    server.shutdown()
    server.server_close()
    if temp:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
