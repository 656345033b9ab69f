#!/usr/bin/env python3
"""Webhook sink for the local stack: accepts Alertmanager and anomaly-detector webhooks.

Every POST body is appended as one JSON line to the file given by --log (with the path, the time
and whether the X-Signature-256 HMAC matched WEBHOOK_SECRET when that is set). GET / lists the
last 50 deliveries. Standard library only; listens on loopback.
"""
import argparse
import hashlib
import hmac
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECENT = []
MAX_BODY = 4 * 1024 * 1024


def make_handler(log_path, secret):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.send_error(413, "body too large")
                return
            body = self.rfile.read(length)
            signature = self.headers.get("X-Signature-256")
            verified = None
            if secret and signature:
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                verified = hmac.compare_digest(expected, signature)
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                self.send_error(400, "body is not JSON")
                return
            entry = {"received_at": time.time(), "path": self.path,
                     "signature_ok": verified, "payload": payload}
            RECENT.append(entry)
            del RECENT[:-50]
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self):
            body = json.dumps(RECENT, indent=2).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:9095")
    parser.add_argument("--log", default="webhook.jsonl")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)),
                                 make_handler(args.log, os.environ.get("WEBHOOK_SECRET")))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"webhook sink on http://{args.listen}, writing {args.log}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
