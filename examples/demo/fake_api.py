"""A fake HTTPS API for the demo. It answers with what it received, as a fingerprint: the demo must
show that the real key arrived without ever printing the key itself."""
import hashlib
import http.server
import json
import ssl
import sys

host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        body = json.dumps({
            "api": self.headers.get("Host", ""),
            "authorization_received": bool(token),
            "token_is_a_placeholder": token.startswith("$MSB_"),
            "token_sha256_prefix": hashlib.sha256(token.encode()).hexdigest()[:12],
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer((host, port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
