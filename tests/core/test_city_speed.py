"""City-scale stage 2 and the thread policy (issue 21): what the language model encodes by default,
the encoding's progress text, and how many CPU threads are chosen and why. Nothing here is timed:
the load is mocked and the encoder is the tiny random one."""
import numpy as np
import pytest

from topt_core import device
from topt_core.config import PromptConfig
from topt_core.errors import ToptConfigError
from tests.core.test_prompt import synthetic_data
from tests.tiny_encoder import source as tiny_source

NAMES = ["Midtown", "Chelsea", "Harlem", "Soho"]


class Rep:
    def __init__(self):
        self.msgs, self.texts = [], []

    def set_progress(self, p): pass
    def set_text(self, t): self.texts.append(t)
    def info(self, t): self.msgs.append(t)
    def warning(self, t): self.msgs.append("W:" + t)
    def is_canceled(self): return False


def _problem(n=40, seed=3):
    data = synthetic_data(n)
    rng = np.random.default_rng(seed)
    return data, rng.normal(size=(data.n, 10)), data.poi_counts[:, 1] * 3 + rng.normal(0, 1, data.n)


@pytest.fixture
def encoded(monkeypatch):
    """Every text the model actually runs on (cache misses), in the order they reach it."""
    from topt_core.prompt.text_encoder import TextEncoder

    seen = []
    real = TextEncoder._run_model

    def spy(self, texts, *a, **k):
        seen.extend(texts)
        return real(self, texts, *a, **k)

    monkeypatch.setattr(TextEncoder, "_run_model", spy)
    return seen


def test_descriptions_that_only_restate_numbers_are_not_encoded_by_default(tmp_path, monkeypatch, routes):
    from topt_core.prompt import run_prompt4re
    from topt_core.prompt.text_encoder import TextEncoder

    def no_model(self):
        raise AssertionError("the language model was loaded for descriptions made of numbers only")

    monkeypatch.setattr(TextEncoder, "_load", no_model)
    data, emb, y = _problem()
    rep = Rep()
    res = run_prompt4re(emb, data, y, "crimes", PromptConfig(text_encoder=tiny_source("bert"), folds=4, device="cpu"),
                        reporter=rep, cache_dir=tmp_path)
    assert res.facet_names == [] and all(row == [] for row in res.facet_prompts)
    assert not (tmp_path / "vectors").exists() or not any((tmp_path / "vectors").rglob("*.npy"))
    assert routes == [None] and all(c["text"] == 0 for c in res.chosen)   # no text route was fitted
    log = " ".join(rep.msgs)
    assert "text route is skipped" in log and "restate numbers" in log and "TEXT_FIELDS" in log   # says why
    assert "text route is skipped" in res.encoder_info["encoded"]        # and the report's encoder table too
    assert len(res.prompts) == data.n and "Included POIs" in res.prompts[0]   # the report still shows them
    assert np.isfinite(res.predictions).all()


@pytest.fixture
def routes(monkeypatch):
    """The text-route vectors each run hands to the stack (None: no text route)."""
    from topt_core.prompt import train

    seen = []
    real = train.fit_predict

    def spy(*a, text_route=None, **k):
        seen.append(None if text_route is None else np.asarray(text_route))
        return real(*a, text_route=text_route, **k)

    monkeypatch.setattr(train, "fit_predict", spy)
    return seen


def test_user_text_fields_are_still_encoded_alone_and_once_per_distinct_text(tmp_path, encoded, routes):
    from topt_core.prompt import run_prompt4re

    data, emb, y = _problem()
    data.texts["neighbourhood"] = np.asarray([NAMES[i % 4] for i in range(data.n)], dtype=object)
    rep = Rep()
    res = run_prompt4re(emb, data, y, "crimes", PromptConfig(text_encoder=tiny_source("bert"), folds=4, device="cpu"),
                        reporter=rep, cache_dir=tmp_path)
    assert res.facet_names == ["user"]
    assert sorted(encoded) == sorted(f"neighbourhood: {n}." for n in NAMES)   # the words, not the counts
    assert [row[0] for row in res.facet_prompts][:4] == [f"neighbourhood: {n}." for n in NAMES]
    assert any("'neighbourhood'" in m and "user's own words" in m for m in rep.msgs)
    assert any("4 prompts, 0 from the cache, 4 encoded" in m for m in rep.msgs)
    assert routes[-1].shape[0] == data.n and routes[-1].shape[1] > 0     # the text route reads those vectors
    assert np.allclose(routes[-1][0], routes[-1][4]) and not np.allclose(routes[-1][0], routes[-1][1])
    encoded.clear()
    again = run_prompt4re(emb, data, y, "checkins", PromptConfig(text_encoder=tiny_source("bert"), folds=4,
                                                                 device="cpu", task="checkin"),
                          reporter=Rep(), cache_dir=tmp_path)
    assert encoded == [] and again.facet_names == ["user"]           # the same words serve every task: cached


def test_poi_names_and_region_names_count_as_user_words(tmp_path, encoded):
    from topt_core.prompt import run_prompt4re

    data, emb, y = _problem()
    data.texts["POIs"] = np.asarray(["Penn Station, Macy's" if i % 2 else "" for i in range(data.n)], dtype=object)
    data.names = np.asarray([f"R{i % 3}" for i in range(data.n)], dtype=object)
    res = run_prompt4re(emb, data, y, "crimes", PromptConfig(text_encoder=tiny_source("bert"), folds=4, device="cpu"),
                        reporter=Rep(), cache_dir=tmp_path)
    assert res.facet_names == ["user"]
    assert "Region R1. POIs: Penn Station, Macy's." in encoded and "Region R0." in encoded
    assert not any("Included POIs" in t or "km2" in t for t in encoded)


def test_text_input_description_encodes_every_full_prompt_and_head_reads_facets(tmp_path, encoded):
    from topt_core.prompt import run_prompt4re
    from topt_core.prompt.pipeline import text_plan

    data, emb, y = _problem()
    res = run_prompt4re(emb, data, y, "crimes", PromptConfig(text_encoder=tiny_source("bert"), folds=4, device="cpu",
                                                             text_input="description"),
                        reporter=Rep(), cache_dir=tmp_path)
    assert res.facet_names == ["full"] and sorted(encoded) == sorted(set(res.prompts))
    assert text_plan(PromptConfig(use_head="on"), data, 40)[0] == "facets"
    assert text_plan(PromptConfig(use_text=False), data, 40)[0] == "none"
    # the text route alone left on: nothing else to fit, so the descriptions are encoded after all
    assert text_plan(PromptConfig(use_embedding=False, use_views=False), data, 40)[0] == "full"
    with pytest.raises(ToptConfigError, match="text_input"):
        PromptConfig(text_input="everything")


def test_encoding_progress_text_shows_counts_and_time_left(monkeypatch):
    from topt_core.prompt import text_encoder
    from topt_core.prompt.text_sources import get_text_encoder

    clock = iter(np.arange(0.0, 1e4, 7.0))                     # each look at the clock: 7 s later
    monkeypatch.setattr(text_encoder.time, "monotonic", lambda: float(next(clock)))
    eta = text_encoder.EtaText("Prompt4RE: encoding 100 distinct prompts", [10] * 100)
    assert eta.due(10)
    text = eta.text(10)                                        # 10 % done in 14 s of (mocked) time
    assert text.startswith("Prompt4RE: encoding 100 distinct prompts: 10/100 encoded, about 2 min left"), text
    assert eta.text(100).startswith("Prompt4RE: encoding 100 distinct prompts: 100/100 encoded in")
    assert text_encoder.eta_words(30) == "under a minute left" and text_encoder.eta_words(7200) == "about 2.0 h left"
    monkeypatch.undo()
    import tempfile

    rep = Rep()
    with tempfile.TemporaryDirectory() as cache:
        enc = get_text_encoder(tiny_source("bert"), cache_dir=cache)
        enc.encode([f"text number {i}" * (1 + i % 5) for i in range(70)], batch_size=16, reporter=rep,
                   label="Prompt4RE: encoding 70 distinct prompts")
    assert rep.texts and rep.texts[-1].startswith("Prompt4RE: encoding 70 distinct prompts: 70/70 encoded in")
    assert enc.last_threads is not None and enc.last_threads.reason


# -- thread policy ----------------------------------------------------------------------------------

def _machine(monkeypatch, cores, busy):
    calls = []
    monkeypatch.setattr(device, "usable_cores", lambda: cores)

    def load():
        calls.append(1)
        return busy, "mocked"

    monkeypatch.setattr(device, "other_load", load)
    return calls


def test_idle_two_core_machine_gets_two_threads_and_says_why(monkeypatch):
    _machine(monkeypatch, 2, 0.1)
    n = device.cpu_threads(load_aware=True)
    assert n == 2 and isinstance(n, int) and "all 2 usable cores" in n.reason and "0.1" in n.reason
    assert str(n).startswith("2 threads (")


def test_loaded_two_core_machine_gets_one_thread_and_says_why(monkeypatch):
    _machine(monkeypatch, 2, 1.2)
    n = device.cpu_threads(load_aware=True)
    assert n == 1 and "1 of 2 usable cores" in n.reason and "1.2 core(s) busy" in n.reason
    _machine(monkeypatch, 8, 3.0)
    assert device.cpu_threads(load_aware=True) == 5
    _machine(monkeypatch, 2, 7.0)                              # heavily loaded: never below one thread
    assert device.cpu_threads(load_aware=True) == 1


def test_training_threads_never_depend_on_the_load(monkeypatch):
    """Training keeps a fixed count (every usable core) so a seed gives the same model under any load;
    it no longer keeps one core back."""
    calls = _machine(monkeypatch, 2, 1.9)
    n = device.cpu_threads()
    assert n == 2 and "not load-aware" in n.reason and calls == []
    _machine(monkeypatch, 8, 0.0)
    assert device.cpu_threads() == 8
    assert device.cpu_threads(small=True) == 1 and "small" in device.cpu_threads(small=True).reason
    assert device.cpu_threads(3, load_aware=True) == 3 and "THREADS=3" in device.cpu_threads(3).reason


def test_other_load_takes_this_process_own_cpu_time_off(monkeypatch):
    """Busy cores are measured from /proc/stat minus this process's own CPU time over the same interval."""
    import os
    import time

    stats = iter([(100.0, 1000.0), (100.0 + 150.0, 1000.0 + 200.0)])   # 75 % of 2 cores busy = 1.5 cores
    monkeypatch.setattr(device, "_proc_stat", lambda: next(stats))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    own = iter([(10.0, 0.0), (10.25, 0.0)])                             # this process: 0.25 s of CPU
    monkeypatch.setattr(os, "times", lambda: next(own) + (0.0, 0.0, 0.0))
    wall = iter([0.0, 0.5])
    monkeypatch.setattr(time, "monotonic", lambda: next(wall))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    busy, how = device.other_load(0.5)
    assert busy == pytest.approx(1.0) and "measured" in how            # 1.5 busy - 0.5 of our own

    def no_proc():
        raise OSError("no /proc")

    monkeypatch.setattr(device, "_proc_stat", no_proc)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.25, 1.0, 1.0))
    assert device.other_load() == (1.25, "1-minute load average")


def test_the_thread_count_a_stage_ran_with_is_kept_for_the_log(monkeypatch):
    _machine(monkeypatch, 2, 0.0)
    with device.torch_threads(device.cpu_threads()):
        pass
    assert device.last_threads() == 2 and "not load-aware" in device.last_threads().reason


def test_both_front_doors_offer_text_input():
    """--text-input (CLI) parses to the PromptConfig values; TEXT_INPUT (QGIS) has its help text (the
    hostile suite checks that every parameter has one and that the help lists exactly the parameters)."""
    from pathlib import Path

    from topt_core.__main__ import _parser
    from topt_core.config import TEXT_INPUTS

    base = ["predict", "--input", "x.gpkg", "--target", "y", "--output", "p.gpkg"]
    assert _parser().parse_args(base).text_input == "auto" == PromptConfig().text_input
    assert _parser().parse_args(base + ["--text-input", "description"]).text_input == "description"
    with pytest.raises(SystemExit):
        _parser().parse_args(base + ["--text-input", "all"])
    root = Path(__file__).resolve().parents[2]
    assert '"TEXT_INPUT":' in (root / "processing_provider" / "help_texts.py").read_text(encoding="utf-8")
    assert TEXT_INPUTS == ("auto", "description")
