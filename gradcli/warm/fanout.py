"""Many independent requests over several worker processes, results in the input's order.

`gradcli batch` spends its time in sympy (parsing, differentiating, printing formulas), which
holds one core: on a machine with more, lines are handed to worker processes forked from this
one after the imports, so each starts warm and shares the loaded libraries' memory.

- Order: each worker runs its lines first come, first served, so the parent knows whose
  result comes next (a queue of worker numbers in input order) and writes results as they
  arrive, without sorting or holding them.
- Streaming: a reader thread hands lines out as they come in; a script that writes one line
  and waits for its answer gets it. At most WINDOW x jobs lines are in flight, so memory
  stays flat however long the input.
- Reuse: lines with the same key (their expression) go to the worker that ran it before,
  whose caches already hold its parsed, differentiated and lowered form.
- Failure: a worker that dies takes only its own lines with it: each gets an error result
  (from `lost`), and later lines go to the others.

Workers are forked before the reader thread starts (forking a process with threads is a
known source of deadlocks), run torch on one thread (a fork of a process whose OpenMP pool
has run deadlocks in it; and the work is sympy's), ignore Ctrl-C (the parent stops them),
and exit when their input ends or the parent goes away, however it went (each holds only its
own end of its pipe, and asks the kernel for SIGKILL when its parent dies).
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkContext

WINDOW = 64  # lines in flight per worker (WINDOW x jobs in all): enough to keep each busy, few enough to stay small
MAX_JOBS = 8  # sympy's caches are per process: past a few workers, each one is colder
_END = object()


def default_jobs() -> int:
    """One worker per CPU this process may run on, up to MAX_JOBS; 1 where fork is not safe:
    off Linux (macOS's system frameworks do not survive fork), and in a process running
    threads of its own (a library host: a fork copies their locks, held or not)."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - Linux has sched_getaffinity
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, cpu_quota() or cpus, MAX_JOBS))


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """The CPUs a container's quota allows (cgroup v2 "QUOTA PERIOD"), which the affinity mask
    does not show: a container limited to 2 CPUs of a 64-CPU host sees all 64."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2, or "max": no quota
        return None


def ordered_map(handle: Callable[[Any], Any], items: Iterable[Any], *, jobs: int,
                key: Callable[[Any], Hashable], lost: Callable[[Any, str], Any]) -> Generator[Any, None, None]:
    """handle(item) for each item, yielded in the items' order.

    With jobs <= 1 everything runs here. Otherwise `jobs` forked workers run `handle`
    (which must catch its own errors: what escapes it is reported through `lost`).
    lost(item, why) is the result of an item whose worker died.
    """
    if jobs <= 1:
        for item in items:
            yield handle(item)
        return
    yield from _Fanout(handle, items, jobs, key, lost).results()


def _serve(conn: Connection[Any, Any], inherited: list[Connection[Any, Any]], parent: int,
           handle: Callable[[Any], Any]) -> None:
    """A worker's life: take items, send back results, until the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for other in inherited:  # the parent's ends of the pipes: while we hold one, recv never ends
        other.close()
    _die_with_parent(parent)
    import torch

    torch.set_num_threads(1)
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        if item is None:
            return
        try:
            result: tuple[str, Any] = ("ok", handle(item))
        except BaseException as exc:  # noqa: BLE001 - reported for this item, the worker goes on
            result = ("failed", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(result)
        except (BrokenPipeError, OSError):
            return


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent dies (Linux's PR_SET_PDEATHSIG), busy or not."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the pipe's end still ends us
        pass
    if os.getppid() != parent:  # it died before we asked
        os._exit(0)


class _Worker:
    def __init__(self, context: ForkContext, handle: Callable[[Any], Any],
                 parents_ends: list[Connection[Any, Any]]) -> None:
        ours, theirs = context.Pipe(duplex=True)
        self.conn = ours
        parents_ends.append(ours)
        self.process = context.Process(target=_serve, args=(theirs, list(parents_ends), os.getpid(), handle),
                                       daemon=True)
        try:
            self.process.start()
        finally:
            theirs.close()
        self.alive = True
        self.pending = 0  # lines sent and not yet answered (read by the reader thread to balance)


class _Fanout:
    def __init__(self, handle: Callable[[Any], Any], items: Iterable[Any], jobs: int,
                 key: Callable[[Any], Hashable], lost: Callable[[Any, str], Any]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        ends: list[Connection[Any, Any]] = []
        try:
            for _ in range(jobs):
                self.workers.append(_Worker(context, handle, ends))
        except BaseException:  # Ctrl-C or a failed fork half way: no worker may outlive us
            self._end(kill=True)
            for end in ends:
                end.close()
            raise
        self.items, self.key, self.lost = items, key, lost
        # (worker number, _END or the reader's exception; item) in input order
        self.order: queue.Queue[tuple[object, Any]] = queue.Queue()
        self.room = threading.Semaphore(WINDOW * jobs)
        self.lock = threading.Lock()
        self.home: dict[Hashable, int] = {}  # key -> the worker that has seen it
        self.stopping = False
        self.reader: threading.Thread | None = None

    def pick(self, item: Any) -> int:
        """The worker for an item: the one that ran its key before, else the least busy."""
        k = self.key(item)
        with self.lock:
            live = [i for i, w in enumerate(self.workers) if w.alive]
            if not live:
                return -1
            n = self.home.get(k)
            if n is None or not self.workers[n].alive:
                n = min(live, key=lambda i: self.workers[i].pending)
                if len(self.home) > 65536:  # a long stream of distinct keys: forget, stay small
                    self.home.clear()
                self.home[k] = n
            self.workers[n].pending += 1
            return n

    def read(self) -> None:
        """The reader thread: hand each item to a worker, and note whose it is, in order."""
        try:
            for item in self.items:
                self.room.acquire()
                if self.stopping:
                    return
                n = self.pick(item)
                if n >= 0:
                    try:
                        self.workers[n].conn.send(item)
                    except (BrokenPipeError, OSError):
                        self.workers[n].alive = False
                        n = -1
                self.order.put((n, item))
            self.order.put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - reading the input failed: the parent raises it
            self.order.put((exc, None))

    def results(self) -> Iterator[Any]:
        self.reader = threading.Thread(target=self.read, name="gradcli-batch-reader", daemon=True)
        self.reader.start()
        try:
            while True:
                n, item = self.order.get()
                if n is _END:
                    return
                if isinstance(n, BaseException):
                    raise n
                yield self.answer(cast(int, n), item)  # neither _END nor an exception: a worker number
                self.room.release()
        finally:
            self.stop()

    def answer(self, n: int, item: Any) -> Any:
        if n < 0:
            return self.lost(item, "no worker was left to run it")
        worker = self.workers[n]
        try:
            status, result = worker.conn.recv()  # what a dead worker sent before it died is still there
        except (EOFError, OSError):
            worker.alive = False
            code = worker.process.exitcode
            why = f"its worker process died (signal {-code})" if code and code < 0 else "its worker process died"
            return self.lost(item, why)
        finally:
            with self.lock:
                worker.pending -= 1
        return result if status == "ok" else self.lost(item, f"internal error: {result}")

    def stop(self) -> None:
        """End the workers: politely when all went well, at once when we were interrupted."""
        self.stopping = True
        self.room.release()  # a reader waiting for room wakes, sees `stopping`, and returns
        self._end(kill=sys.exc_info()[0] is not None)
        if self.reader is not None:
            self.reader.join(timeout=1)  # out of any send before its pipe is closed (its peer is gone)
        for w in self.workers:
            w.conn.close()

    def _end(self, kill: bool) -> None:
        if not kill:
            for w in self.workers:
                try:
                    w.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for w in self.workers:
            if not kill:
                w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
            w.process.join(timeout=5)
