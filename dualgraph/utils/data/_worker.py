"""What runs inside a DataLoader worker process, and the pieces both sides of the queues share.

A worker takes `(task index, batch of dataset indices)` from its own index queue, fetches and
collates the batch, and puts `(task index, pickled batch)` on the shared result queue. The batch is
pickled here, in the worker, so that a batch that cannot be pickled comes back as an error instead
of being dropped by the queue's feeder thread (which would leave the main process waiting).
"""
import os
import pickle
import queue
import random
import sys
import traceback

import numpy as _np

from ...ops.creation import manual_seed
from ...tensor import Tensor
from ._errors import WorkerError
from .collate import default_collate
from .dataset import _rows

# How often a blocked get() wakes up to check that the other side is still alive.
STATUS_CHECK_INTERVAL = 1.0
WORKER_POLL_INTERVAL = 0.2
# How long a shutdown waits for a worker to finish the batch in hand before terminating it (torch: 5 s).
SHUTDOWN_JOIN_TIMEOUT = 5.0

_worker_info = None


class WorkerInfo:
    """Inside a worker: id, num_workers, seed (this worker's) and dataset (this worker's copy)."""

    __initialized = False

    def __init__(self, **kwargs):
        for k, v in kwargs.items():
            setattr(self, k, v)
        self.__keys = tuple(kwargs)
        self.__initialized = True

    def __setattr__(self, key, val):
        if self.__initialized:
            raise WorkerError(f"Cannot assign attributes to {type(self).__name__} objects")
        return super().__setattr__(key, val)

    def __repr__(self):
        items = ", ".join(f"{k}={getattr(self, k)}" for k in self.__keys)
        return f"{type(self).__name__}({items})"


def get_worker_info():
    """In a DataLoader worker process, its WorkerInfo; in the main process, None."""
    return _worker_info


class _KeyErrorMessage(str):
    """KeyError prints its argument with repr(); this keeps the worker's traceback readable."""

    def __repr__(self):
        return self


class ExceptionWrapper:
    """An exception caught in a worker, carried to the main process with the worker's traceback."""

    def __init__(self, where):
        exc_type, exc, tb = sys.exc_info()
        try:
            pickle.dumps(exc_type)
            self.exc_type = exc_type
        except Exception:  # a class defined inside a function cannot travel; its name still does
            self.exc_type = None
        self.exc_name = exc_type.__name__
        self.where = where
        self.msg = "".join(traceback.format_exception(exc_type, exc, tb))

    def reraise(self):
        msg = f"Caught {self.exc_name} {self.where}.\nOriginal {self.msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        if self.exc_type is None:
            raise WorkerError(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:  # an exception type whose constructor wants other arguments
            exc = None
        if exc is None:
            raise WorkerError(msg)
        try:
            raise exc
        finally:
            del exc  # no frame <-> traceback cycle: the iterator it holds must go (and stop its workers) at once


class _IterableDatasetStopIteration:
    """A worker's iterable dataset is exhausted."""

    def __init__(self, worker_id):
        self.worker_id = worker_id


class _ResumeIteration:
    """Persistent workers: a new epoch starts (the worker answers with the same object)."""


class MapFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        # the one fast path: a dataset that builds the default-collated batch itself
        self._batched = batched_getter(dataset) if collate_fn is default_collate else None

    def fetch(self, index):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self._batched is not None:
            return self._batched(index)
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems:
            return self.collate_fn(getitems(index))
        return self.collate_fn([self.dataset[i] for i in index])


def batched_getter(dataset):
    if isinstance(dataset, (_np.ndarray, Tensor)):  # DataLoader(array): samples are its rows
        return lambda index: _rows(dataset, index)
    return getattr(dataset, "_collated_batch", None)


class IterableFetcher:
    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.iterator = iter(dataset)
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last
        self.ended = False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last):
    return (IterableFetcher if iterable else MapFetcher)(dataset, auto_collation, collate_fn, drop_last)


def worker_loop(iterable, dataset, index_queue, data_queue, done_event, auto_collation, collate_fn, drop_last,
                base_seed, init_fn, worker_id, num_workers):
    global _worker_info
    try:
        seed = base_seed + worker_id
        random.seed(seed)
        manual_seed(seed)
        _np.random.seed(_np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
        _worker_info = WorkerInfo(id=worker_id, num_workers=num_workers, seed=seed, dataset=dataset)
        where = f"in DataLoader worker process {worker_id}"
        init_exception = fetcher = None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_exception = ExceptionWrapper(where)

        iteration_end = False
        parent = os.getppid()
        while os.getppid() == parent:  # a worker whose main process died stops
            try:
                r = index_queue.get(timeout=WORKER_POLL_INTERVAL)
            except queue.Empty:
                if done_event.is_set():
                    # an iterator collected in a garbage cycle may have had its queues finalized before
                    # it could send the None that stops us: the event alone must be enough
                    break
                continue
            if isinstance(r, _ResumeIteration):
                data_queue.put((r, None))
                iteration_end = False
                try:
                    fetcher = make_fetcher(iterable, dataset, auto_collation, collate_fn, drop_last)
                except Exception:
                    init_exception = ExceptionWrapper(where)
                continue
            if r is None:  # shut down
                break
            if done_event.is_set() or iteration_end:
                continue  # tasks sent after the end of this worker's stream are dropped
            idx, index = r
            if init_exception is not None:
                data, init_exception = init_exception, None
            else:
                try:
                    data = fetcher.fetch(index)
                except StopIteration:
                    if not iterable:
                        data = ExceptionWrapper(where)
                    else:
                        data = _IterableDatasetStopIteration(worker_id)
                        iteration_end = True
                except Exception:
                    data = ExceptionWrapper(where)
            try:
                payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                payload = pickle.dumps(ExceptionWrapper(f"{where} (pickling the batch to send it to the main "
                                                        f"process)"))
            data_queue.put((idx, payload))
            del data, payload, idx, index, r
    except KeyboardInterrupt:
        pass  # the main process sees the same Ctrl-C and shuts the workers down
    if done_event.is_set():
        data_queue.cancel_join_thread()
        data_queue.close()
