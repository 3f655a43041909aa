"""The sender thread's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class SenderLoop(asyncio.SelectorEventLoop):
    """The sender's event loop: resolves host names without the default executor.

    At interpreter exit the default executor refuses new work, so a tracker closed by
    ``atexit`` could not resolve ``localhost`` or ``kafka`` and lost its events.
    """

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        future: asyncio.Future = self.create_future()

        def resolve() -> None:
            result, error = None, None
            try:
                result = socket.getaddrinfo(host, port, family, type, proto, flags)
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.call_soon_threadsafe(_settle, future, result, error)

        try:
            threading.Thread(target=resolve, name="tally-resolve", daemon=True).start()
        except RuntimeError:  # no new threads any more: resolve inline
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        return await future


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
