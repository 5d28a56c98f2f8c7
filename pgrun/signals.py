"""Stop at the next update boundary on SIGTERM, SIGINT or a cluster's preemption signal.

A signal only sets a flag; the training loop looks at it after each update, writes a
checkpoint and stops (status ``interrupted`` in summary.json). A second SIGINT (Ctrl-C
twice) stops at once without a checkpoint, as Python normally does.

Under submitit (Hydra's ``submitit_slurm`` / ``submitit_local`` launchers) the preemption
and time-out signal is SIGUSR2 (``SUBMITIT_PREEMPT_SIGNAL`` changes it) and submitit's own
handler requeues the job. pgrun takes that signal over like the others and, once its
checkpoint is written, hands it to submitit's handler (``handoff``), which requeues the job
and exits; the requeued job resumes the run from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager

log = logging.getLogger("pgrun")


def preemption_signal() -> signal.Signals:
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, f"SIG{name}", None) or getattr(signal, name, signal.SIGUSR2)


class StopFlag:
    """Set by a signal (``signum``) or by the loop itself (``request``)."""

    def __init__(self):
        self.signum: int | None = None
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            log.warning("pgrun: second SIGINT: stopping now, without a checkpoint")
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            self.request(name)
            log.warning("pgrun: received %s: writing a checkpoint at the end of this update, "
                        "then stopping", name)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        for sig in {signal.SIGTERM, signal.SIGINT, preemption_signal()}:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def handoff(self) -> None:
        """After the checkpoint: pass a preemption signal on to the handler that was there
        before (submitit's requeue, which exits the process); nothing for other signals."""
        if self.signum is None or self.signum != preemption_signal():
            return
        previous = self._previous.get(self.signum)
        if callable(previous):
            self.uninstall()
            previous(self.signum, None)


_process_flag: StopFlag | None = None


def process_flag() -> StopFlag:
    """One flag for the whole process, installed once and kept (sweeps: a signal between
    two runs still stops the sweep cleanly; later runs in this process do not start)."""
    global _process_flag
    if _process_flag is None:
        _process_flag = StopFlag()
        _process_flag.install()
    return _process_flag


@contextmanager
def stop_on_signals():
    """A StopFlag whose handlers are installed for the duration of the block."""
    flag = StopFlag()
    flag.install()
    try:
        yield flag
    finally:
        flag.uninstall()
