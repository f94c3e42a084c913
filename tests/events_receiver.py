#!/usr/bin/env python3
"""A shop's endpoint for the events suite (tests/it/events): every delivery to /shop is verified
with the official Standard Webhooks package (PyPI `standardwebhooks`, Webhook.verify: signature,
headers, timestamp within 5 minutes) and recorded; /slack records Slack copies as they come.

usage: events_receiver.py PORT SECRET LOG CONTROL

LOG gets one JSON line per delivery, written when it arrives (before any hold):
  {"path", "id", "timestamp", "verified", "error", "body", "answer", "n"}
  n: how many deliveries of this id (path) arrived so far, this one included.
CONTROL is JSON, read again on every request (missing: all defaults):
  {"fail_first": N}   the first N deliveries of each id answer 500
  {"status": S}       every other delivery answers S (default 200)
  {"hold_first": H}   the first delivery of each id is held H seconds before its answer
A delivery that fails verification answers 400 (and is recorded with verified false).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

PORT, SECRET, LOG, CONTROL = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
WEBHOOK = Webhook(SECRET)
LOCK = threading.Lock()
SEEN = {}


def control():
    try:
        with open(CONTROL) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path
        id_ = headers.get("webhook-id")
        verified, error = None, None
        if path == "/shop":
            try:
                WEBHOOK.verify(raw, headers)
                verified = True
            except Exception as e:  # noqa: BLE001 - every failure is recorded as such
                verified, error = False, f"{type(e).__name__}: {e}"
        c = control()
        with LOCK:
            key = (path, id_ or raw)
            n = SEEN[key] = SEEN.get(key, 0) + 1
            if verified is False:
                answer = 400
            elif n <= int(c.get("fail_first", 0)):
                answer = 500
            else:
                answer = int(c.get("status", 200))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            line = {
                "path": path, "id": id_, "timestamp": headers.get("webhook-timestamp"),
                "verified": verified, "error": error, "body": body, "answer": answer, "n": n,
            }
            with open(LOG, "a") as f:
                f.write(json.dumps(line) + "\n")
        if n == 1 and float(c.get("hold_first", 0)) > 0:
            time.sleep(float(c["hold_first"]))
        try:
            self.send_response(answer)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the sender gave up (timeout) or died: nothing to answer


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
