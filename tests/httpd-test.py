#!/usr/bin/env python3
"""httpd-test.py: a small scripted HTTP(S) server for tests/check_http.c.

Three listeners on 127.0.0.1, each on an ephemeral port:
  api    HTTPS (the "API origin" of the tests)
  other  HTTPS (another origin: same host, other port, e.g. storage)
  plain  plain HTTP
Once they listen, one line of JSON with their ports is printed on stdout:
  {"api": 40001, "other": 40002, "plain": 40003}

Every request is appended to the log file (--log) as one JSON line, after its
body was read and before it is answered:
  {"listener": "api", "method": "PUT", "path": "/t1/upload/x", "tag": "t1",
   "headers": {"lower-case-name": "value", ...}, "body_len": 10, "body_md5": "..."}

Paths are /<tag>/<route>: the tag is any word the test chooses to find its own
requests in the log; the route decides the answer:
  json                      200 application/json {"ok": true, "method": ...}
  status/<code>             <code> with a JSON body
  403-token                 403 {"detail": "Invalid token."}
  retry-after/<value>       429 with Retry-After: <value> (URL-decoded)
  retry-after-date/<secs>   429 with Retry-After: an IMF-fixdate <secs> from now
  redirect-other/<rest>     302 to https://127.0.0.1:<other>/<tag>/<rest>
  redirect-api/<rest>       302 to https://127.0.0.1:<api>/<tag>/<rest>
  redirect-self/<rest>      302 to /<tag>/<rest> (relative)
  redirect-far/<rest>       302 to http://192.0.2.1/<rest> (must never be followed)
  loop                      302 to /<tag>/loop, forever
  big/<n>                   200, n bytes, with Content-Length
  big-chunked/<n>           200, n bytes, chunked (no Content-Length)
  slow/<n>                  200, Content-Length n, then 1 byte and silence
  cut/<n>                   200, Content-Length n, n/2 bytes, then the connection is closed
  download/<n>              200 application/octet-stream, byte i = i % 251
  etag                      200 with ETag: "0123abcd"
  upload/<any>              (PUT) reads the body, 200 with ETag: "<md5 of body>"
  slow-upload/<any>         (PUT) reads the body 16 KiB every 50 ms, then as upload/
Python 3 standard library only.
"""
import argparse
import email.utils
import hashlib
import http.server
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse

LOG_LOCK = threading.Lock()
PORTS = {}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "httpd-test"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    # ---- plumbing ----

    def read_body(self, slow=False):
        md5 = hashlib.md5()
        total = 0
        te = self.headers.get("Transfer-Encoding", "")
        if te.lower() == "chunked":
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                self.rfile.readline()
                md5.update(data)
                total += len(data)
        else:
            left = int(self.headers.get("Content-Length", "0") or 0)
            while left > 0:
                n = min(left, 16384 if slow else 1 << 20)
                data = self.rfile.read(n)
                if not data:
                    raise ConnectionError("body cut short")
                md5.update(data)
                total += len(data)
                left -= len(data)
                if slow:
                    time.sleep(0.05)
        return total, md5.hexdigest()

    def record(self, tag, body_len, body_md5):
        entry = {
            "listener": self.server.name,
            "method": self.command,
            "path": self.path,
            "tag": tag,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": body_len,
            "body_md5": body_md5,
        }
        with LOG_LOCK:
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def send(self, code, body=b"", ctype="application/json", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, code, obj, headers=()):
        self.send(code, json.dumps(obj).encode(), "application/json", headers)

    # ---- dispatch ----

    def handle_any(self):
        parts = self.path.split("?", 1)[0].split("/")
        tag = parts[1] if len(parts) > 1 else ""
        route = parts[2] if len(parts) > 2 else ""
        args = parts[3:]
        slow = route == "slow-upload"
        try:
            body_len, body_md5 = self.read_body(slow=slow)
        except (ConnectionError, OSError, ValueError):
            self.record(tag, -1, "")
            self.close_connection = True
            return
        self.record(tag, body_len, body_md5)
        rest = "/".join(args)

        if route == "json":
            self.send_json(200, {"ok": True, "method": self.command})
        elif route == "status":
            code = int(args[0])
            self.send_json(code, {"detail": "status %d" % code})
        elif route == "403-token":
            self.send_json(403, {"detail": "Invalid token."})
        elif route == "retry-after":
            value = urllib.parse.unquote(rest)
            self.send(429, b"<html>Too Many Requests</html>", "text/html",
                      [("Retry-After", value)])
        elif route == "retry-after-date":
            when = time.time() + int(args[0])
            self.send(429, b"slow down", "text/plain",
                      [("Retry-After", email.utils.formatdate(when, usegmt=True))])
        elif route == "redirect-other":
            self.send(302, b"", "text/plain",
                      [("Location", "https://127.0.0.1:%d/%s/%s" % (PORTS["other"], tag, rest))])
        elif route == "redirect-api":
            self.send(302, b"", "text/plain",
                      [("Location", "https://127.0.0.1:%d/%s/%s" % (PORTS["api"], tag, rest))])
        elif route == "redirect-self":
            self.send(302, b"moved", "text/plain", [("Location", "/%s/%s" % (tag, rest))])
        elif route == "redirect-far":
            self.send(302, b"", "text/plain", [("Location", "http://192.0.2.1/%s" % rest)])
        elif route == "loop":
            self.send(302, b"", "text/plain", [("Location", "/%s/loop" % tag)])
        elif route == "big":
            n = int(args[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.stream(n)
        elif route == "big-chunked":
            n = int(args[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while n > 0:
                    k = min(n, 65536)
                    self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                    n -= k
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
        elif route == "slow":
            n = int(args[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(30)
            except OSError:
                pass
            self.close_connection = True
        elif route == "cut":
            n = int(args[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(b"x" * (n // 2))
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif route == "download":
            n = int(args[0])
            data = bytes(i % 251 for i in range(n))
            self.send(200, data, "application/octet-stream")
        elif route == "etag":
            self.send_json(200, {"ok": True}, [("ETag", '"0123abcd"')])
        elif route in ("upload", "slow-upload"):
            self.send(200, b"", "text/plain", [("ETag", '"%s"' % body_md5)])
        else:
            self.send_json(404, {"detail": "Not found."})

    def stream(self, n):
        chunk = b"x" * 65536
        try:
            while n > 0:
                k = min(n, len(chunk))
                self.wfile.write(chunk[:k])
                n -= k
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, log_path, ssl_ctx):
        super().__init__(("127.0.0.1", 0), Handler)
        self.name = name
        self.log_path = log_path
        self.ssl_ctx = ssl_ctx

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, so a client
        # that refuses our certificate cannot stall the accept loop.
        if self.ssl_ctx is not None:
            try:
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    servers = {
        "api": Server("api", a.log, ctx),
        "other": Server("other", a.log, ctx),
        "plain": Server("plain", a.log, None),
    }
    for name, srv in servers.items():
        PORTS[name] = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print(json.dumps(PORTS), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
