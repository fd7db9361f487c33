// The Python programs the TLS and proxy tests run as subprocesses. They live in
// Swift strings so SwiftPM has no unhandled files in the test target.
enum TestScripts {
    /// Both scripts start with this: the test runner may ignore SIGTERM and children
    /// inherit that, and a script must end when the test process does.
    static let parentWatch = #"""
# The test runner may ignore SIGTERM, and children inherit that: restore it. And
# leave when the test process is gone, however it ended.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
parent = os.getppid()


def watch_parent():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


threading.Thread(target=watch_parent, daemon=True).start()
"""#

    static let tlsServer = #"""
# A tiny HTTPS server for SluiceNet's TLS tests. Every answer says which
# connection it came on (to see keep-alive reuse) and whether the client
# presented a certificate.
import argparse, http.server, itertools, os, signal, socketserver, ssl, sys, threading, time, warnings

\#(parentWatch)

parser = argparse.ArgumentParser()
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--client-ca")
parser.add_argument("--tls11-only", action="store_true")
parser.add_argument("--port-file", required=True)
args = parser.parse_args()

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
if args.client_ca:
    context.load_verify_locations(args.client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
if args.tls11_only:
    warnings.simplefilter("ignore", DeprecationWarning)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1

connections = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.connection_number = next(connections)
        super().setup()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        client = "yes" if self.connection.getpeercert() else "no"
        reply = f"conn={self.connection_number} client={client} bytes={len(body)} path={self.path}".encode()
        if self.path == "/echo":
            reply = body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # The handshake runs in the connection's own thread, so a client that fails
        # it does not hold up the others.
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            print(f"handshake failed: {error}", file=sys.stderr, flush=True)
            return
        self.RequestHandlerClass(tls, client_address, self)

    def handle_error(self, request, client_address):
        pass


server = Server(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
"""#

    static let connectProxy = #"""
# A small HTTP proxy for SluiceNet's proxy tests. It logs each request line with
# the Proxy-Authorization it carried, tunnels CONNECT, and answers any other
# request itself with its request line (so a test sees the absolute-form target).
import argparse, os, select, signal, socket, socketserver, sys, threading, time

\#(parentWatch)

parser = argparse.ArgumentParser()
parser.add_argument("--port-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--require-auth")
args = parser.parse_args()
lock = threading.Lock()


def log(line):
    with lock, open(args.log, "a") as f:
        f.write(line + "\n")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        client = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        text, rest = head.split(b"\r\n\r\n", 1)
        lines = text.decode("latin-1").split("\r\n")
        auth = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                auth = value.strip()
        log(f"{lines[0]} | {auth}")
        if args.require_auth and auth != args.require_auth:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        method, target, _ = lines[0].split(" ", 2)
        if method != "CONNECT":
            body = lines[0].encode()
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            return
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        sockets = [client, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                break
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    upstream.close()
                    return
                (upstream if sock is client else client).sendall(data)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
"""#
}
