"""Runs workers in one process: a consumer thread and a processor thread per worker, plus
background services (the relay). SIGTERM/SIGINT: stop consuming, finish and settle what is
in flight, close. A thread that dies unexpectedly stops the process with exit code 1, so a
process manager restarts it rather than it limping on."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg_pool import ConnectionPool

from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.health import Health
from conveyor.workers.runtime.consumer import Consumer
from conveyor.workers.runtime.processor import Processor
from conveyor.workers.runtime.spec import WorkerSpec

log = get_logger("conveyor.supervisor")


@dataclass
class Supervisor:
    settings: Settings
    pool: ConnectionPool
    stop: threading.Event = field(default_factory=threading.Event)
    health: Health = field(default_factory=Health)
    processors: list[Processor] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _failed: threading.Event = field(default_factory=threading.Event)

    def add_worker(self, spec: WorkerSpec) -> Processor:
        inbound: queue.Queue = queue.Queue()
        consumer = Consumer(spec, self.settings, inbound=inbound, stop=self.stop, health=self.health)
        processor = Processor(spec, self.settings, inbound=inbound, consumer=consumer, stop=self.stop,
                              health=self.health)
        self.processors.append(processor)
        self._spawn(f"{spec.name}-consumer", consumer.run)
        self._spawn(f"{spec.name}-processor", processor.run)
        return processor

    def add_service(self, name: str, target: Callable[[], None]) -> None:
        self._spawn(name, target)

    def dead_threads(self) -> list[str]:
        """Threads that ended while the process was not stopping (the liveness probe's)."""
        return [] if self.stop.is_set() else [t.name for t in self._threads if not t.is_alive()]

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def wait(self) -> int:
        """Block until stopped; returns the process exit code."""
        while not self.stop.wait(0.5):
            pass
        for thread in self._threads:
            thread.join(timeout=60)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.error("threads_did_not_stop", threads=alive)
        return 1 if self._failed.is_set() or alive else 0

    def _on_signal(self, signum, _frame) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException:
                log.exception("thread_crashed", thread=name)
                self._failed.set()
                self.stop.set()
        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
