"""``run_prompt4re``: checks, prompts, cached encoding, nested CV, final predictions."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..config import PromptConfig
from ..data import RegionData
from ..errors import ToptDataError
from ..progress import StageReporter, check_canceled, ensure_reporter


@dataclass
class PromptResult:
    """Outputs of ``run_prompt4re``.

    predictions: (N,) final head (trained on all labelled regions) for every region.
    oof: (N,) out-of-fold prediction for labelled regions, NaN elsewhere.
    labelled: (N,) bool.
    metrics / ridge_metrics: {"mae", "rmse", "r2"} on the pooled OOF predictions (negatives clipped to 0
        when the target is non-negative), Prompt4RE and the Ridge-on-embeddings baseline on the same folds.
    prompts: the full prompt (task template + description) per region, for the report; encoded only when
        ``text_plan`` says so (the head route, or text_input="description").
    facet_names / facet_prompts: every text encoded per region, in key/value order ("user": the user's
        words; "full": the full prompt; the head's facets; none when the text route is skipped).
    encoder_info, device (DeviceChoice), timings {"encode_s", "train_s"}, chosen (per fold + final: route
        weights, log1p and neighbour shares, head epochs), warnings; lo/hi/coverage/width (CV+ intervals).
    """

    predictions: np.ndarray
    oof: np.ndarray
    labelled: np.ndarray
    metrics: dict
    ridge_metrics: dict
    prompts: list
    encoder_info: dict
    device: object
    timings: dict
    chosen: list
    warnings: list = field(default_factory=list)
    facet_names: list = field(default_factory=list)
    facet_prompts: list = field(default_factory=list)
    ridge_oof: np.ndarray | None = None
    knn_metrics: dict = field(default_factory=dict)    # inverse-distance interpolation of the labels, same folds
    target_name: str = ""
    config: dict = field(default_factory=dict)
    lo: np.ndarray | None = None        # (N,) lower end of the prediction interval (config.level)
    hi: np.ndarray | None = None
    coverage: float = float("nan")      # share of labelled regions inside their out-of-fold interval
    width: float = float("nan")         # mean interval width over them
    folds: list = field(default_factory=list)
    evidence: dict = field(default_factory=dict)   # labelled neighbours (global rows) and weights per region
    left_out: np.ndarray | None = None


def check_inputs(embeddings, data: RegionData, target, target_name: str, config: PromptConfig):
    emb = np.asarray(embeddings, dtype=float)
    if emb.ndim != 2:
        raise ToptDataError(f"Region embeddings must be a 2-D (regions x dimensions) array, got shape {emb.shape}; "
                            "pass the emb_* columns written by 'Learn region embeddings'.")
    if emb.shape[0] != data.n:
        raise ToptDataError(f"There are {emb.shape[0]} embedding rows but {data.n} regions; expected one row per "
                            "region in the same order; use the layer written by 'Learn region embeddings'.")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb).all(1)).sum())
        raise ToptDataError(f"{bad} region(s) have NaN or infinite embedding values; expected finite numbers; "
                            "recompute the embeddings or remove those regions.")
    for what, arr in (("POI counts", data.poi_counts), ("land-use values", data.landuse),
                      ("numeric description fields", data.extra),
                      ("OD counts", None if data.mobility is None else data.mobility.data)):
        if arr is not None and not np.isfinite(np.asarray(arr, dtype=float)).all():
            raise ToptDataError(f"The region {what} used in the descriptions contain NaN or infinite values; "
                                "expected finite numbers. Fill those values (e.g. with 0) or leave that field out.")
    y = np.asarray(target, dtype=float).reshape(-1)
    if y.shape[0] != data.n:
        raise ToptDataError(f"Target '{target_name}' has {y.shape[0]} values but there are {data.n} regions; "
                            "expected one value per region (NaN/empty where unknown).")
    y = np.where(np.isfinite(y), y, np.nan)
    n_lab = int(np.isfinite(y).sum())
    if n_lab == 0:
        raise ToptDataError(f"Target '{target_name}' has no known values (all empty/NaN); expected numbers for "
                            "at least some regions; choose a field that holds the values to predict.")
    need = config.outer_folds + 1
    if n_lab < need:
        raise ToptDataError(f"Only {n_lab} region(s) have a known '{target_name}'; {config.outer_folds}-fold "
                            f"cross-validation with an inner validation split needs at least {need}; label more "
                            "regions or lower the number of folds.")
    yl = y[np.isfinite(y)]
    if np.ptp(yl) == 0:
        raise ToptDataError(f"Target '{target_name}' has the same value ({yl[0]:g}) in every labelled region; "
                            "expected varying values; choose another field.")
    return emb, y


def target_warnings(y, target_name: str, config: PromptConfig) -> list[str]:
    """What a user should know about the target before trusting the figures: heavy skew, few labels."""
    out = []
    known = y[np.isfinite(y)]
    p90 = float(np.percentile(known, 90)) if known.size else 0.0
    top = float(known.max()) if known.size else 0.0
    from .train import SKEW_RATIO

    if known.size and p90 > 0 and top > SKEW_RATIO * p90:
        fix = ("TARGET_TRANSFORM=auto chooses log1p on inner folds where it helps" if config.target_transform == "auto"
               else f"TARGET_TRANSFORM is {config.target_transform}; consider auto or log1p")
        out.append(f"Target '{target_name}' is heavily skewed: its largest value ({top:.4g}) is {top / p90:.3g}x its "
                   f"90th percentile ({p90:.4g}); a few regions then dominate the fit and the errors. {fix}, and "
                   "check those regions for data errors.")
    k = config.outer_folds
    if known.size and known.size / k < 5:
        out.append(f"Only {known.size} labelled regions for {k} folds: each test fold holds "
                   f"{known.size // k}-{-(-known.size // k)} regions, so MAE/RMSE/R² vary a lot from run to run; "
                   "treat them as rough, label more regions or use fewer folds (FOLDS).")
    return out


def text_plan(config: PromptConfig, data: RegionData, n_labelled: int) -> tuple[str, str]:
    """What the language model encodes, and why in words: ``(plan, reason)`` with plan one of

    * "facets": the head route runs and reads the template, the full prompt and every facet sentence;
    * "full": one full prompt per region (``text_input="description"``, or nothing else is left to fit);
    * "user": the user's own words per region (region names, TEXT_FIELDS, POI names), the default when
      any region has some: short texts, each distinct one encoded once, cached for every task;
    * "none": nothing: the descriptions only restate numbers (POI counts and shares, land use, OD totals,
      area, position, neighbour count) that the views route and the neighbour term read as numbers, and
      encoding them costs a language-model pass per region (0.18 s each on 2 CPU cores: 30 min at
      10 000 regions) for a route that added nothing measurable on Manhattan (bench/RESULTS.md)."""
    from .describe import has_user_words
    from .train import use_head

    if use_head(config, n_labelled):
        return "facets", ("the cross-attention head route runs, so the task template, every full prompt and "
                          "every facet sentence are encoded.")
    if not config.use_text:
        return "none", "the text route is switched off (use_text), so nothing is encoded."
    if config.text_input == "description":
        return "full", ("text_input=description: the full prompt (task template + description) of every region is "
                        "encoded.")
    words = [("region names" if data.names is not None and any(str(v).strip() for v in data.names) else "")]
    words += [f"'{k}'" for k, v in data.texts.items() if any(str(x).strip() for x in v)]
    words = [w for w in words if w]
    if has_user_words(data):
        return "user", (f"the text route reads the user's own words ({', '.join(words)}); the counts, areas and "
                        "places of the descriptions are left to the views route, which reads them as numbers "
                        "(text_input=description encodes the whole descriptions instead).")
    if not (config.use_embedding or config.use_views):
        return "full", ("the descriptions only restate the regions' numbers, but the text route is the only one "
                        "switched on, so the full prompts are encoded.")
    return "none", ("the text route is skipped and no prompt is encoded: without TEXT_FIELDS, POI names or region "
                    "names the descriptions only restate numbers (POI counts, land use, OD totals, area, position) "
                    "that the views route reads directly, and encoding them costs a language-model pass per region "
                    "for no measured gain. Give TEXT_FIELDS (names, zoning, notes) to add words, or set "
                    "text_input=description to encode the descriptions anyway.")


def run_prompt4re(embeddings: np.ndarray, data: RegionData, target: np.ndarray, target_name: str,
                  config: PromptConfig = PromptConfig(), reporter=None, cache_dir=None) -> PromptResult:
    """Stage 2: predict ``target`` from frozen region embeddings + frozen-LM prompt vectors.

    ``target`` holds NaN for unknown regions; every region gets a prediction.
    """
    from ..device import resolve_device
    from .text_sources import get_text_encoder
    from .templates import build_prompt_facets
    from .train import fit_predict

    reporter = ensure_reporter(reporter)
    check_canceled(reporter)
    emb, y = check_inputs(embeddings, data, target, target_name, config)
    dev = resolve_device(config.device)
    reporter.info(f"Prompt4RE device: {dev.device} ({dev.reason}).")
    warnings: list[str] = []

    # -- prompts and frozen-LM vectors (cached on disk) --
    t0 = time.perf_counter()
    names, texts = build_prompt_facets(data, config.task, target_name, config.task_description,
                                       config.use_task_template)
    k_full = names.index("full")
    full_prompts = [row[k_full] for row in texts]
    n_lab = int(np.isfinite(y).sum())
    plan, why = text_plan(config, data, n_lab)
    reporter.info(f"Prompt4RE text: {why}")
    if plan == "user":
        from .templates import build_user_prompts

        names, texts = ["user"], [[t] for t in build_user_prompts(data, config.task, target_name,
                                                                   config.task_description,
                                                                   config.use_task_template)]
    elif plan == "full":                # only the head reads the facets: encode the full prompt alone
        names, texts = ["full"], [[t] for t in full_prompts]
    elif plan == "none":
        names, texts = [], [[] for _ in range(data.n)]
    encoder = get_text_encoder(config.text_encoder, cache_dir=cache_dir, device=dev.device)
    encoder.threads = config.threads or None
    for w in encoder.warnings:
        reporter.warning(w)
        warnings.append(w)
    flat = [t for row in texts for t in row]
    uniq = list(dict.fromkeys(flat))
    encoder_info = dict(encoder.info, text_input=config.text_input, encoded=why)
    if plan == "none":
        # (the wording keeps "distinct prompts" and "from the cache": the log's stage markers)
        reporter.set_text("Prompt4RE: no distinct prompts to encode (the text route is skipped)")
        check_canceled(reporter)
        text_vecs = np.zeros((data.n, 0, 0))
        encode_s = time.perf_counter() - t0
        reporter.info("Prompt4RE: 0 prompts encoded, none read from the cache: the text route is skipped (see above).")
    else:
        label = f"Prompt4RE: encoding {len(uniq)} distinct prompts with {config.text_encoder}"
        reporter.set_text(label)
        vec = encoder.encode(uniq, reporter=StageReporter(reporter, 0, 10), label=label)
        pos = {t: i for i, t in enumerate(uniq)}
        text_vecs = vec[[pos[t] for t in flat]].reshape(data.n, len(names), -1)
        encode_s = time.perf_counter() - t0
        threads = f" on {encoder.last_threads}" if encoder.last_threads is not None and encoder.last_misses else ""
        reporter.info(f"Prompt4RE: {len(uniq)} prompts, {encoder.last_hits} from the cache, "
                      f"{encoder.last_misses} encoded in {encode_s:.1f} s{threads} ({encoder.info['model_type']}, "
                      f"{encoder.dim}-d, {encoder.pooling} pooling).")
    check_canceled(reporter)

    # -- nested CV + final head --
    t1 = time.perf_counter()
    from ..evaluate import PROTOCOLS

    proto = PROTOCOLS[config.protocol]
    reporter.info(f"Outer folds: {config.protocol}, {proto.describe(config.outer_folds, config.seed)}, over "
                  f"{int(np.isfinite(y).sum())} labelled regions; each fold's model is chosen on its own inner "
                  "splits.")
    for w in target_warnings(y, target_name, config):
        reporter.warning(w)
        warnings.append(w)
    from .conformal import coverage, cv_plus
    from .stack import view_features

    route = names.index("user") if "user" in names else names.index("full") if "full" in names else None
    out = fit_predict(emb, text_vecs, y, config, StageReporter(reporter, 10, 100), device=dev.device,
                      coords=data.centroids, views=view_features(data),
                      text_route=None if route is None else text_vecs[:, route])
    if out["left_out"].any():
        reporter.info(f"Protocol {config.protocol}: {int(out['left_out'].sum())} region(s) with 0 check-ins are "
                      "left out of training and scoring, as in the published protocol (they are still predicted).")
    final = out["chosen"][-1]
    reporter.info("Prompt4RE final model, weights chosen on inner splits: "
                  + ", ".join(f"{r} {final[r]:.2f}" for r in ("embedding", "views", "text", "interpolation", "prompt")
                              if final[r] > 0)
                  + f"; on log1p {final['log1p']:.2f}, with the labelled-neighbour term {final['neighbours']:.2f}.")
    guarded = [c for c in out["chosen"] if c.get("shrink")]
    if guarded:
        reporter.info(f"Guard: in {len(guarded)} of {len(out['chosen'])} fits (outer folds + final) the inner splits "
                      "did not show the stack beating its best single baseline clearly, so its weights were shrunk "
                      f"toward that baseline (final model: {100 * final.get('shrink', 0):.0f} % "
                      f"{'/'.join(str(x) for x in (final.get('baseline') or ())[:2])}).")
    lo, hi = cv_plus(np.where(out["labelled"], y, np.nan), out["folds"], out["fold_predictions"], config.level,
                     out["clip"])
    lab_rows = np.concatenate([te for _, te in out["folds"]])
    cov, width = coverage(y, lo, hi, lab_rows)
    reporter.info(f"Prediction intervals ({100 * config.level:.0f} %, cross-conformal CV+): {100 * cov:.1f} % of the "
                  f"labelled regions inside theirs (out of fold), mean width {width:.4g}.")
    train_s = time.perf_counter() - t1
    from ..evaluate import regression_metrics

    lab = out["labelled"]
    metrics = regression_metrics(y[lab], out["oof"][lab])
    ridge = regression_metrics(y[lab], out["ridge_oof"][lab])
    knn = regression_metrics(y[lab], out["knn_oof"][lab])
    reporter.info(f"Prompt4RE out-of-fold: MAE {metrics['mae']:.4g}, RMSE {metrics['rmse']:.4g}, R2 "
                  f"{metrics['r2']:.3f} (same folds: Ridge on embeddings MAE {ridge['mae']:.4g}, R2 {ridge['r2']:.3f}; "
                  f"interpolation of the labels MAE {knn['mae']:.4g}, R2 {knn['r2']:.3f}); "
                  f"encode {encode_s:.1f} s, train {train_s:.1f} s.")
    return PromptResult(predictions=out["predictions"], oof=out["oof"], labelled=lab, metrics=metrics,
                        ridge_metrics=ridge, knn_metrics=knn, prompts=full_prompts, encoder_info=encoder_info, device=dev,
                        timings={"encode_s": encode_s, "train_s": train_s}, chosen=out["chosen"],
                        warnings=warnings, facet_names=names, facet_prompts=texts, ridge_oof=out["ridge_oof"],
                        target_name=target_name, config=config.to_dict(), lo=lo, hi=hi, coverage=cov, width=width,
                        folds=out["folds"], evidence=out["evidence"], left_out=out["left_out"])
