"""Request-size limit for the inference service, enforced before the body is parsed.

Uploads stay in memory: Starlette spools multipart files to a temporary file on disk past
``MultiPartParser.spool_max_size`` (1 MiB), so :func:`keep_uploads_in_memory` raises that
threshold above the request-size limit, which :class:`UploadLimit` enforces on every request.
"""
import json

from starlette.formparsers import MultiPartParser

__all__ = ["UploadLimit", "keep_uploads_in_memory"]


class _TooLarge(Exception):
    pass


def keep_uploads_in_memory(max_bytes: int):
    """Make Starlette keep multipart files of up to ``max_bytes`` bytes in memory (never
    spooled to disk). Process-wide (a class attribute); only ever raised, never lowered."""
    MultiPartParser.spool_max_size = max(int(MultiPartParser.spool_max_size), int(max_bytes) + 1)


class UploadLimit:
    """ASGI middleware: a request body over ``max_bytes`` bytes gets 413 ``{"detail": ...}``.

    A ``Content-Length`` over the limit is refused before anything is read; a body sent
    without one (chunked) is counted while it is read and refused as soon as it passes the
    limit (whatever the application answered by then is dropped).
    """

    def __init__(self, app, max_bytes: int, setting: str = "--max-upload-mb"):
        self.app = app
        self.max_bytes = int(max_bytes)
        self.setting = setting

    def _message(self, size: str) -> bytes:
        limit = f"{self.max_bytes / 2**20:.3g} MiB ({self.max_bytes} bytes)"
        return json.dumps({"detail": f"request body {size} is over the upload limit of {limit}; "
                                     f"the server's {self.setting} sets it"}).encode()

    async def _refuse(self, send, size: str, status: int = 413):
        body = self._message(size) if status == 413 else json.dumps({"detail": size}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, f"Content-Length {length.decode('latin-1')!r} is not a number", 400)
                return
            if declared > self.max_bytes:
                await self._refuse(send, f"of {declared} bytes")
                return
        received = 0
        exceeded = False

        async def counted_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            if not exceeded:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:  # _TooLarge, or whatever reading a cut-off body raised downstream
            if not exceeded:
                raise
        if exceeded:
            await self._refuse(send, f"of more than {self.max_bytes} bytes")
