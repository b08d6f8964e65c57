"""Where a model's fit runs: in this process (the default), or as one rank of several under torch's
own launcher (training/distributed.py). The social GNN's fit loop (models/socialgnn.py) calls the
hooks of a :class:`FitRuntime` at the few points where ranks differ from a lone process; the
defaults here do what one process does, so the embedded default is unchanged.

A :class:`FitState` is where a fit is, between steps: what a checkpoint saves and a restart
resumes from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class FitHistory:
    """Per-epoch curves, logged to MLflow and plotted."""

    loss: list[float] = field(default_factory=list)
    valid: list[tuple[int, float]] = field(default_factory=list)  # (epoch, metric)
    epoch_seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_valid: float = float("-inf")
    seconds_to_best: float = 0.0


@dataclass
class FitState:
    """Where a fit is between two steps: ``epoch`` in progress (1-based) with ``step`` of its steps
    done and their summed ``epoch_loss``; ``stale`` validations without improvement, the ``best``
    validated weights, the ``history``, and ``seconds`` spent fitting before this process started
    (a restart's time budget counts them)."""

    best: dict[str, Tensor]
    history: FitHistory = field(default_factory=FitHistory)
    epoch: int = 1
    step: int = 0
    epoch_loss: float = 0.0
    stale: int = 0
    seconds: float = 0.0


class FitRuntime:
    """One process: every hook is what a lone fit does. training/distributed.py overrides them
    for a rank of a torchrun job."""

    #: whether this process reports (progress bars, logs); ranks other than 0 do not
    main: bool = True

    def adjacency(self, build: Callable[[], Tensor]) -> Tensor:
        """The propagation graph this process multiplies with (a rank: its block of rows)."""
        return build()

    def prepare(self, module: nn.Module, config: Any) -> None:
        """Called once the module is built and initialised, before the optimiser sees it."""

    def batches(self, epoch: Iterator[tuple]) -> Iterator[tuple]:
        """This process's part of each step's batch (a rank: its share, and the totals)."""
        return epoch

    def reduce_gradients(self, module: nn.Module) -> None:
        """After ``backward()``: a rank adds up every rank's gradient (DDP's job)."""

    def total(self, value: float) -> float:
        """``value`` summed over processes (a rank's loss is its share of the batch's)."""
        return value

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true in any process (so that every rank stops together)."""
        return flag

    def validate(self, validator: Callable[[np.ndarray, np.ndarray], float],
                 user_emb: np.ndarray, item_emb: np.ndarray) -> float:
        """The validation objective (ranks: computed by rank 0, told to the others)."""
        return validator(user_emb, item_emb)

    def resume(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> FitState | None:
        """The state of an interrupted fit to go on from (loaded into module and optimiser), or
        None to start afresh."""
        return None

    def checkpoint(self, state: FitState, module: nn.Module, optimizer: torch.optim.Optimizer,
                   end_of_epoch: bool) -> None:
        """Called after every step and at the end of every epoch; a rank saves one periodically."""

    def finished(self) -> None:
        """Called once the fit is done (a rank removes its checkpoints)."""


#: The runtime of a fit in this process alone.
LOCAL = FitRuntime()
