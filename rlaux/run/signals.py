"""Stopping a run cleanly on SIGINT/SIGTERM/SIGHUP.

The first signal asks the model to stop at the end of the current rollout + train
iteration (``AuxAlgorithmMixin.request_stop``), where a checkpoint can be written; a
second one aborts at once (:class:`Abort`), leaving the last checkpoint as it is.

Schedulers (SLURM, systemd, ``docker stop``, ``timeout``) and a terminal's Ctrl-C signal the
whole process group, env workers included. The workers of a ``SubprocVecEnv`` ignore these
signals (``rlaux.envs.vec.ignore_stop_signals``, called first thing in each worker), so the main process alone decides: it finishes the update with its
envs alive and writes the checkpoint, as it does when it alone is signalled.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType, TracebackType
from typing import Any

from rlaux.envs.vec import STOP_SIGNALS

#: The signals that stop a run: Ctrl-C, a scheduler's stop, a closed terminal (where the platform has it).
SIGNALS = STOP_SIGNALS


class Abort(BaseException):
    """A second stop signal: leave at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopOnSignal:
    """While entered, SIGINT/SIGTERM/SIGHUP call ``model.request_stop()`` once, then raise :class:`Abort`.

    ``signal``: the number of the first signal received, None if none.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:
            raise Abort(signum)
        self.signal = signum
        self.model.request_stop()
        print(f"\n{signal.Signals(signum).name}: finishing the current rollout and update, then writing a checkpoint "
              "(send it again to quit at once; the last checkpoint stays valid)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnSignal:
        self._previous = {s: signal.signal(s, self) for s in SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.signal is not None and kind is not None and issubclass(kind, SystemExit):
            # Stopped by a signal, checkpoint written, the process on its way out with 128 + signal: a further
            # signal must not turn that exit into a death by signal while the interpreter shuts down (it resets
            # Python-level handlers to the default action then; an ignored signal stays ignored).
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            return
        for s, handler in self._previous.items():
            signal.signal(s, handler)



def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    return signal.Signals(signum).name


__all__ = ["SIGNALS", "Abort", "StopOnSignal", "signal_name"]
