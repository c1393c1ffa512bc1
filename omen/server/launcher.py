"""``server.workers > 1``: N independent worker processes, each with its own ``SO_REUSEPORT`` sockets.

Why not hypercorn's ``--workers`` (measured, see research/feasibility.md section 2): it shares one UDP
socket between processes, so datagrams of one QUIC connection land in random workers (h3 breaks); it
``terminate()``s the remaining workers as soon as the first one exits (no graceful drain); and one
crashed worker shuts the whole server down instead of being replaced.

Here every worker binds its own TCP (and, with TLS + QUIC, UDP) socket with ``SO_REUSEPORT``: the
kernel spreads new TCP connections across the workers and hashes each UDP 4-tuple to one socket, so a
QUIC connection stays in one process. The supervisor (this process) never serves traffic:

* SIGTERM/SIGINT: forwarded as-is to every worker; each drains for ``graceful_timeout``; the supervisor
  exits 0 when all have exited. A second SIGINT (Ctrl-C again) is forwarded too and makes workers stop
  immediately. Workers run in their own session so a terminal Ctrl-C (sent to the foreground process
  group) reaches only the supervisor and is counted once.
* a worker that dies unexpectedly is respawned after a backoff (0.5 s doubling to 30 s, reset once a
  worker ran for 10 s) and a JSON line is written to stderr; a worker that keeps failing before it ever
  got ready (bad config, port taken) makes the supervisor give up with exit code 1.
* workers watch their parent and drain if it disappears (supervisor SIGKILLed).

Known limits: connections waiting in a dying worker's accept queue are reset, and while the worker set
changes the kernel's UDP hash may move existing QUIC connections to another worker (clients reconnect).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from omen.server.access_log import describe_exception, log_event
from omen.server.serve import (
    DEFAULT_APP_FACTORY,
    Listening,
    bind_sockets,
    format_bind,
    load_app_factory,
    parse_bind,
    quic_enabled,
    serve_with_signals,
)

if TYPE_CHECKING:
    from omen.config.schema import OmenConfig

__all__ = ["run_workers"]

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 10.0  # a worker that ran this long before dying restarts the backoff from the start
MAX_STARTUP_FAILURES = 5  # consecutive deaths before "ready": the config cannot work, stop trying
KILL_GRACE = 10.0  # beyond graceful_timeout: lifespan shutdown and process exit


# --------------------------------------------------------------------------------------------------------
# worker process


class _ReadyNotifier:
    """``task_status`` for ``serve_with_signals`` that tells the supervisor the worker is listening."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def started(self, value: Listening | None = None) -> None:
        try:
            self._conn.send({"pid": os.getpid(), "port": value.port if value else None})
        except OSError:
            pass  # supervisor gone: the parent watcher will drain us
        finally:
            self._conn.close()


async def _worker_async(config: OmenConfig, app_factory: str, ready: Connection, supervisor_pid: int) -> int:
    app = load_app_factory(app_factory)(config)
    sockets = bind_sockets(config.server, reuse_port=True)
    return await serve_with_signals(
        app,
        config.server,
        sockets=sockets,
        parent_pid=supervisor_pid,
        task_status=_ReadyNotifier(ready),  # type: ignore[arg-type]
    )


def _worker_main(config: OmenConfig, app_factory: str, slot: int, ready: Connection, supervisor_pid: int) -> None:
    """Entry point of a spawned worker (must stay importable: multiprocessing pickles it by name)."""
    # Own session: a terminal Ctrl-C goes to the supervisor's process group only, and the supervisor
    # forwards it once (otherwise each worker would see it twice: directly and forwarded).
    os.setsid()
    try:
        code = trio.run(_worker_async, config, app_factory, ready, supervisor_pid)
    except Exception as error:
        log_event("worker_failed", level="error", slot=slot, error=describe_exception(error))
        code = 1
    raise SystemExit(code)


# --------------------------------------------------------------------------------------------------------
# supervisor


@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    ready_conn: Connection | None = None
    ready: bool = False
    started_at: float = 0.0
    respawn_at: float = 0.0
    quick_deaths: int = 0
    startup_failures: int = 0


class _Supervisor:
    def __init__(self, config: OmenConfig, app_factory: str) -> None:
        self.config = config
        self.app_factory = app_factory
        self.context = multiprocessing.get_context("spawn")  # fork would copy trio/hypercorn state
        self.slots = [_Slot(index) for index in range(config.server.workers)]
        self.stopping = False
        self.kill_deadline: float | None = None
        self.exit_code = 0
        self.pending_signals: list[int] = []

    # ---- process management

    def spawn(self, slot: _Slot) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_main,
            # the supervisor's pid, not getppid() in the child: that would already be init's if the
            # supervisor died during the worker's startup
            args=(self.config, self.app_factory, slot.index, writer, os.getpid()),
            name=f"omen-worker-{slot.index}",
        )
        process.start()
        writer.close()  # the child holds the only write end: EOF on reader means it died
        slot.process, slot.ready_conn, slot.ready = process, reader, False
        slot.started_at = time.monotonic()
        log_event("worker_spawned", slot=slot.index, worker_pid=process.pid)

    def on_ready_message(self, slot: _Slot) -> None:
        assert slot.ready_conn is not None
        try:
            message: dict[str, Any] = slot.ready_conn.recv()
        except (EOFError, OSError):
            message = {}
        slot.ready_conn.close()
        slot.ready_conn = None
        if message:
            slot.ready = True
            slot.startup_failures = 0
            log_event("worker_ready", slot=slot.index, worker_pid=message.get("pid"), port=message.get("port"))

    def on_exit(self, slot: _Slot) -> None:
        process = slot.process
        assert process is not None
        process.join(0)
        code = process.exitcode
        uptime = time.monotonic() - slot.started_at
        if slot.ready_conn is not None:
            slot.ready_conn.close()
            slot.ready_conn = None
        slot.process = None
        if self.stopping:
            log_event("worker_stopped", slot=slot.index, worker_pid=process.pid, exitcode=code)
            return
        if not slot.ready:
            slot.startup_failures += 1
        slot.quick_deaths = slot.quick_deaths + 1 if uptime < STABLE_AFTER else 1
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (slot.quick_deaths - 1))
        if slot.startup_failures >= MAX_STARTUP_FAILURES:
            log_event(
                "worker_giving_up",
                level="error",
                slot=slot.index,
                worker_pid=process.pid,
                exitcode=code,
                startup_failures=slot.startup_failures,
            )
            self.exit_code = 1
            self.begin_stop(None)
            return
        slot.respawn_at = time.monotonic() + delay
        log_event(
            "worker_died",
            level="error",
            slot=slot.index,
            worker_pid=process.pid,
            exitcode=code,
            uptime=round(uptime, 3),
            respawn_in=delay,
        )

    def alive(self) -> list[_Slot]:
        return [slot for slot in self.slots if slot.process is not None]

    def signal_workers(self, signum: int) -> None:
        for slot in self.alive():
            assert slot.process is not None and slot.process.pid is not None
            try:
                os.kill(slot.process.pid, signum)
            except ProcessLookupError:
                pass

    # ---- signals

    def begin_stop(self, signum: int | None) -> None:
        if not self.stopping:
            self.stopping = True
            self.kill_deadline = time.monotonic() + self.config.server.graceful_timeout + KILL_GRACE
            log_event(
                "shutdown",
                signal=signal.Signals(signum).name if signum else None,
                mode="graceful",
                workers=len(self.alive()),
            )
        else:
            log_event("shutdown", signal=signal.Signals(signum).name if signum else None, mode="forwarded")
        # forwarded as-is: workers treat a repeated SIGTERM as a no-op and a second SIGINT as "now"
        self.signal_workers(signum or signal.SIGTERM)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Python-level handler: only record it; the wakeup fd wakes the wait() in the main loop.
        self.pending_signals.append(signum)

    # ---- main loop

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        previous_handlers = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._loop(wake_r)  # spawns every slot on its first pass (respawn_at = 0)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
        log_event("supervisor_exit", exitcode=self.exit_code)
        return self.exit_code

    def _loop(self, wake_r: int) -> None:
        while True:
            now = time.monotonic()
            if not self.stopping:
                for slot in self.slots:
                    if slot.process is None and slot.respawn_at <= now:
                        try:
                            self.spawn(slot)
                        except OSError as error:  # fork/exec failed (EAGAIN, ENOMEM): retry later
                            slot.respawn_at = now + BACKOFF_MAX / 10
                            log_event("worker_spawn_failed", level="error", slot=slot.index, error=str(error))
            alive = self.alive()
            if self.stopping and not alive:
                return
            waitables: list[Any] = [wake_r]
            for slot in alive:
                assert slot.process is not None
                waitables.append(slot.process.sentinel)
                if slot.ready_conn is not None:
                    waitables.append(slot.ready_conn)
            deadlines = [slot.respawn_at for slot in self.slots if slot.process is None and not self.stopping]
            if self.kill_deadline is not None:
                deadlines.append(self.kill_deadline)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            try:
                multiprocessing.connection.wait(waitables, timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for safety
                pass
            self._drain_wakeup(wake_r)
            while self.pending_signals:
                self.begin_stop(self.pending_signals.pop(0))
            for slot in self.alive():
                if slot.ready_conn is not None and slot.ready_conn.poll():
                    self.on_ready_message(slot)
            for slot in self.alive():
                assert slot.process is not None
                if not slot.process.is_alive():
                    self.on_exit(slot)
            if self.kill_deadline is not None and time.monotonic() >= self.kill_deadline and self.alive():
                log_event("workers_killed", level="error", workers=[s.index for s in self.alive()])
                self.signal_workers(signal.SIGKILL)
                self.exit_code = 1
                self.kill_deadline = None

    @staticmethod
    def _drain_wakeup(wake_r: int) -> None:
        try:
            while os.read(wake_r, 512):
                pass
        except BlockingIOError:
            pass


def _reserve_port(config: OmenConfig) -> tuple[socket.socket | None, OmenConfig]:
    """Resolve ``port 0`` once so every worker binds the same port.

    The reservation is a bound, non-listening ``SO_REUSEPORT`` TCP socket kept by the supervisor: it is
    not in the kernel's listening group (gets no connections) but keeps the port ours across respawns.
    """
    host, port = parse_bind(config.server.bind)
    if port != 0:
        return None, config
    # bind_sockets picks a port free for both TCP and (with QUIC) UDP
    sockets = bind_sockets(config.server, reuse_port=True, listen=False)
    for sock in sockets.quic:  # a bound UDP socket *would* receive datagrams: only probe, never keep
        sock.close()
    tcp = sockets.tcp[0]
    server = msgspec.structs.replace(config.server, bind=format_bind(host, tcp.getsockname()[1]))
    return tcp, msgspec.structs.replace(config, server=server)


def run_workers(config: OmenConfig, *, app_factory: str = DEFAULT_APP_FACTORY) -> int:
    """Supervise ``config.server.workers`` worker processes until SIGTERM/SIGINT; return the exit code."""
    if config.server.workers < 2:
        raise ValueError("run_workers needs server.workers >= 2 (use omen.server.serve.run)")
    reservation, config = _reserve_port(config)
    try:
        log_event(
            "supervisor_start",
            bind=config.server.bind,
            workers=config.server.workers,
            quic=quic_enabled(config.server),
        )
        return _Supervisor(config, app_factory).run()
    finally:
        if reservation is not None:
            reservation.close()
