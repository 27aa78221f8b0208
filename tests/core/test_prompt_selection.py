"""Stage 2's selection module (issue 20): the seeds of the inner splits and heads, written once, and the
head route's allowed values."""
import numpy as np
import pytest

from topt_core.config import PromptConfig
from topt_core.errors import ToptConfigError


def test_seed_formulas_are_pinned():
    """Changing a seed formula changes every stage-2 result: the values are pinned here."""
    from topt_core.prompt.selection import head_seed, inner_split_seed

    assert [inner_split_seed(42, k) for k in (-1, 0, 3)] == [42 + 7919, 42 + 2 * 7919, 42 + 5 * 7919]
    assert head_seed(42, -1, 7) == 42 * 100003 + 1009 + 7
    assert head_seed(5, 2, 1 * 31 + 2) == 5 * 100003 + 4 * 1009 + 33


def test_selection_heads_default_to_the_shared_inner_splits():
    """``select_members`` without splits uses exactly the splits every route shares (no coordinates)."""
    from topt_core.prompt.selection import head_seed, inner_split_positions, select_members

    cfg = PromptConfig(inner_splits=3, lr_multipliers=(0.5, 1.0), seed=11)
    lab = np.arange(30)
    groups = [(0, lab[:20], lab[20:]), (-1, lab, lab)]
    splits = inner_split_positions(groups, cfg)
    default, given = select_members(groups, cfg), select_members(groups, cfg, splits)
    assert len(default) == len(given) == 2 * 3 * 2
    for a, b in zip(default, given):
        assert (a.group, a.inner, a.lr, a.seed) == (b.group, b.inner, b.lr, b.seed)
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.val, b.val)
    assert [m.seed for m in default[:2]] == [head_seed(11, 0, 0), head_seed(11, 0, 1)]


def test_use_head_choices_are_what_the_config_accepts():
    from topt_core.config import USE_HEAD_CHOICES

    assert USE_HEAD_CHOICES[0] == PromptConfig().use_head         # the default comes first (enum order)
    for choice in USE_HEAD_CHOICES:
        PromptConfig(use_head=choice)
    with pytest.raises(ToptConfigError):
        PromptConfig(use_head="sometimes")
