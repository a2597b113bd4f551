"""Serving the page: uvicorn with the bounds a server open to slow or hostile clients needs.

uvicorn times out an idle keep-alive connection but not one that sends its request headers a
byte at a time, so :class:`HeaderDeadline` closes any connection whose request headers are not
complete ``HEADER_SECONDS`` after it opened (or after its previous response); at most
``CONNECTIONS`` connections are served at once (503 beyond); idle keep-alive connections close
after ``KEEP_ALIVE_SECONDS``. The application's own bounds (upload size and time, decoding off
the event loop, allowed hosts) are ``netlab.web.app``'s.
"""

from __future__ import annotations

HEADER_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
CONNECTIONS = 256


def protocol():
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's headers."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self):
            self._waiting_for = self.cycle  # a new cycle means a request's headers have arrived
            self._deadline = self.loop.call_later(HEADER_SECONDS, self._too_slow)

        def _disarm(self):
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self):
            self._deadline = None
            if self.cycle is self._waiting_for and not self.transport.is_closing():
                self.transport.close()  # headers still incomplete: a slow or half-open client

        def data_received(self, data):
            super().data_received(data)
            if self.cycle is not self._waiting_for:
                self._disarm()

        def on_response_complete(self):
            super().on_response_complete()
            self._disarm()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection has the same time for its headers

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline


def run(app, sock) -> None:
    """Serve ``app`` on the bound, listening socket ``sock`` until Ctrl-C."""
    import uvicorn

    config = uvicorn.Config(app, http=protocol(), log_level="warning", limit_concurrency=CONNECTIONS,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    uvicorn.Server(config).run(sockets=[sock])
