"""A TCP proxy that fails like a network does, put between the app and the S3 server."""

from __future__ import annotations

import contextlib
import socket
import threading


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to the target, except that, when told to, it cuts every
    connection once `cut_after` bytes in all have come from clients, or once
    `cut_downstream_after` bytes have gone back to them (the storage is gone from then
    on), or drops the requests whose head contains `refuse_marker` (e.g.
    b"x-amz-copy-source", an S3 copy)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_after: int | None = None
        self.refuse_marker: bytes | None = None
        self.cut_downstream_after: int | None = None
        self._received = 0
        self.cuts = 0
        self._sent = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def heal(self) -> None:
        self.cut_after = None
        self.refuse_marker = None
        self.cut_downstream_after = None
        self._sent = 0
        self._received = 0

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=self._forward, args=(upstream, client, False), daemon=True).start()
        self._forward(client, upstream, True)

    def _forward(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        """Copies one direction of a connection until its budget of bytes runs out."""
        try:
            while data := source.recv(65536):
                if upstream and self.refuse_marker and self.refuse_marker in data.lower():
                    self.cuts += 1
                    break
                with self._lock:
                    limit = self.cut_after if upstream else self.cut_downstream_after
                    done = self._sent if upstream else self._received
                    allowed = len(data) if limit is None else max(0, min(len(data), limit - done))
                    if upstream:
                        self._sent += allowed
                    else:
                        self._received += allowed
                sink.sendall(data[:allowed])
                if allowed < len(data):
                    self.cuts += 1
                    break
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
