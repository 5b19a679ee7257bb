"""uvicorn's h11 protocol with a deadline for each request's headers, and a lingering close when a body is
left unread, so a client still sending it reads the answer (a 401, a 413) instead of a reset."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# After answering a request whose body was not read, keep the connection this long: our side is shut down
# for writing (the client sees the answer, then end-of-stream) and whatever else the client sends is
# discarded. Closing at once, with its bytes unread, makes the kernel send a reset, and the client loses the
# answer it had not read yet (a 1 MiB + 64 KiB post to a 1 MiB cap got ECONNRESET instead of its 413).
LINGER_SECONDS = 2.0


class _Transport:
    """The connection's transport as uvicorn sees it: close() goes through the protocol, which may linger."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11):
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()


class GuardedH11(H11Protocol):
    """Each request's headers must be complete within `header_timeout` seconds of the connection opening (or
    of the previous response): a client that sends nothing, or one byte a second, is cut off then.

    uvicorn itself only times out idle keep-alive connections, so a client that sends a byte now and then
    keeps its connection, and its place under the connection cap, for as long as it likes.
    """

    header_timeout: float = 5.0  # set on the per-server subclass
    lingering = False
    _raw: asyncio.Transport
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw = transport
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the rest of a body we answered without reading
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in: the deadline is met
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # Answered without reading the body (a 404, a 405): waiting for the rest would let a slow
            # sender hold the connection with no deadline at all.
            self.close()
        elif self.conn.their_state is h11.IDLE:
            self._arm()  # the next request on this connection gets a deadline of its own

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def close(self) -> None:
        """Close now, or, if the client may still be sending a body, shut our side and linger first."""
        raw = self._raw
        if raw.is_closing():
            return
        if self.lingering or self.conn.their_state is not h11.SEND_BODY or not raw.can_write_eof():
            raw.close()
            return
        self.lingering = True
        self._disarm()
        raw.write_eof()  # after the answer still buffered, if any
        raw.resume_reading()  # flow control may have paused it; keep draining so the client is not stuck
        self._deadline = self.loop.call_later(LINGER_SECONDS, raw.close)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._raw.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial, _ = self.conn.trailing_data
        if partial:  # part of a request arrived: say why it is not answered
            text = f"request headers not received within {self.header_timeout:g} s\n".encode()
            self._raw.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text))
            log.debug("%s: request headers not complete after %g s; closing",
                      self.client[0] if self.client else "client", self.header_timeout)
        self._raw.close()
