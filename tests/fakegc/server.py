"""The HTTP(S) server: routing, authentication, faults, and writing responses.

One Emulator holds the configuration and the state; a ThreadingHTTPServer bound to
127.0.0.1 serves it with HTTP/1.1 keep-alive (every response has a Content-Length).
TLS handshakes happen in the connection's own thread, so a stalled client cannot
block accept().  API handlers run under the state lock; fake-S3 part uploads and
object downloads stream outside it.

Request path, in order: down? -> route -> fault rules (latency, then status / close
/ truncate) -> authentication -> method -> body parsing -> handler.
"""

import json
import re
import socket
import ssl
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from . import (algorithms, archives, cases, control, jobs, media, readerstudies, uploads)
from .auth import authenticate
from .core import ApiError, Request, Response, detail, html_error, server_error
from .faults import Faults
from .s3 import S3, FastStorage, StorageStats
from .store import State

GCAPI_LATEST = "0.13.2"
GCAPI_LOWEST = "0.13.0"

DEFAULT_LIMITS = {
    "min_part_size": 5 << 20,
    "upload_quota": 128 << 30,
    "max_uploads": 2000,
    "max_active_jobs": 16,
    "credits": None,
    "upload_max_age": 86400.0,
    "post_processing_tasks": 0,
}


def gcapi_version(req):
    return Response(200, {"latest_version": GCAPI_LATEST,
                          "lowest_supported_version": GCAPI_LOWEST})


def _display(pattern):
    """'/api/v1/uploads/(?P<pk>[^/.]+)/' -> '/api/v1/uploads/{pk}/'."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


class Route:
    def __init__(self, name, pattern, methods):
        self.name = name
        self.regex = re.compile(pattern + r"\Z")
        self.methods = methods
        self.display = _display(pattern)


# jobs before algorithms, items before archives: the detail patterns would eat them
API_ROUTES = ([("gcapi", r"/api/v1/gcapi/", {"GET": gcapi_version})] + jobs.ROUTES +
              algorithms.ROUTES + uploads.ROUTES + cases.ROUTES + archives.ROUTES +
              readerstudies.ROUTES)


class Emulator:
    def __init__(self, tokens, fixtures, data_dir, tick=0.2, seed=0, limits=None,
                 faults=None):
        self.fixtures = fixtures
        self.state = State(data_dir, tick, seed)
        self.tokens = {}
        for i, t in enumerate(tokens, start=1):
            self.tokens[bytes.fromhex(t).hex()] = i
        self.users = list(range(1, len(tokens) + 1))
        self.base_limits = dict(DEFAULT_LIMITS)
        self.base_limits.update(limits or {})
        self.limits = dict(self.base_limits)
        self.media_objects = {}
        self.base_url = "http://127.0.0.1/"
        self.s3 = S3(self, self.state.new_token(32).encode())
        self.storage_stats = StorageStats()
        # set by start_fast_storage(): presigned part URLs then point there
        self.storage_base_url = None
        self.fast_storage = None
        self.faults = Faults(self, seed)
        if faults:
            self.faults.configure(faults)
        self.api_routes = [Route(*r) for r in API_ROUTES]
        self.control_routes = [Route(*r) for r in control.ROUTES]
        self.media_routes = [Route(n, p, {"GET": h}) for n, p, h in media.ROUTES]

    def start_fast_storage(self, port=0):
        """Serve presigned part PUTs on a lean listener of their own (--fast-storage)."""
        self.fast_storage = FastStorage(self, port)
        self.storage_base_url = self.fast_storage.base_url
        self.fast_storage.start()
        return self.fast_storage

    # --- permissions and lookups used by the API modules ---------------------
    def users_of(self, obj):
        return set(self.users) if obj.users is None else set(obj.users)

    def find_archive_slug(self, slug, user):
        for a in self.fixtures.archives:
            if a.slug == slug and user in self.users_of(a):
                return a
        return None

    def archive_by_pk(self, pk):
        for a in self.fixtures.archives:
            if a.pk == pk:
                return a
        return None

    def archive_exists(self, pk):
        return self.archive_by_pk(pk) is not None

    def find_reader_study_slug(self, slug, user):
        for s in self.fixtures.reader_studies:
            if s.slug == slug and user in self.users_of(s):
                return s
        return None

    def reader_study_exists(self, pk):
        return any(s.pk == pk for s in self.fixtures.reader_studies)

    def add_images_to_archive(self, archive, socket_, images, user):
        archives.add_images_to_archive(self, archive, socket_, images, user)

    def pump(self):
        with self.state.lock:
            self.state.pump()
            uploads.expire_uploads(self)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus
    # the client's delayed ACK add ~40 ms to every response on a reused connection.
    disable_nagle_algorithm = True
    server_version = "fakegc"

    def version_string(self):
        return self.server_version
    timeout = 300

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    # every method goes through one dispatcher
    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # --- body helpers ------------------------------------------------------------
    def _length(self):
        try:
            return max(int(self.headers.get("Content-Length", "0")), 0)
        except ValueError:
            return 0

    def discard_body(self, length=None):
        if length is None and "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            try:
                self._read_body(keep=False)
            except (OSError, ValueError):
                self.close_connection = True
            return
        left = self._length() if length is None else length
        try:
            while left > 0:
                data = self.rfile.read(min(1 << 20, left))
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass
        if left > 0:
            self.close_connection = True

    def _read_body(self, keep=True):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                while size > 0:
                    data = self.rfile.read(min(size, 1 << 20))
                    if not data:
                        raise ConnectionError("connection closed inside a chunk")
                    size -= len(data)
                    if keep:
                        out += data
                self.rfile.readline(16)
        return self.rfile.read(self._length()) if self._length() else b""

    def _parse(self, body):
        if not body:
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not ctype:
            return {}
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                return json.loads(body.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise detail(400, f"JSON parse error - {e}") from None
            except ValueError as e:
                raise detail(400, f"JSON parse error - {e}") from None
        if ctype == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in parse_qs(body.decode("latin-1")).items()}
        if ctype == "multipart/form-data":
            return {}
        raise detail(415, f'Unsupported media type "{ctype}" in request.')

    # --- writing -----------------------------------------------------------------
    def send(self, resp, truncate=False):
        length = resp.length if resp.stream is not None else len(resp.body)
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(length))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            body = resp.body if resp.stream is None else b"".join(resp.stream)
            self.wfile.write(body[:max(len(body) // 2, 0)])
            self.wfile.flush()
            self.drop()
            return
        if resp.stream is not None:
            for chunk in resp.stream:
                self.wfile.write(chunk)
        else:
            self.wfile.write(resp.body)

    def drop(self):
        """Close the connection now, without (the rest of) a response."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- dispatch ----------------------------------------------------------------
    def dispatch(self):
        em = self.server.emulator
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        method = self.command
        try:
            if path.startswith("/__fakegc__/"):
                return self._control(em, path, query, method)
            down = em.faults.is_down()
            if down is not None:
                if down == "close":
                    return self.drop()
                self.discard_body()
                return self.send(Response(503, b"<h1>503 Service Unavailable</h1>",
                                          content_type="text/html"))
            if path.startswith("/s3/"):
                return self._s3(em, path, query, method, split.query)
            routes = em.media_routes if path.startswith("/media/") else em.api_routes
            self._api(em, routes, path, query, method, split.query)
        except (ConnectionError, ssl.SSLError, socket.timeout, BrokenPipeError):
            self.close_connection = True

    def _faults(self, em, name, key, method):
        """Apply latency; return (rule or None).  'close' is handled here."""
        latency, rule = em.faults.decide(name, key, method)
        if latency:
            time.sleep(latency)
        return rule

    def _fault_response(self, em, rule):
        body = rule.body
        if body is None:
            body = (b"<html><body><h1>%d</h1></body></html>" % rule.status
                    if rule.status != 500 else server_error().response.body)
            ctype = "text/html"
        else:
            ctype = "application/json"
        headers = {}
        ra = em.faults.retry_after(rule)
        if ra is not None:
            headers["Retry-After"] = ra
        return Response(rule.status, body, headers=headers, content_type=ctype)

    def _control(self, em, path, query, method):
        body = self._read_body()
        for r in em.control_routes:
            if r.regex.match(path):
                if method not in r.methods:
                    return self.send(Response(405, {"error": "method not allowed"}))
                try:
                    data = json.loads(body.decode() or "{}")
                except ValueError as e:
                    return self.send(Response(400, {"error": f"bad JSON: {e}"}))
                req = Request(em, method, path, query, self.headers, data, None, {})
                return self.send(r.methods[method](em, req))
        return self.send(Response(404, {"error": "unknown control route"}))

    def _s3(self, em, path, query, method, raw_query):
        st = em.state
        if self.headers.get("Authorization") is not None:
            with st.lock:
                st.leaks.append({"method": method, "path": path,
                                 "authorization": self.headers.get("Authorization"),
                                 "t": st.now()})
        name = "s3-put" if method == "PUT" else "s3-get"
        key = f"{method} /s3/uploads/{{user}}/{{pk}}" if method == "PUT" else f"{method} /s3/{{object}}"
        st.count_request(key)
        if method == "PUT":
            st.count_part(path, query)
        rule = self._faults(em, name, key, method)
        if rule is not None and rule.action == "close":
            return self.drop()
        if rule is not None and rule.action == "status":
            self.discard_body()
            return self.send(self._fault_response(em, rule))
        if method == "PUT":
            resp = em.s3.put_part(self, path, query)
        elif method in ("GET", "HEAD"):
            self.discard_body()
            with st.lock:
                em.pump()
            resp = em.s3.get_object(self, path, query)
        else:
            self.discard_body()
            resp = Response(405, b"<Error><Code>MethodNotAllowed</Code></Error>",
                            content_type="application/xml")
        self.send(resp, truncate=rule is not None and rule.action == "truncate")

    def _api(self, em, routes, path, query, method, raw_query):
        st = em.state
        route, m = None, None
        for r in routes:
            m = r.regex.match(path)
            if m:
                route = r
                break
        if route is None:
            st.count_request(f"{method} <unrouted>")
            self.discard_body()
            if not path.endswith("/") and any(r.regex.match(path + "/") for r in routes):
                loc = path + "/" + ("?" + raw_query if raw_query else "")
                return self.send(Response(301, b"", headers={"Location": loc},
                                          content_type="text/html; charset=utf-8"))
            return self.send(html_error(404, "Not Found").response)
        key = f"{method} {route.display}"
        st.count_request(key)
        rule = self._faults(em, route.name, key, method)
        if rule is not None and rule.action == "close":
            return self.drop()
        if rule is not None and rule.action == "status":
            self.discard_body()
            return self.send(self._fault_response(em, rule))
        truncate = rule is not None and rule.action == "truncate"
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        params = {k: v for k, v in m.groupdict().items()}
        if path.startswith("/media/"):
            try:
                with st.lock:
                    em.pump()
                    resp = route.methods["GET"](em, self.headers, params) \
                        if method in ("GET", "HEAD") else Response(
                            405, b"", content_type="text/html")
            except ApiError as e:
                resp = e.response
            return self.send(resp, truncate=truncate)
        try:
            resp = self._api_call(em, route, path, query, method, raw_query, body, params)
        except ApiError as e:
            resp = e.response
        except Exception:  # a bug here must look like the platform's 500, and be visible
            traceback.print_exc()
            resp = server_error().response
        self.send(resp, truncate=truncate)

    def _api_call(self, em, route, path, query, method, raw_query, body, params):
        st = em.state
        user = authenticate(self.headers.get("Authorization"), em.tokens)
        head = method == "HEAD"
        if method == "OPTIONS":
            return Response(200, {"name": route.name, "description": "",
                                  "renders": ["application/json"],
                                  "parses": ["application/json"]})
        handler = route.methods.get("GET" if head else method)
        if handler is None:
            if user is None and method in ("POST", "PUT", "PATCH", "DELETE"):
                raise detail(401, "Authentication credentials were not provided.",
                             headers={"WWW-Authenticate": "Bearer"})
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'},
                           headers={"Allow": ", ".join(sorted(route.methods) + ["OPTIONS"])})
        data = self._parse(body) if method in ("POST", "PUT", "PATCH") else {}
        if method in ("POST", "PUT", "PATCH") and not isinstance(data, dict):
            if user is None:
                raise detail(401, "Authentication credentials were not provided.",
                             headers={"WWW-Authenticate": "Bearer"})
            raise ApiError(400, {"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]})
        req = Request(em, method, path, query, self.headers, data, user, params)
        req.raw_query = raw_query
        with st.lock:
            em.pump()
            return handler(req)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, emulator, port=0, ssl_context=None, verbose=False):
        self.emulator = emulator
        self.ssl_context = ssl_context
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), Handler)
        scheme = "https" if ssl_context else "http"
        emulator.base_url = f"{scheme}://127.0.0.1:{self.server_address[1]}/"

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(30)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            conn.settimeout(Handler.timeout)
            super().finish_request(conn, client_address)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def make_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def serve_in_thread(server):
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True)
    t.start()
    return t
