"""DataLoader: batches from a dataset, in the calling process or in worker processes (PyTorch's API).

    loader = DataLoader(dataset, batch_size=64, shuffle=True, num_workers=2)
    for xb, yb in loader: ...

With num_workers > 0, each worker is a real process (multiprocessing, the platform's default start
method unless multiprocessing_context says otherwise) with its own copy of the dataset. The main
process draws the indices from the sampler and hands batches of them round-robin to the workers,
keeping prefetch_factor batches per worker in flight; batches come back in the sampler's order.
"""
import itertools
import multiprocessing
import numbers
import os
import pickle
import queue
import warnings

import numpy as _np

from ...backend import gpu_available
from ...tensor import Tensor
from ._errors import ArgumentTypeError, InvalidValue, WorkerError
from . import _worker
from .collate import default_collate, default_convert
from .dataset import IterableDataset, TensorDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler, as_generator, rng_of

__all__ = ["DataLoader"]


class _InfiniteConstantSampler(Sampler):
    """The sampler of an IterableDataset: the dataset decides what comes next, so the index is None."""

    def __iter__(self):
        while True:
            yield None


def _is_array_tuple(dataset):
    return (isinstance(dataset, tuple) and dataset
            and all(isinstance(t, (Tensor, _np.ndarray)) and t.ndim for t in dataset))


class DataLoader:
    """Iterate over `dataset` in batches.

    Arguments as in torch.utils.data.DataLoader: batch_size (None turns batching off), shuffle,
    sampler, batch_sampler, num_workers, collate_fn, pin_memory, drop_last, timeout,
    worker_init_fn, multiprocessing_context, generator (an int seed, a numpy Generator, or None for
    dualgraph's generator that dg.manual_seed seeds), prefetch_factor, persistent_workers, in_order.
    dualgraph additions: a tuple of arrays/tensors is taken as a TensorDataset, and `device=` moves
    every batch to that device."""

    __initialized = False
    _FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True, device=None):
        if _is_array_tuple(dataset):
            dataset = TensorDataset(*dataset)
        if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
            raise InvalidValue(f"num_workers option should be a non-negative int, got {num_workers!r}; use "
                               f"num_workers=0 to disable multiprocessing")
        if timeout < 0:
            raise InvalidValue(f"timeout option should be non-negative, got {timeout}")
        if num_workers == 0 and prefetch_factor is not None:
            raise InvalidValue("prefetch_factor option could only be specified in multiprocessing. let num_workers "
                               "> 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        if prefetch_factor is not None and (not isinstance(prefetch_factor, numbers.Integral) or prefetch_factor < 1):
            raise InvalidValue(f"prefetch_factor option should be a positive int, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise InvalidValue("persistent_workers option needs num_workers > 0")

        iterable = isinstance(dataset, IterableDataset)
        if iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise InvalidValue(f"DataLoader with IterableDataset: expected unspecified {name} option, but "
                                       f"got {name}={value!r}")
        else:
            if not hasattr(dataset, "__getitem__"):
                raise ArgumentTypeError(f"DataLoader: {type(dataset).__name__} is not a dataset: a map-style "
                                        f"dataset defines __getitem__ (and __len__ for the default samplers); a "
                                        f"stream subclasses IterableDataset and defines __iter__")
            shuffle = bool(shuffle)
            if shuffle and sampler is not None:
                raise InvalidValue("DataLoader: sampler option is mutually exclusive with shuffle")

        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise InvalidValue("DataLoader: batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                   "sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None:
            if drop_last:
                raise InvalidValue("DataLoader: batch_size=None option disables auto-batching and is mutually "
                                   "exclusive with drop_last")
        elif not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidValue(f"DataLoader: batch_size must be a positive int or None, got {batch_size!r}")

        generator = as_generator(generator, "DataLoader")
        if sampler is None:
            if iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, bool(drop_last))

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = int(num_workers)
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_sampler is not None else default_convert)
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.device = device
        self._iterable = iterable
        self._iterator = None
        _check_worker_number(self.num_workers)
        if pin_memory:
            if gpu_available():
                warnings.warn("DataLoader(pin_memory=True): dualgraph does not allocate page-locked host memory; "
                              "batches are ordinary host arrays", stacklevel=2)
            else:
                warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then device "
                              "pinned memory won't be used.", stacklevel=2)
        self.__initialized = True

    @property
    def multiprocessing_context(self):
        return self.__multiprocessing_context

    @multiprocessing_context.setter
    def multiprocessing_context(self, ctx):
        if ctx is not None:
            if self.num_workers == 0:
                raise InvalidValue(f"multiprocessing_context can only be used with multi-process loading "
                                   f"(num_workers > 0), but got num_workers={self.num_workers}")
            if isinstance(ctx, str):
                methods = multiprocessing.get_all_start_methods()
                if ctx not in methods:
                    raise InvalidValue(f"multiprocessing_context should be one of {methods}, got {ctx!r}")
                ctx = multiprocessing.get_context(ctx)
            elif not isinstance(ctx, multiprocessing.context.BaseContext):
                raise ArgumentTypeError(f"multiprocessing_context should be a start method name or a multiprocessing "
                                        f"context, got {type(ctx).__name__}")
        self.__multiprocessing_context = ctx

    def __setattr__(self, attr, val):
        if self.__initialized and attr in self._FROZEN:
            raise InvalidValue(f"{attr} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(attr, val)

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self):
        return _length(self._iterable, self.dataset, self._index_sampler, self.batch_size, self.drop_last)

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator._reset(self)
        return self._iterator

    def _shared_seed(self):
        """The workers' base seed. Drawn from a child of the generator's seed sequence when it has one,
        so the shuffling order does not depend on num_workers."""
        rng = rng_of(self.generator)
        try:
            rng = rng.spawn(1)[0]
        except (AttributeError, TypeError, ValueError):
            pass
        return int(rng.integers(0, 2 ** 62))


def _length(iterable, dataset, index_sampler, batch_size, drop_last):
    if iterable:
        n = len(dataset)
        if batch_size is not None:
            n = n // batch_size if drop_last else -(-n // batch_size)
        return n
    return len(index_sampler)


def _check_worker_number(num_workers):
    if num_workers == 0:
        return
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    if cpus is not None and num_workers > cpus:
        warnings.warn(f"This DataLoader will create {num_workers} worker processes in total. Our suggested max "
                      f"number of worker in current system is {cpus}, which is smaller than what this DataLoader is "
                      f"going to create. Please be aware that excessive worker creation might get DataLoader "
                      f"running slow or even freeze, lower the worker number to avoid potential "
                      f"slowness/freeze if necessary.", stacklevel=3)


class _BaseIter:
    def __init__(self, loader):
        self._dataset = loader.dataset
        self._iterable = loader._iterable
        self._auto_collation = loader._auto_collation
        self._drop_last = loader.drop_last
        self._index_sampler = loader._index_sampler
        self._collate_fn = loader.collate_fn
        self._device = loader.device
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._batch_size = loader.batch_size  # the iterator holds no reference to the loader (no cycle
        # through a persistent loader's _iterator, so dropping the loader stops its workers at once)

    def __iter__(self):
        return self

    def __next__(self):
        batch = self._next_data()
        self._num_yielded += 1
        return _move(batch, self._device) if self._device is not None else batch

    def __len__(self):
        return _length(self._iterable, self._dataset, self._index_sampler, self._batch_size, self._drop_last)


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._fetcher = _worker.make_fetcher(self._iterable, self._dataset, self._auto_collation,
                                             self._collate_fn, self._drop_last)

    def _next_data(self):
        index = next(self._sampler_iter)  # StopIteration ends the epoch
        return self._fetcher.fetch(index)


class _MultiProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        self._shutdown = True  # until the workers exist, there is nothing to shut down
        self._num_workers = loader.num_workers
        self._prefetch_factor = loader.prefetch_factor
        self._timeout = loader.timeout
        self._in_order = loader.in_order
        self._persistent = loader.persistent_workers
        ctx = loader.multiprocessing_context or multiprocessing.get_context()
        self._result_queue = ctx.Queue()
        self._done_event = ctx.Event()
        self._index_queues, self._workers = [], []
        base_seed = loader._shared_seed()
        self._shutdown = False
        try:
            for i in range(self._num_workers):
                iq = ctx.Queue()
                iq.cancel_join_thread()  # never block interpreter exit on indices nobody will read
                w = ctx.Process(target=_worker.worker_loop, daemon=True,
                                args=(self._iterable, self._dataset, iq, self._result_queue, self._done_event,
                                      self._auto_collation, self._collate_fn, self._drop_last, base_seed,
                                      loader.worker_init_fn, i, self._num_workers))
                w.start()
                self._index_queues.append(iq)
                self._workers.append(w)
        except BaseException:
            self._shutdown_workers()
            raise
        self._reset(loader, first_iter=True)

    def _reset(self, loader, first_iter=False):
        self._sampler_iter = iter(self._index_sampler)
        self._num_yielded = 0
        self._send_idx = 0
        self._rcvd_idx = 0
        self._task_info = {}  # task index -> (worker,) while in flight, (worker, data) once out of order
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:
            for iq in self._index_queues:
                iq.put(_worker._ResumeIteration())
            pending = self._num_workers
            while pending:
                idx, _ = self._get_data()  # results of the previous epoch still in flight are dropped
                if isinstance(idx, _worker._ResumeIteration):
                    pending -= 1
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _try_put_index(self):
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        for _ in range(self._num_workers):
            w = next(self._worker_cycle)
            if self._workers_status[w]:
                break
        else:
            return  # every worker's stream has ended
        self._index_queues[w].put((self._send_idx, index))
        self._task_info[self._send_idx] = (w,)
        self._tasks_outstanding += 1
        self._send_idx += 1

    def _try_get_data(self, timeout):
        try:
            idx, payload = self._result_queue.get(timeout=timeout)
        except queue.Empty:
            dead = [w for i, w in enumerate(self._workers) if self._workers_status[i] and not w.is_alive()]
            if dead:
                self._shutdown_workers()
                pids = ", ".join(str(w.pid) for w in dead)
                how = ", ".join(f"killed by signal {-w.exitcode}" if w.exitcode < 0 else f"exit code {w.exitcode}"
                                for w in dead)
                raise WorkerError(f"DataLoader worker (pid(s) {pids}) exited unexpectedly ({how})") from None
            return False, None
        return True, (idx, payload if payload is None else pickle.loads(payload))

    def _get_data(self):
        if self._timeout > 0:
            ok, data = self._try_get_data(self._timeout)
            if not ok:
                raise WorkerError(f"DataLoader timed out after {self._timeout} seconds")
            return data
        while True:
            ok, data = self._try_get_data(_worker.STATUS_CHECK_INTERVAL)
            if ok:
                return data

    def _next_data(self):
        while True:
            while self._rcvd_idx < self._send_idx:
                info = self._task_info.get(self._rcvd_idx)
                if info is not None and (len(info) == 2 or self._workers_status[info[0]]):
                    break
                # the task went to a worker whose stream ended before it, or was already returned
                self._task_info.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self._shutdown_workers()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:
                data = self._task_info.pop(self._rcvd_idx)[1]
                self._rcvd_idx += 1
                return self._process_data(data)

            idx, data = self._get_data()
            self._tasks_outstanding -= 1
            if isinstance(data, _worker._IterableDatasetStopIteration):
                if self._persistent:
                    self._workers_status[data.worker_id] = False
                else:
                    self._mark_worker_unavailable(data.worker_id)
                self._try_put_index()
                continue
            if idx != self._rcvd_idx:
                if self._in_order:
                    self._task_info[idx] += (data,)
                    continue
                del self._task_info[idx]
                return self._process_data(data)
            del self._task_info[idx]
            self._rcvd_idx += 1
            return self._process_data(data)

    def _process_data(self, data):
        self._try_put_index()
        if isinstance(data, _worker.ExceptionWrapper):
            data.reraise()
        return data

    def _mark_worker_unavailable(self, worker_id):
        # a worker told to stop exits once it reads None, after the tasks queued before it
        self._index_queues[worker_id].put(None)
        self._workers_status[worker_id] = False

    def _shutdown_workers(self):
        if self._shutdown:
            return
        self._shutdown = True
        try:
            self._done_event.set()
            for iq in self._index_queues:
                try:
                    iq.put(None)
                except (OSError, ValueError):
                    pass
            for w in self._workers:
                w.join(timeout=_worker.SHUTDOWN_JOIN_TIMEOUT)
            for iq in self._index_queues:
                iq.cancel_join_thread()
                iq.close()
            self._result_queue.cancel_join_thread()
            self._result_queue.close()
        finally:
            for w in self._workers:
                if w.is_alive():
                    w.terminate()
                    w.join(timeout=_worker.STATUS_CHECK_INTERVAL)

    def __del__(self):
        try:
            self._shutdown_workers()
        except Exception:
            pass  # at interpreter exit the modules it needs may already be gone


def _move(batch, device):
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_move(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(_move(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _move(v, device) for k, v in batch.items()}
    return batch
