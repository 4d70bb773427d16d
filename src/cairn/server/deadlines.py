"""Deadlines for slow clients (RELIABILITY S4).

uvicorn's HTTP/1.1 protocol waits as long as a client likes for a request: a connection that
says nothing, or sends its head or its body a byte at a time, stays open for ever, and a few
hundred of them (uvicorn's concurrency limit) shut everyone else out; a stalled upload also keeps
its upload slot. This protocol gives a request's head `timeout` seconds from the moment the
server starts waiting for it, and lets a body pause for at most `timeout` seconds between two
parts; a client past either is disconnected. It runs only while the server waits for the
client: the server's own work on a request (storage, hashing) has no deadline here.

It also mends one race in uvicorn's protocol (`send_400_response`).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineProtocol(H11Protocol):
    timeout: float = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._restart()  # the first request's head

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._restart()  # a body may pause, but not for longer than the timeout
        elif state is not h11.IDLE:
            self._stop()  # the request is in; its head's deadline keeps running while IDLE

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._restart()  # the next request's head on this connection

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers 400 itself when a request turns malformed mid-body (a broken chunk),
        while the application may still be running: its own answer must then be dropped, or h11
        refuses it and a traceback lands in the log."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application's sends are ignored from now on
            cycle.message_event.set()
            if self.conn.our_state is not h11.SEND_RESPONSE:  # it began answering: just close
                self.transport.close()
                return
        super().send_400_response(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _restart(self) -> None:
        self._stop()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.timeout, self._expired)

    def _stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return  # the whole request is in: the server is working, or answering
        if self.flow.read_paused:
            self._restart()  # the server stopped reading (its buffer is full), not the client
            return
        self.transport.close()


def deadline_protocol(timeout: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn's ``http=``, giving slow clients `timeout` seconds."""

    class Protocol(DeadlineProtocol):
        pass

    Protocol.timeout = timeout
    return Protocol
