"""A TCP forwarder on loopback that a test can cut and restore: the database "stops" and "comes back"."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones.

    While cut, a new connection is accepted and closed at once, which a client sees as the server going
    away, as it does when PostgreSQL is stopped or restarted.
    """

    def __init__(self, target: tuple[str, int] | str, listen_port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @classmethod
    def for_url(cls, url: str, listen_port: int = 0) -> TcpProxy:
        """A proxy to the server `url` names: over TCP, or its Unix socket (the embedded server has only that)."""
        parts = urlsplit(url)
        socket_dir = parse_qs(parts.query).get("host", [""])[0]
        if socket_dir.startswith("/"):
            return cls(f"{socket_dir}/.s.PGSQL.{parts.port or 5432}", listen_port).start()
        return cls((parts.hostname or "127.0.0.1", parts.port or 5432), listen_port).start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url_through(self, url: str) -> str:
        """`url` with its host and port replaced by this proxy's (and no socket directory left in it)."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "host"])
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def stop(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut:
                    client.close()
                    continue
            try:
                upstream = self._connect()
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._cut:  # cut while this connection was being made
                    client.close()
                    upstream.close()
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.settimeout(5)
            upstream.connect(self.target)
            return upstream
        return socket.create_connection(self.target, timeout=5)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            source.close()
