"""The geometry core's one optimiser loop: Adam over a loss closure, eagerly or as replays of one
captured CUDA graph.

The global alignment (``alignment``) and the photometric refinement (``photometric``) both
minimise a closure over a few leaf tensors for a fixed number of iterations with a known
learning-rate schedule, so one runner serves both:

- :class:`AdamSettings`: iterations, learning-rate schedule and betas (DUSt3R's
  ``global_alignment_loop``: lr 0.01, cosine down to 1e-6 over 300 iterations);
- :func:`run_adam`: the loop. It reports ``progress.step(it, n)`` to a
  :class:`backend.runtime.Progress` (unlabelled: the caller's span names the work, e.g.
  "window 2/3: alignment 26/300"), a report every ``report_every`` iterations, and a cancel
  (the callback returning False, or the Progress's ``is_cancelled``) raises
  :class:`backend.runtime.Cancelled` out of the loop.

On CUDA the loop at point-map sizes is launch-bound (~130 kernels per iteration), so the whole
step (forward, backward, fused Adam) is captured once as a CUDA graph and replayed: one launch
per iteration. The loss history stays on the device and is returned at the end; nothing in the
loop reads it back.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..runtime import Progress

# Iterations between progress reports. A report on CUDA first waits for the queued iterations
# (else the host, which enqueues a graph replay in microseconds, would report 100 % while the GPU
# is at the start, and a cancel would not stop the work already queued), so reports are the only
# host syncs in the loop; it used to read the loss after every iteration for its callback. 25 is
# the granularity the V2C pipeline reported at, so a cancel lands within 25 iterations. Measured
# on an H200 (benchmarks/ga_bench.py, 16 frames, 300 iterations, 64x64): the graph loop takes
# 0.118 s with or without a progress callback (13 syncs), where the per-iteration loss read took
# 0.127 s against 0.117 s without a callback; the eager loop 0.96 s (was 1.05 s with a callback).
REPORT_EVERY = 25

SCHEDULES = ("cosine", "linear", "constant")


@dataclass(frozen=True)
class AdamSettings:
    """Adam's iterations, learning-rate schedule and betas.

    schedule: "cosine" (lr -> lr_min on a half cosine, DUSt3R's default), "linear" (lr -> lr_min)
    or "constant" (lr throughout). Defaults are DUSt3R's global alignment (its betas (0.9, 0.9)).
    """

    n_iters: int = 300
    lr: float = 0.01
    lr_min: float = 1e-6
    schedule: str = "cosine"
    betas: tuple[float, float] = (0.9, 0.9)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {self.schedule!r}")

    def lr_at(self, it: int) -> float:
        t = it / max(self.n_iters - 1, 1)
        if self.schedule == "cosine":
            return self.lr_min + (self.lr - self.lr_min) * (1 + math.cos(math.pi * t)) / 2
        if self.schedule == "linear":
            return self.lr + (self.lr_min - self.lr) * t
        return self.lr

    def lrs(self) -> list[float]:
        """The learning rate of every iteration."""
        return [self.lr_at(it) for it in range(self.n_iters)]


def _make_adam(leaves, lr, betas, **kw) -> torch.optim.Optimizer:
    """Fused Adam (two kernels per step, CPU and CUDA) where the parameters allow it: the fused
    kernel needs contiguous parameters (measured: a strided one is updated at wrong addresses on
    the CPU) of a floating dtype it supports; otherwise the per-tensor loop."""
    if all(p.is_contiguous() for p in leaves):
        try:
            return torch.optim.Adam(leaves, lr=lr, betas=tuple(betas), fused=True, **kw)
        except (RuntimeError, ValueError):  # e.g. an extra parameter of a dtype the fused kernel lacks
            pass
    return torch.optim.Adam(leaves, lr=lr, betas=tuple(betas), **kw)


class _Reporter:
    """After each iteration: the caller's ``after_step``, then ``progress.step`` (a cancel check
    every iteration, a report at the first, every ``every``-th after it and the last: the
    iterations ``Progress.step`` reports at); on CUDA a report first waits for the device."""

    def __init__(self, progress: Progress, n: int, every: int, after_step, device: torch.device):
        self.progress, self.n, self.every = progress, n, max(int(every), 1)
        self.after_step = after_step
        self.device = device if device.type == "cuda" else None

    def __call__(self, it: int) -> None:
        if self.after_step is not None:
            self.after_step(it)
        if self.device is not None and (it % self.every == 0 or it + 1 >= self.n):
            torch.cuda.current_stream(self.device).synchronize()
        self.progress.step(it, self.n, every=self.every)


def _optimise_eager(loss_fn, leaves, lrs, betas, report: _Reporter) -> torch.Tensor:
    optim = _make_adam(leaves, lrs[0] if lrs else 0.0, betas)
    losses = torch.zeros(len(lrs), dtype=leaves[0].dtype, device=leaves[0].device)
    for it, lr_it in enumerate(lrs):
        for group_ in optim.param_groups:
            group_["lr"] = lr_it
        optim.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        optim.step()
        losses[it] = loss.detach()
        report(it)
    return losses


def _optimise_cuda_graph(loss_fn, leaves, lrs, betas, report: _Reporter) -> Optional[torch.Tensor]:
    """The eager loop's iterations as replays of one captured CUDA graph (PyTorch's whole-network
    capture: warm up on a side stream, capture forward + backward + fused capturable Adam). The
    learning rate and the loss log live on the device and are indexed by an iteration counter
    the graph itself advances, so an iteration is exactly one graph launch. Returns the losses,
    or None (parameters untouched, with a warning) when capture fails."""
    device = leaves[0].device
    n = len(lrs)
    snapshot = [p.detach().clone() for p in leaves]
    try:
        lr_sched = torch.tensor(lrs, dtype=torch.float32, device=device)  # the fused kernel reads a float32 lr
        lr_t = lr_sched[0].clone()
        it_t = torch.zeros(1, dtype=torch.long, device=device)
        losses = torch.zeros(n, dtype=leaves[0].dtype, device=device)
        optim = torch.optim.Adam(leaves, lr=lr_t, betas=tuple(betas), fused=True, capturable=True)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up: Adam's state, autograd and cuBLAS workspaces
            for _ in range(3):
                optim.zero_grad(set_to_none=True)
                loss_fn().backward()
                optim.step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optim.zero_grad(set_to_none=True)  # the captured backward then writes fresh gradients
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads may use CUDA
            lr_t.copy_(lr_sched.index_select(0, it_t).reshape(()))
            loss = loss_fn()
            loss.backward()
            optim.step()
            losses.index_copy_(0, it_t, loss.detach().reshape(1))
            it_t.add_(1)
    except Exception as e:  # capture is strict (no host syncs, no host-to-device copies...)
        warnings.warn(f"Adam: CUDA graph capture failed ({type(e).__name__}: {e}); "
                      "running the eager loop", RuntimeWarning, stacklevel=3)
        with torch.no_grad():
            for p, v in zip(leaves, snapshot):
                p.copy_(v)
                p.grad = None
        return None
    with torch.no_grad():  # undo the warm-up: initial parameters, fresh Adam moments and step count
        for p, v in zip(leaves, snapshot):
            p.copy_(v)
        for state in optim.state.values():
            for v in state.values():
                if torch.is_tensor(v):
                    v.zero_()
        it_t.zero_()
    for it in range(n):
        graph.replay()
        report(it)
    for p in leaves:
        p.grad = None
    return losses


def run_adam(loss_fn: Callable[[], torch.Tensor], leaves: Sequence[torch.Tensor], adam: AdamSettings = AdamSettings(),
             *, progress=None, report_every: int = REPORT_EVERY,
             after_step: Optional[Callable[[int], None]] = None, cuda_graph: bool = False) -> tuple[torch.Tensor, bool]:
    """Minimise ``loss_fn()`` over ``leaves`` (leaf tensors, requires_grad, on one device) with
    Adam for ``adam.n_iters`` iterations.

    cuda_graph: run the iterations as replays of one captured CUDA graph (falling back to the
      eager loop, with a warning, if capture fails); else eagerly.
    progress: a :class:`~backend.runtime.Progress`, a ``callback(fraction, label)`` or None.
      ``progress.step(it, n_iters, every=report_every)`` after every iteration: a cancel
      raises :class:`~backend.runtime.Cancelled` within ``report_every`` iterations (at once
      when the Progress has an ``is_cancelled`` check).
    after_step(it): host-side work after iteration ``it`` (e.g. switching the data the loss
      reads in place). Under a CUDA graph it must not sync with the device, or it costs one
      sync per iteration.
    Returns (loss per iteration on the leaves' device, whether the CUDA graph ran).
    """
    progress = Progress.of(progress)
    progress.check()
    lrs = adam.lrs()
    report = _Reporter(progress, len(lrs), report_every, after_step, leaves[0].device)
    losses = _optimise_cuda_graph(loss_fn, leaves, lrs, adam.betas, report) if cuda_graph else None
    if losses is not None:
        return losses, True
    return _optimise_eager(loss_fn, leaves, lrs, adam.betas, report), False
