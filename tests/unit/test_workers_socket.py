"""The socket ``serve --workers N`` binds for its server processes: connections accepted on
it get TCP_NODELAY from asyncio, as on the socket uvicorn binds itself (without it each
answer waits for the client's delayed ACK)."""

from __future__ import annotations

import asyncio
import socket

from orchestrion.api.workers import _bind
from orchestrion.settings import load_settings


async def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    found: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            found.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        value = await asyncio.wait_for(found, 10)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


def test_connections_accepted_on_the_shared_socket_have_tcp_nodelay() -> None:
    sock = _bind(load_settings(host="127.0.0.1", port=0))
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.get_inheritable()
        assert asyncio.run(_nodelay_of_an_accepted_connection(sock)) != 0
    finally:
        sock.close()
