"""SREL restart ensembles (config.restarts > 1): save/load/embed, determinism, labels, progress, old folders."""
import json

import numpy as np
import pytest

from srel_fixtures import FAST, CountingReporter, tiny_data
from topt_core.config import SrelConfig
from topt_core.errors import ToptCancelled, ToptConfigError
from topt_core.srel import SrelEnsemble, SrelModel, embed, load_model, save_model, train_srel
from topt_core.srel.train import member_seed

ENS = FAST.replace(restarts=3)


@pytest.fixture(scope="module")
def trained():
    data = tiny_data()
    return data, train_srel(data, ENS)


def test_default_is_an_ensemble_for_small_layers_and_validated():
    from topt_core.config import resolve_restarts

    assert SrelConfig().restarts == 0                                  # auto
    assert resolve_restarts(SrelConfig(), 180) == 4 and resolve_restarts(SrelConfig(), 500) == 4
    assert resolve_restarts(SrelConfig(), 501) == 1 and resolve_restarts(SrelConfig(), 2000) == 1   # real cities
    assert resolve_restarts(SrelConfig(restarts=3), 50_000) == 3
    for bad in (-1, 33):
        with pytest.raises(ToptConfigError, match="restarts"):
            SrelConfig(restarts=bad)
    assert SrelConfig.from_dict(SrelConfig(restarts=2).to_dict()).restarts == 2


def test_auto_restarts_are_saved_as_a_number(tmp_path):
    r = train_srel(tiny_data(n=20), FAST.replace(restarts=0, epochs=2))
    assert r.model.config.restarts == 4 and len(r.model.members) == 4


def test_ensemble_shape_and_members(trained):
    data, r = trained
    assert isinstance(r.model, SrelEnsemble) and len(r.model.members) == 3
    assert all(isinstance(m, SrelModel) and m.config.restarts == 1 for m in r.model.members)
    assert r.embeddings.shape == (data.n, ENS.embed_dim) and r.embeddings.dtype == np.float32
    assert np.isfinite(r.embeddings).all() and r.embeddings.std() > 0
    assert len(r.histories) == 3 and r.history == r.histories[0] and r.epochs_run == ENS.epochs
    # the PCA output is centred and its columns are ordered by variance
    np.testing.assert_allclose(r.embeddings.mean(0), 0, atol=1e-4)
    var = r.embeddings.var(0)
    assert np.all(np.diff(var) <= 1e-5)


def test_round_trip_reproduces_embeddings(trained, tmp_path):
    data, r = trained
    folder = save_model(r, tmp_path / "m", data=data)
    m = load_model(folder)
    assert isinstance(m, SrelEnsemble) and not m.training and m.config == r.model.config
    np.testing.assert_array_equal(embed(m, data), r.embeddings)
    np.testing.assert_array_equal(embed(r.model, data), r.embeddings)


def test_deterministic_and_differs_from_single_model():
    data = tiny_data(n=20)
    a = train_srel(data, ENS).embeddings
    b = train_srel(data, ENS).embeddings
    np.testing.assert_array_equal(a, b)
    single = train_srel(data, FAST)
    assert isinstance(single.model, SrelModel)
    assert not np.allclose(a, single.embeddings)
    # the first member is the single model of the same seed; the others use other seeds
    first = train_srel(data, ENS.replace(restarts=2))
    np.testing.assert_array_equal(embed(first.model.members[0], data), single.embeddings)
    assert len({member_seed(ENS.seed, k) for k in range(8)}) == 8
    assert not np.array_equal(train_srel(data, ENS.replace(seed=ENS.seed + 1)).embeddings, a)


def test_fewer_regions_than_embedding_size_pads_with_zeros():
    data = tiny_data(n=6)
    r = train_srel(data, ENS.replace(embed_dim=16, hidden_dim=16))
    assert r.embeddings.shape == (6, 16) and np.isfinite(r.embeddings).all()
    np.testing.assert_array_equal(r.embeddings[:, 6:], 0)    # rank <= n - 1 = 5


def test_labels_never_reach_training():
    data = tiny_data()
    a = train_srel(data, ENS).embeddings
    b = train_srel(tiny_data(targets=False), ENS).embeddings
    np.testing.assert_array_equal(a, b)


def test_progress_spans_all_restarts_and_cancel_stops_later_restarts():
    rep = CountingReporter()
    train_srel(tiny_data(), ENS, rep)
    assert len(rep.progress) == 3 * ENS.epochs and rep.progress[-1] == pytest.approx(100.0)
    assert np.all(np.diff(rep.progress) > 0)
    assert sum("training on" in m for m in rep.infos) == 1
    rep = CountingReporter(cancel_after=ENS.epochs + 2)        # cancels during the second restart
    with pytest.raises(ToptCancelled):
        train_srel(tiny_data(), ENS, rep)


def test_folder_without_restarts_key_loads_as_single_model(tmp_path):
    data = tiny_data()
    r = train_srel(data, FAST)
    folder = save_model(r, tmp_path / "old")
    cfg_file = folder / "config.json"
    man = json.loads(cfg_file.read_text())
    del man["config"]["restarts"]                       # as written before restarts existed
    cfg_file.write_text(json.dumps(man))
    m = load_model(folder)
    assert isinstance(m, SrelModel) and m.config.restarts == 1
    np.testing.assert_array_equal(embed(m, data), r.embeddings)
