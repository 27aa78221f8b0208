"""Training and embedding with SREL models (the stage-1 public API; model folders: ``srel/folder.py``).

Training is full-batch (every region in every epoch; which pairs attend is the attention
mode's choice, ``srel/modes/``, resolved once per run), seeded and deterministic on a given
CPU; stopping looks only at the self-supervised loss. Before anything large is allocated the
mode estimates the memory and the job is refused with advice if it would not fit. Seeding lives in
``srel/determinism.py``, early stopping in ``srel/stopping.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import allocator
from ..config import SrelConfig, resolve_restarts
from ..device import DeviceChoice, cpu_threads, resolve_device, torch_threads
from ..progress import check_canceled, ensure_reporter, eta_words
from . import memory, modes, recipe
from .determinism import Deterministic, member_seed  # noqa: F401  (member_seed: re-exported)
from .folder import FORMAT, WEIGHTS_FILE, load_model, save_model  # noqa: F401  (the public API, re-exported)
from .inputs import build_inputs, check_schema, fit_preprocessing, input_schema
from .losses import build_targets, contrastive_loss, masked_region_loss, srel_loss
from .model import SrelEnsemble, SrelModel
from .stopping import BestState as _BestState   # a module global, so tests can wrap it


@dataclass
class SrelResult:
    embeddings: np.ndarray
    model: SrelModel | SrelEnsemble
    history: list = field(default_factory=list)         # loss per epoch of the first restart
    device: DeviceChoice | None = None
    epochs_run: int = 0                                 # epochs of the longest restart
    seconds: float = 0.0
    stopped_early: bool = False
    histories: list = field(default_factory=list)       # one loss list per restart


#: up to this many regions one CPU thread is fastest (the ops are tiny; 6x slower with 2 on a shared 2-core VM)
SMALL_N = 1000


def _threads(config: SrelConfig, device: str, n: int):
    """torch CPU threads for a run over ``n`` regions (``device.cpu_threads``); unchanged on a GPU."""
    return torch_threads(cpu_threads(config.threads, small=n <= SMALL_N) if device == "cpu" else None)


# -- training ------------------------------------------------------------------------------------

def _train_member(model, inputs, targets, config: SrelConfig, reporter, k: int, device: str = "cpu"):
    """One self-supervised training run; returns (history, epochs, stopped)."""
    K, tag = config.restarts, (f"SREL restart {k + 1}/{config.restarts}" if config.restarts > 1 else "SREL")
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tracker, stopped = _BestState(model, config, device), False
    epoch, t0, shown = 0, time.perf_counter(), 0.0
    for epoch in range(1, config.epochs + 1):
        check_canceled(reporter)
        model.train()
        opt.zero_grad(set_to_none=True)
        emb, extra = None, []
        if config.mask_weight > 0:               # the masked pass carries the other losses
            emb, rec = masked_region_loss(model, inputs, config.mask_rate)
            extra.append(config.mask_weight * rec)
        if config.contrast_weight > 0:           # two dropout passes (the first carries them without masking)
            first, nce = contrastive_loss(model, inputs, config)
            emb = first if emb is None else emb
            extra.append(config.contrast_weight * nce)
        loss, _ = srel_loss(model, model(inputs) if emb is None else emb, targets)
        for term in extra:
            loss = loss + term
        loss.backward()
        opt.step()
        stop = tracker.update(loss, epoch)
        reporter.set_progress(100.0 * (k * config.epochs + epoch) / (K * config.epochs))
        elapsed = time.perf_counter() - t0
        if elapsed - shown >= 2.0 or epoch == 1:
            shown = elapsed
            left = elapsed / epoch * ((config.epochs - epoch) + (K - 1 - k) * config.epochs)
            reporter.set_text(f"{tag}: epoch {epoch}/{config.epochs}, {eta_words(left)} left at most "
                              "(early stopping may end it sooner)")
        if stop:
            stopped = True
            reporter.info(f"{tag}: stopped at epoch {epoch}: the self-supervised loss has not improved "
                          f"for {config.patience} epochs (best {tracker.best:.4f}).")
            break
    tracker.restore()
    model.eval()
    return tracker.history(), epoch, stopped


def train_srel(data, config: SrelConfig = SrelConfig(), reporter=None, device: DeviceChoice | None = None) -> SrelResult:
    """Train SREL self-supervised on ``data`` and return eval-mode embeddings (N x embed_dim).

    With ``config.restarts`` > 1 the model is trained that many times from
    different seeds (derived from ``config.seed``) and the result is an
    ``SrelEnsemble``: concatenated embeddings projected by a PCA fitted on them.
    No labels are used at any point. ``device``: a choice already made (else ``config.device``).
    """
    from .. import views

    reporter = ensure_reporter(reporter)
    t0 = time.perf_counter()
    data.validate()
    data = data.without_targets()
    config = config.replace(restarts=resolve_restarts(config, data.n))     # saved with the model as a number
    config, recipe_note = recipe.resolve(config, data)                     # saved as "on" / "off" with its values
    choice = device or resolve_device(config.device)
    views.check_weights(config)
    mode = modes.resolve(config, data.n)                                  # resolved once, handed on
    mode.check_config(config, data)
    need = mode.check_memory(data.n, config, choice.device)
    more = f", {config.restarts} restarts" if config.restarts > 1 else ""
    for view in views.present(data):
        for w in view.warnings(data):
            reporter.warning(w)
    reporter.info(views.derived_note(data, config))
    if recipe_note:
        reporter.info(recipe_note)
    reporter.info(f"SREL: training on {choice.device} ({choice.reason}); {data.n} regions, "
                  f"views {', '.join(data.views())}{more}; {mode.describe(data.n, config)}; "
                  f"estimated peak memory {need / 1e9:.2f} GB.")
    dev = torch.device(choice.device)
    member_cfg = config.replace(restarts=1)
    members, histories, epochs, stopped, stats, inputs = [], [], [], False, None, None
    keep = allocator.worth_it(choice.device, data.n, need, memory.available_memory(choice.device), SMALL_N)
    heap = allocator.keep_freed_memory(keep)
    with _threads(config, choice.device, data.n), heap:
        if heap.active:
            reporter.info("SREL: the CPU allocator keeps freed memory for the next epoch while training (faster at "
                          f"this size; peak up to ~{need * allocator.PEAK_FACTOR / 1e9:.1f} GB), and gives it back after.")
        for k in range(config.restarts):
            with Deterministic(member_seed(config.seed, k), choice.device):
                if stats is None:
                    stats = fit_preprocessing(data, config)
                model = SrelModel(member_cfg if config.restarts > 1 else config,
                                  input_schema(data, config), stats).to(dev)
                if inputs is None:          # the same for every restart: built once
                    inputs = build_inputs(model, data, dev, mode)
                    targets = build_targets(data, model, dev, inputs)
                hist, ep, st = _train_member(model, inputs, targets, config, reporter, k, choice.device)
            members.append(model)
            histories.append(hist)
            epochs.append(ep)
            stopped = stopped or st
        if config.restarts == 1:
            model = members[0]
        else:
            model = SrelEnsemble(config, input_schema(data, config), stats, members=members).to(dev).eval()
        with torch.no_grad():
            if config.restarts > 1:
                model.fit_projection(model.concat(inputs).detach().cpu().numpy())
            emb = model(inputs).detach().cpu().numpy().astype(np.float32)
    seconds = time.perf_counter() - t0
    if config.restarts == 1:
        reporter.info(f"SREL: {epochs[0]} epochs in {seconds:.1f} s, final loss {histories[0][-1]:.4f}.")
    else:
        reporter.info(f"SREL: {config.restarts} restarts of {min(epochs)}-{max(epochs)} epochs in {seconds:.1f} s, "
                      f"final losses {', '.join(f'{h[-1]:.4f}' for h in histories)}.")
    return SrelResult(embeddings=emb, model=model.cpu(), history=histories[0], device=choice,
                      epochs_run=max(epochs), seconds=seconds, stopped_early=stopped, histories=histories)


def embed(model, data, reporter=None) -> np.ndarray:
    """Embed ``data`` with a trained model (eval mode, no training)."""
    reporter = ensure_reporter(reporter)
    data.validate()
    data = data.without_targets()
    check_schema(model.schema, data, model.config)
    check_canceled(reporter)
    choice = resolve_device(model.config.device)
    mode = modes.resolve(model.config, data.n)
    mode.check_memory(data.n, model.config, choice.device)
    reporter.info(f"Embedding {data.n} regions on {choice.device}; {mode.describe(data.n, model.config)}.")
    dev = torch.device(choice.device)
    model = model.to(dev).eval()
    with _threads(model.config, choice.device, data.n), torch.no_grad():
        out = model(build_inputs(model, data, dev, mode)).cpu().numpy().astype(np.float32)
    model.cpu()
    reporter.set_progress(100.0)
    return out
