"""Training, embedding, saving and loading SREL models (the stage-1 public API).

Training is full-batch (every region in every epoch; which pairs attend is the attention
mode's choice, ``srel/modes/``, resolved once per run), seeded and deterministic on a given
CPU; stopping looks only at the self-supervised loss. Before anything large is allocated the
mode estimates the memory and the job is refused with advice if it would not fit.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint
from ..config import SrelConfig, resolve_restarts, upgrade_srel_settings
from ..device import DeviceChoice, cpu_threads, resolve_device, torch_threads
from ..errors import ToptCheckpointError, ToptConfigError
from ..files import atomic_file
from ..progress import check_canceled, ensure_reporter, eta_words
from . import modes
from .inputs import build_inputs, check_schema, fit_preprocessing, input_schema
from .losses import build_targets, srel_loss
from .model import SrelEnsemble, SrelModel, build_model

FORMAT = "topt-srel"
WEIGHTS_FILE = "model.safetensors"


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


# -- determinism ---------------------------------------------------------------------------------

class _Deterministic:
    """Seed torch/numpy and switch on deterministic algorithms; restore the caller's state after."""

    def __init__(self, seed: int, device: str):
        self.seed, self.device = seed, device

    def __enter__(self):
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        self._fork = torch.random.fork_rng(devices=devices)
        self._fork.__enter__()
        self._np_state = np.random.get_state()
        self._det = torch.are_deterministic_algorithms_enabled()
        if self.device.startswith("cuda"):
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2 ** 32))
        return self

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self._det)
        np.random.set_state(self._np_state)
        return self._fork.__exit__(*exc)


#: up to this many regions one CPU thread is fastest (the ops are tiny; 6x slower with 2 on a shared 2-core VM)
SMALL_N = 1000


def _threads(config: SrelConfig, device: str, n: int):
    """torch CPU threads for a run over ``n`` regions (``device.cpu_threads``); unchanged on a GPU."""
    return torch_threads(cpu_threads(config.threads, small=n <= SMALL_N) if device == "cpu" else None)


# -- training ------------------------------------------------------------------------------------

def member_seed(seed: int, k: int) -> int:
    """Seed of restart ``k``: the config's seed for the first, a SeedSequence draw for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([int(seed) % 2 ** 32, k]).generate_state(1)[0])


class _BestState:
    """Early stopping on the self-supervised loss, keeping the weights of the best epoch.

    On the CPU every epoch is checked exactly (a float costs nothing). On a GPU nothing leaves the
    device inside the loop: the best loss, the patience counter and the best weights are updated
    with ``torch.where`` on the device, and the host looks only every ``SYNC_EVERY`` epochs (so a
    run may go up to that many epochs past its patience; the best weights are still the best epoch's).
    """

    SYNC_EVERY = 10

    def __init__(self, model, config, device, device_side: bool | None = None):
        self.model, self.config = model, config
        self.gpu = torch.device(device).type == "cuda" if device_side is None else device_side
        self.best, self.wait, self.state, self.losses = float("inf"), 0, None, []
        if self.gpu:
            self.best_t = torch.tensor(float("inf"), device=device)
            self.wait_t = torch.zeros((), dtype=torch.long, device=device)
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, loss, epoch: int) -> bool:
        """Record this epoch's loss; True when training should stop."""
        cfg = self.config
        if not self.gpu:
            value = float(loss.detach())
            _finite_or_raise(value, epoch, cfg)
            self.losses.append(value)
            if value < self.best - cfg.min_delta * abs(self.best if np.isfinite(self.best) else value):
                self.best, self.wait = value, 0
                self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                self.wait += 1
            return self.wait >= cfg.patience
        value = loss.detach()
        self.losses.append(value)
        tol = cfg.min_delta * torch.where(torch.isfinite(self.best_t), self.best_t.abs(), value.abs())
        improved = value < self.best_t - tol
        self.best_t = torch.where(improved, value, self.best_t)
        self.wait_t = torch.where(improved, torch.zeros_like(self.wait_t), self.wait_t + 1)
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                self.state[k].copy_(torch.where(improved, v, self.state[k]))
        if epoch % self.SYNC_EVERY and epoch < cfg.epochs:
            return False
        recent = torch.stack(self.losses[-self.SYNC_EVERY:]).cpu()            # one transfer per SYNC_EVERY
        for i, v in enumerate(recent.tolist()):
            _finite_or_raise(v, epoch - len(recent) + 1 + i, cfg)
        self.best, self.wait = float(self.best_t), int(self.wait_t)
        return self.wait >= cfg.patience

    def history(self) -> list:
        return [float(v) for v in self.losses] if not self.gpu else torch.stack(self.losses).cpu().tolist()

    def restore(self):
        if self.state is not None:
            self.model.load_state_dict(self.state)


def _finite_or_raise(value: float, epoch: int, cfg) -> None:
    if not np.isfinite(value):
        raise ToptConfigError(f"SREL training diverged at epoch {epoch} (loss {value}); expected a finite loss. "
                              f"Lower the learning rate (now {cfg.lr}).")


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
        loss, _ = srel_loss(model, model(inputs), targets)
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
    choice = device or resolve_device(config.device)
    mode = modes.resolve(config, data.n)                                  # resolved once, handed on
    mode.check_config(config, data)
    need = mode.check_memory(data.n, config, choice.device)
    more = f", {config.restarts} restarts" if config.restarts > 1 else ""
    for view in views.present(data):
        for w in view.warnings(data):
            reporter.warning(w)
    reporter.info(views.derived_note(data, config))
    reporter.info(f"SREL: training on {choice.device} ({choice.reason}); {data.n} regions, "
                  f"views {', '.join(data.views())}{more}; {mode.describe(data.n, config)}; "
                  f"estimated peak memory {need / 1e9:.2f} GB.")
    dev = torch.device(choice.device)
    member_cfg = config.replace(restarts=1)
    members, histories, epochs, stopped, stats, inputs = [], [], [], False, None, None
    with _threads(config, choice.device, data.n):
        for k in range(config.restarts):
            with _Deterministic(member_seed(config.seed, k), choice.device):
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


# -- save / load ---------------------------------------------------------------------------------

def save_model(result_or_model, folder, data=None) -> Path:
    """Write the model (and optionally its input RegionData, never labels) to ``folder``."""
    from safetensors.torch import save_file

    model = result_or_model.model if isinstance(result_or_model, SrelResult) else result_or_model
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.refuse_unsafe_files(folder)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_file(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    files = [WEIGHTS_FILE]
    body = {"config": model.config.to_dict(), "input_schema": model.schema}
    if data is not None:
        data.validate()
        body["region_data"] = checkpoint.save_region_data(folder, data.without_targets())
        files.append(checkpoint.REGION_DATA_FILE)
    elif (folder / checkpoint.REGION_DATA_FILE).exists():
        (folder / checkpoint.REGION_DATA_FILE).unlink()
    checkpoint.write_manifest(folder, FORMAT, body, files)
    return folder


def load_model(folder):
    """Load a folder written by ``save_model``; checks format, versions, hashes and shapes. No code runs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    manifest = checkpoint.read_manifest(folder, FORMAT)
    if WEIGHTS_FILE not in manifest["files"]:
        raise ToptCheckpointError(f"{Path(folder) / checkpoint.CONFIG_FILE} does not list {WEIGHTS_FILE}; "
                                  "expected an SREL model folder. Retrain the model.")
    try:
        settings = dict(manifest["config"])
        config = SrelConfig.from_dict(upgrade_srel_settings(settings))
        schema = manifest["input_schema"]
        model = build_model(config, schema)
    except (KeyError, TypeError, ValueError, ToptConfigError) as exc:
        raise ToptCheckpointError(f"The settings in {Path(folder) / checkpoint.CONFIG_FILE} cannot be used "
                                  f"({exc}); expected a config written by this topt. Retrain the model.") from exc
    try:
        state = load_file(str(Path(folder) / WEIGHTS_FILE))
    except (SafetensorError, OSError) as exc:
        raise ToptCheckpointError(f"{Path(folder) / WEIGHTS_FILE} is not a readable safetensors file ({exc}); "
                                  "retrain the model.") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ToptCheckpointError(f"The weights in {folder} do not fit the model described by its config "
                                  f"({' '.join(first[:3])[:300]}); expected matching shapes. Retrain the model.") from exc
    return model.eval()
