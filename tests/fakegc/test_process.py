"""The emulator as a process: CLI, HTTPS with a CA, SIGTERM, memory under a big upload.

The big-upload test streams 2 GiB (FAKEGC_SMALL=1: 512 MiB, for quick runs) in 32 MiB
parts from a generator and checks the emulator's peak resident memory (VmHWM); it
takes about 30 s on two cores.
"""

import hashlib
import os
import signal
import tempfile
import unittest

from .testutil import TOKEN, Client, certs, start_process

MIB = 1 << 20


def vmhwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class TestProcess(unittest.TestCase):
    def tearDown(self):
        p = getattr(self, "proc", None)
        if p and p.poll() is None:
            p.terminate()           # SIGTERM: the emulator removes its temp dir
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
                p.wait()
        if p:
            p.stdout.close()
            p.stderr.close()

    def test_https_and_sigterm(self):
        c = certs()
        self.proc, url = start_process(["--port", "0", "--token", TOKEN, "--tls-cert",
                                        c["cert"], "--tls-key", c["key"], "--seed", "3"])
        self.assertRegex(url, r"^https://127\.0\.0\.1:\d+/$")
        client = Client(url, cafile=c["ca"])
        r = client.get("algorithms/?slug=demo-algorithm")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["results"][0]["slug"], "demo-algorithm")
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0)

    def test_bad_arguments(self):
        self.proc, _ = None, None
        import subprocess
        import sys
        r = subprocess.run([sys.executable, "-m", "fakegc", "--token", "xyz"],
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           capture_output=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--token must be hex", r.stderr)

    def test_fixtures_file_and_faults_flag(self):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        fx = os.path.join(here, "data", "fakegc", "default-fixtures.json")
        self.proc, url = start_process(["--token", TOKEN, "--fixtures", fx, "--faults",
                                        '{"rules": [{"route": "gcapi", "status": 502}]}'])
        client = Client(url)
        self.assertEqual(client.get("gcapi/").status, 502)
        self.assertEqual(client.get("archives/?slug=demo-archive").json["count"], 1)

    def test_big_upload_memory(self):
        size = (512 if os.environ.get("FAKEGC_SMALL") == "1" else 2048) * MIB
        part = 32 * MIB
        with tempfile.TemporaryDirectory() as d:
            self.proc, url = start_process(["--token", TOKEN, "--state-dir", d])
            client = Client(url)
            u = client.post("uploads/", {"filename": "big.mha"}).json
            n = size // part
            urls = client.patch(f"uploads/{u['pk']}/{u['s3_upload_id']}/"
                                "generate-presigned-urls/",
                                {"part_numbers": list(range(1, n + 1))}).json["presigned_urls"]
            whole = hashlib.sha256()
            block = bytes(range(256)) * 4096  # 1 MiB

            def gen(k):
                for i in range(part // MIB):
                    chunk = block[k % 256:] + block[:k % 256] if i == 0 else block
                    whole.update(chunk)
                    yield chunk
            parts = []
            for k in range(1, n + 1):
                r = client.call("PUT", urls[str(k)], raw=gen(k), token=None, length=part)
                self.assertEqual(r.status, 200, r)
                parts.append({"ETag": r.headers["ETag"], "PartNumber": k})
            r = client.patch(f"uploads/{u['pk']}/{u['s3_upload_id']}/"
                             "complete-multipart-upload/", {"parts": parts})
            self.assertEqual(r.status, 200, r)
            st = client.get("/__fakegc__/state", token=None).json["uploads"][0]
            self.assertEqual((st["size"], st["sha256"]), (size, whole.hexdigest()))
            peak = vmhwm_kib(self.proc.pid)
            print(f"[emulator VmHWM after {size // MIB} MiB: {peak // 1024} MiB] ", end="",
                  flush=True)
            self.assertLess(peak, 100 * 1024, f"VmHWM {peak} KiB")
