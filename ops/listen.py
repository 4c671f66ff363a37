"""Under uvicorn's supervisor, the port listens while a worker still starts (see listen_early)."""

import multiprocessing
import socket


def listen_early() -> int:
    """Listen on the sockets uvicorn's supervisor bound for this worker, now.

    With ``--workers N`` uvicorn's supervisor binds the port but does not listen on it; each
    worker listens only once it has imported the application and run its start-up. Until the
    first worker gets there, a connect is refused, and every client in a reconnect storm backs
    off once more (socket.js doubles its delay each time). Listening at the start of the
    import queues those connects in the kernel instead; the first worker to be ready accepts
    them. Returns how many sockets were set listening (0 outside uvicorn's supervisor).
    """
    kwargs = getattr(multiprocessing.current_process(), "_kwargs", None) or {}
    config, sockets = kwargs.get("config"), kwargs.get("sockets")
    if type(config).__module__ != "uvicorn.config" or not sockets:
        return 0
    count = 0
    for sock in sockets:
        if sock.type == socket.SOCK_STREAM and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.listen(config.backlog)
            count += 1
    return count
