"""A TCP proxy that loses a call's answer: it stands in front of a gRPC
server, forwards everything the client sends, and cuts the connection the
moment the server starts answering a call. The server has then handled the
call, but the client never learns its result, as when a connection drops
mid-call."""

from __future__ import annotations

import socket
import threading
from typing import Callable, List, Tuple

# HTTP/2 (RFC 9113 section 4.1): a frame is a 9-byte header (24-bit length,
# type, flags, 31-bit stream id) and its payload. DATA and HEADERS on a
# stream other than 0 carry a call's answer; SETTINGS, PING, WINDOW_UPDATE
# and GOAWAY are the connection's own (stream 0).
_FRAME_HEADER = 9
_DATA = 0x0
_HEADERS = 0x1


class AnswerDroppingProxy:
    """Listens on 127.0.0.1 (`target`); each connection is forwarded to
    `upstream` (`host:port`). The client's bytes pass unchanged; the
    server's HTTP/2 frames pass until the first DATA or HEADERS frame of a
    stream, which is withheld: both connections are closed instead.
    `answers_dropped` counts the answers withheld, `connections` the
    connections accepted."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream: Tuple[str, int] = (host, int(port))
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._stopping = threading.Event()
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.answers_dropped = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:  # a timeout: look at `_stopping` again
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self._upstream)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            self._spawn(self._client_to_server, client, upstream)
            self._spawn(self._server_to_client, upstream, client)

    @staticmethod
    def _client_to_server(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass

    def _server_to_client(self, upstream: socket.socket, client: socket.socket) -> None:
        pending = b""
        try:
            while data := upstream.recv(65536):
                pending += data
                while len(pending) >= _FRAME_HEADER:
                    length = int.from_bytes(pending[0:3], "big")
                    kind = pending[3]
                    stream = int.from_bytes(pending[5:9], "big") & 0x7FFFFFFF
                    if stream != 0 and kind in (_DATA, _HEADERS):
                        with self._lock:
                            self.answers_dropped += 1
                        _close(client)
                        _close(upstream)
                        return
                    end = _FRAME_HEADER + length
                    if len(pending) < end:
                        break
                    client.sendall(pending[:end])
                    pending = pending[end:]
        except OSError:
            pass
        _close(client)

    def stop(self) -> None:
        self._stopping.set()
        self._threads[0].join(timeout=5)
        _close(self._listener)
        with self._lock:
            for sock in self._sockets:
                _close(sock)
        for thread in self._threads:
            thread.join(timeout=5)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
