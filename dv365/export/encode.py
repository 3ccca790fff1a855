"""Users -> records: the fused pooling kernel, the encoder and the codec, batch by batch.

:class:`UserEncoder` computes what :func:`dv365.model.foundation.embed_users` computes (the
encoder output of each user's history before ``T - gap``), but pools with the fused kernel
(:func:`dv365.kernels.fused.pool_fused`: pooled slices straight from the events, no jagged
intermediate) and encodes with the codec on the device the encoder ran on, so only payloads
travel back.

**Fixed shapes.** The encoder always runs on :data:`ENCODER_ROWS` rows, whatever the batch
size (a batch is cut into chunks of that many users, the last padded with zero rows): a
user's bytes then do not depend on which or how many users share its batch, which matrix
kernels do not promise across shapes (one row alone takes another path than many). This is
what lets an incremental refresh copy some users and compute others, and a resumed export
change ``--batch-size``, and still equal a full export byte for byte (on the same hardware
and thread count: those choose the kernels too).

**On CUDA** (:meth:`UserEncoder.stream`) a loader thread gathers each batch's visible events
into a reused page-locked buffer (:mod:`dv365.export.batch_events`, copied by a pool of
threads) and starts their copy to the GPU on a side stream while the previous batch
computes; the kernels wait on the copy's event.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterable, Iterator

import numpy as np
import torch

from dv365.data.timeline import TimelineStore
from dv365.export.batch_events import BatchEvents, StagingRing, gather
from dv365.export.codecs.base import Codec, EncodeError
from dv365.export.records import record_size, seal
from dv365.kernels.fused import pool_fused
from dv365.kernels.cache import CACHES
from dv365.kernels.checks import check_ids, check_store
from dv365.kernels.launch import plan_for
from dv365.model.foundation import FoundationModel
from dv365.slices.ir import SpecIR

ENCODER_ROWS = 256
"""Rows of every encoder call (see "Fixed shapes" above); a batch size that is a multiple of
it wastes nothing on padding."""

PHASES = ("read", "copy", "kernels", "encoder", "codec", "write")
"""The phases an export's time is split into (``Phases``)."""


class Phases(dict):
    """Seconds per phase. With ``sync``, each phase waits for the GPU before it is timed
    (for benchmarks; it costs the overlap it measures)."""

    def __init__(self, sync: bool = False):
        super().__init__({name: 0.0 for name in PHASES})
        self.sync = sync
        self._lock = threading.Lock()

    def add(self, name: str, since: float, device: torch.device | None = None) -> float:
        if self.sync and device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        with self._lock:
            self[name] += now - since
        return now


class UserEncoder:
    """Records ``uint8 [B, record_size]`` of batches of store users at one request time."""

    def __init__(self, model: FoundationModel, ir: SpecIR, store: TimelineStore, codec: Codec,
                 at_ms: int, *, device: str = "cpu", batch_size: int = 256,
                 phases: Phases | None = None, history: int | None = None):
        if model.encoder is None:
            raise ValueError("a model without a user tower has no user embedding")
        self.ir, self.store, self.codec, self.at_ms = ir, store, codec, int(at_ms)
        # At most this many of a user's most recent visible events are encoded: the batch's
        # events are then always gathered, cut to that many.
        self.history = history
        self.backend = "cuda" if device.startswith("cuda") else "cpu"
        if self.backend == "cuda":
            from dv365.kernels.cuda_launch import simulator, torch_device

            self.device = torch_device()
            self.simulated = simulator()
        else:
            self.device, self.simulated = torch.device("cpu"), False
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.rows, self.dim = int(model.encoder.num_outputs), int(model.encoder.dim)
        codec.require(self.rows, self.dim)
        self.record_size = record_size(codec.payload_size(self.rows, self.dim))
        self.phases = phases if phases is not None else Phases()
        bags = model.tables.ebc.embedding_bags
        # A table no slice reads has no bag; the kernel still takes one array per IR table.
        self.tables = {t.name: (bags[t.name].weight.detach() if t.name in bags else
                                torch.zeros((t.num_rows, t.dim), device=self.device))
                       for t in ir.tables}
        windows = [s.window_ms for s in ir.slices]
        self.longest_window = None if None in windows else max(windows)
        plan = plan_for(ir, store)
        self.columns = plan.columns
        if self.backend == "cuda":
            # The kernels check each store object they get once (a pass over its events);
            # check the whole store now, and let every gathered batch inherit the result.
            check_store(store, self.columns)
            check_ids(plan, store)

    # ------------------------------------------------------------------ one batch
    def vectors(self, users: np.ndarray, events: BatchEvents | None = None) -> torch.Tensor:
        """Encoder outputs ``float32 [B, rows, dim]`` (on the device) of store users
        ``users``; ``events``, when given, holds their gathered events (row b = user b)."""
        n = len(users)
        if n > self.batch_size:
            raise ValueError(f"a batch holds at most {self.batch_size} users, got {n}")
        if events is None and self.history is not None:
            events = gather(self.store, np.asarray(users, dtype=np.int64), self.at_ms,
                            self.ir.gap_ms, self.longest_window, self.columns,
                            history=self.history)
        t0 = time.perf_counter()
        if events is None:
            store, rows = self.store, np.asarray(users, dtype=np.int64)
        else:
            store, rows = events, np.arange(n, dtype=np.int64)
        pooled, _ = pool_fused(self.ir, store, rows, self.at_ms, self.tables, self.backend)
        pooled = pooled.to(self.device)
        t0 = self.phases.add("kernels", t0, self.device)
        parts = []
        with torch.no_grad():
            for lo in range(0, n, ENCODER_ROWS):
                chunk = pooled[lo:lo + ENCODER_ROWS]
                if len(chunk) < ENCODER_ROWS:
                    pad = chunk.new_zeros((ENCODER_ROWS - len(chunk), *chunk.shape[1:]))
                    chunk = torch.cat([chunk, pad])
                parts.append(self.model.encoder(chunk)[:min(ENCODER_ROWS, n - lo)])
        out = torch.cat(parts) if parts else pooled.new_zeros((0, self.rows, self.dim))
        self.phases.add("encoder", t0, self.device)
        return out

    def payloads(self, users: np.ndarray, events: BatchEvents | None = None) -> np.ndarray:
        """Codec payloads ``uint8 [B, P]`` on the host, encoded where the encoder ran."""
        vectors = self.vectors(users, events)
        t0 = time.perf_counter()
        try:
            encoded = self.codec.encode(vectors).cpu().numpy()
        except EncodeError:
            # Name the user, not its row in the batch: check the rows one by one.
            ids = np.asarray(self.store.user_ids)[users]
            for row, user in enumerate(ids.tolist()):
                self.codec.check(vectors[row:row + 1], first_user=user)
            raise
        self.phases.add("codec", t0)
        return encoded

    def records(self, users: np.ndarray, events: BatchEvents | None = None) -> np.ndarray:
        """Sealed records ``uint8 [B, record_size]`` of store users ``users``."""
        payloads = self.payloads(users, events)
        t0 = time.perf_counter()
        out = seal(np.asarray(self.store.user_ids)[users], payloads)
        self.phases.add("codec", t0)
        return out

    # ------------------------------------------------------------------ many batches
    def stream(self, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(users, records)`` of each batch of store users, in order. On a GPU the next
        batch's events are gathered and copied while this one computes."""
        if self.backend != "cuda":
            for users in batches:
                yield users, self.records(users)
            return
        if self.phases.sync:  # a phase clock that waits for the GPU: one step at a time
            for users in batches:
                events, ready = self._load(users)
                if ready is not None:
                    self._use_device_columns(events, ready)
                yield users, self.records(users, events)
            return
        loaded: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put(item) -> bool:
            # Waits for room, but gives up once the consumer stopped (it may never return).
            while not stop.is_set():
                try:
                    loaded.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def load() -> None:
            try:
                for users in batches:
                    if not put((users, *self._load(users))):
                        return
                put(None)
            except BaseException as exc:  # handed to the consumer, raised there
                put(exc)

        thread = threading.Thread(target=load, name="dv365-export-loader", daemon=True)
        thread.start()
        try:
            while True:
                item = loaded.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                users, events, ready = item
                if ready is not None:
                    self._use_device_columns(events, ready)
                yield users, self.records(users, events)
        finally:
            stop.set()
            thread.join()

    def _load(self, users: np.ndarray) -> tuple[BatchEvents, object]:
        """Gather a batch's events (loader thread); on a real GPU start their copy on a side
        stream and return the event the kernels must wait for."""
        t0 = time.perf_counter()
        real_gpu = not self.simulated
        if real_gpu and getattr(self, "_ring", None) is None:
            self._ring = StagingRing()
        events = gather(self.store, users, self.at_ms, self.ir.gap_ms, self.longest_window,
                        self.columns, ring=self._ring if real_gpu else None,
                        history=self.history)
        # Per-user subranges of a checked store, same dtypes: every check it passed holds.
        CACHES.checked.of(events).update(CACHES.checked.of(self.store))
        t0 = self.phases.add("read", t0)
        if not real_gpu:
            return events, None
        stream = self._copy_stream()
        with torch.cuda.stream(stream):
            for name, host in events.pinned.items():
                events.device[name] = host.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(stream)
        self._ring.release(events.slot, ready)
        self.phases.add("copy", t0, self.device if self.phases.sync else None)
        return events, ready

    def _use_device_columns(self, events: BatchEvents, ready) -> None:
        """Make the kernels (main thread, current stream) wait for the batch's copy and read
        its device columns instead of copying the host ones again. Registered here, not in
        the loader thread: the kernels' per-store cache keeps the two most recent stores,
        and only the main thread decides which those are."""
        from numba import cuda

        current = torch.cuda.current_stream(self.device)
        current.wait_event(ready)
        device_cache = CACHES.device_columns.of(events)
        for name, tensor in events.device.items():
            tensor.record_stream(current)  # allocated on the copy stream, used on this one
            device_cache[name] = cuda.as_cuda_array(tensor)

    def _copy_stream(self):
        stream = getattr(self, "_stream", None)
        if stream is None:
            stream = self._stream = torch.cuda.Stream(self.device)
        return stream
