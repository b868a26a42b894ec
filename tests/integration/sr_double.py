"""sr_double.py - a small Confluent-compatible schema registry written for the
tests (HTTP on 127.0.0.1): enough of the REST API for Confluent's Python
SchemaRegistryClient, Avro(De)Serializer and Veil's own client:
POST /subjects/S/versions, GET /schemas/ids/N, GET /subjects/S/versions/latest,
GET /subjects/S/versions/V, GET /subjects, POST /subjects/S (lookup).

Optionally over TLS (tls=TlsFiles: the server's certificate, and a CA whose
client certificates it then requires) and behind basic or bearer auth
(401 without them)."""
import base64
import json
import re
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class SchemaRegistryDouble:
    def __init__(self, start=True, tls=None, client_ca=None, basic=None,
                 bearer=None):
        """start=False picks a free port now and serves only from start(),
        so a client can first find the registry down. tls=(certfile,
        keyfile) serves HTTPS; client_ca (a PEM file) then requires a client
        certificate signed by it. basic=(user, password) or bearer=TOKEN
        answer 401 to requests without them; both can change at any time."""
        self.lock = threading.Lock()
        self.tls = tls
        self.client_ca = client_ca
        self.basic = basic
        self.bearer = bearer
        self.refused = 0     # requests answered 401
        self.handshakes_failed = 0
        self.by_id = {}      # id -> schema text
        self.subjects = {}   # subject -> [ids], one per version
        self.requests = []   # (method, path)
        # Faults for the tests: answer the next `fail_next` requests with
        # HTTP `fail_status`, and delay every answer by `delay_s` seconds.
        self.fail_next = 0
        self.fail_status = 500
        self.delay_s = 0.0
        self.server = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        if start:
            self.start()

    def _tls_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.tls)
        if self.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.client_ca)
        return ctx

    @staticmethod
    def _linger(tls):
        """Closes after a failed handshake the way web servers do: stop
        sending, read what the client had already sent, then close, so
        the client reads the TLS alert instead of a TCP reset."""
        try:
            raw = socket.socket(fileno=tls.detach())
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(1)
            while raw.recv(4096):
                pass
        except OSError:
            pass
        finally:
            try:
                raw.close()
            except (OSError, UnboundLocalError):
                pass

    def start(self):
        reg = self

        class Server(ThreadingHTTPServer):
            def finish_request(self, request, client_address):
                # The handshake runs in the request's own thread, so a
                # client that never completes it cannot stall the others.
                if reg.tls:
                    tls = reg._tls_context().wrap_socket(
                        request, server_side=True, do_handshake_on_connect=False)
                    try:
                        tls.settimeout(10)
                        tls.do_handshake()
                    except (ssl.SSLError, OSError):
                        with reg.lock:
                            reg.handshakes_failed += 1
                        reg._linger(tls)
                        return
                    request = tls
                try:
                    super().finish_request(request, client_address)
                finally:
                    if reg.tls:
                        request.close()  # the plain socket was detached

        self.server = Server(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def register(self, subject, text):
        with self.lock:
            for i, t in self.by_id.items():
                if t == text:
                    break
            else:
                i = len(self.by_id) + 1
                self.by_id[i] = text
            versions = self.subjects.setdefault(subject, [])
            if i not in versions:
                versions.append(i)
            return i

    def latest(self, subject):
        with self.lock:
            ids = self.subjects.get(subject)
            return (ids[-1], self.by_id[ids[-1]]) if ids else (None, None)

    def _handler(self):
        reg = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def unauthorized(self):
                """True when the request lacked the credentials asked for
                (and was answered 401)."""
                got = self.headers.get("Authorization", "")
                if reg.basic is not None:
                    want = "Basic " + base64.b64encode(
                        ":".join(reg.basic).encode()).decode()
                elif reg.bearer is not None:
                    want = "Bearer " + reg.bearer
                else:
                    return False
                if got == want:
                    return False
                with reg.lock:
                    reg.refused += 1
                self.reply(401, {"error_code": 401, "message": "Unauthorized"})
                return True

            def fault(self):
                """True when a configured fault answered the request."""
                if self.unauthorized():
                    return True
                if reg.delay_s:
                    time.sleep(reg.delay_s)
                with reg.lock:
                    if reg.fail_next <= 0:
                        return False
                    reg.fail_next -= 1
                self.reply(reg.fail_status, {"error_code": 50001,
                                             "message": "injected fault"})
                return True

            def reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type",
                                 "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def version_obj(self, subject, idx):
                sid = reg.subjects[subject][idx]
                return {"subject": subject, "version": idx + 1, "id": sid,
                        "schema": reg.by_id[sid]}

            def do_GET(self):
                path = self.path.split("?")[0]
                reg.requests.append(("GET", path))
                if self.fault():
                    return
                m = re.fullmatch(r"/schemas/ids/(\d+)", path)
                if m:
                    text = reg.by_id.get(int(m.group(1)))
                    if text is None:
                        return self.reply(404, {"error_code": 40403,
                                                "message": "Schema not found"})
                    return self.reply(200, {"schema": text})
                if path == "/subjects":
                    return self.reply(200, sorted(reg.subjects))
                m = re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path)
                if m:
                    subject = unquote(m.group(1))
                    if subject not in reg.subjects:
                        return self.reply(404, {"error_code": 40401,
                                                "message": "Subject not found"})
                    v = m.group(2)
                    idx = -1 if v == "latest" else int(v) - 1
                    if idx >= len(reg.subjects[subject]):
                        return self.reply(404, {"error_code": 40402,
                                                "message": "Version not found"})
                    if idx < 0:
                        idx = len(reg.subjects[subject]) - 1
                    return self.reply(200, self.version_obj(subject, idx))
                self.reply(404, {"error_code": 404, "message": "no route"})

            def do_POST(self):
                path = self.path.split("?")[0]
                reg.requests.append(("POST", path))
                n = int(self.headers.get("Content-Length", 0))
                text = json.loads(self.rfile.read(n))["schema"]
                if self.fault():
                    return
                m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
                if m:
                    return self.reply(200, {"id": reg.register(unquote(m.group(1)), text)})
                m = re.fullmatch(r"/subjects/([^/]+)", path)
                if m:
                    subject = unquote(m.group(1))
                    for idx, sid in enumerate(reg.subjects.get(subject, [])):
                        if reg.by_id[sid] == text:
                            return self.reply(200, self.version_obj(subject, idx))
                    return self.reply(404, {"error_code": 40403,
                                            "message": "Schema not found"})
                self.reply(404, {"error_code": 404, "message": "no route"})

        return Handler
