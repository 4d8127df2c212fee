"""common.dispatch: the one name -> component lookup and keyword check of every package."""
from __future__ import annotations

import pytest

from common.dispatch import accepted_kwargs, build, lookup
from common.errors import InputError


class Head:
    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2):
        self.embedding_dim, self.num_classes, self.margin = embedding_dim, num_classes, margin


class Metric:
    def __init__(self, margin: float = 0.1):
        self.margin = margin


class Net:
    def __init__(self, *, width: int, depth: int):
        self.width, self.depth = width, depth


TABLE = {"head": Head, "metric": Metric}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(InputError, match=r"^unknown toy loss 'nope' \(valid: head, metric\)$"):
        build(TABLE, "nope", {}, "toy loss")
    for name in (None, ["head"]):  # a config value of the wrong type gets the same line, not a TypeError
        with pytest.raises(InputError, match=r"unknown toy loss .* \(valid: head, metric\)"):
            lookup(TABLE, name, "toy loss")
    assert lookup(TABLE, "metric", "toy loss") is Metric


def test_unknown_keywords_are_all_named_with_the_accepted_ones():
    with pytest.raises(InputError, match=r"^unknown keyword 'marg' for toy loss metric \(valid: margin\)$"):
        build(TABLE, "metric", {"marg": 1}, "toy loss")
    with pytest.raises(InputError, match=r"^unknown keywords 'a', 'b' for toy loss metric \(valid: margin\)$"):
        build(TABLE, "metric", {"a": 1, "margin": 0.3, "b": 2}, "toy loss")


def test_fixed_values_reach_only_constructors_that_take_them_and_are_not_options():
    sizes = {"embedding_dim": 8, "num_classes": 3}
    head = build(TABLE, "head", {"margin": 0.5}, "toy loss", fixed=sizes)
    assert (head.embedding_dim, head.num_classes, head.margin) == (8, 3, 0.5)
    assert build(TABLE, "metric", {}, "toy loss", fixed=sizes).margin == 0.1
    with pytest.raises(InputError, match=r"unknown keyword 'num_classes' for toy loss head \(valid: margin\)"):
        build(TABLE, "head", {"num_classes": 5}, "toy loss", fixed=sizes)
    with pytest.raises(InputError, match=r"\(valid: none\)"):
        build({"plain": Metric}, "plain", {"margin": 1}, "toy loss", fixed={"margin": 0.1})


def test_defaults_are_overridable_and_config_pairs_give_every_argument():
    assert build(TABLE, "metric", {}, "toy loss", defaults={"margin": 0.4, "embedding_dim": 8}).margin == 0.4
    assert build(TABLE, "metric", {"margin": 0.6}, "toy loss", defaults={"margin": 0.4}).margin == 0.6
    models = {"small": (Net, {"width": 4, "depth": 2}), "deep": (Net, {"width": 4, "depth": 9})}
    net = build(models, "deep", {"width": 16}, "toy model")
    assert (net.width, net.depth) == (16, 9)
    assert (accepted_kwargs(Net) == ["width", "depth"]
            and accepted_kwargs(Head, ("margin",)) == ["embedding_dim", "num_classes"])
    with pytest.raises(InputError, match=r"unknown keyword 'height' for toy model small \(valid: width, depth\)"):
        build(models, "small", {"height": 1}, "toy model")


def test_each_model_config_is_its_one_defaults_source():
    """A model's CONFIG names every constructor argument and the constructor defaults none of them, so the
    defaults live in one place and a stale CONFIG key fails here instead of being dropped."""
    import inspect

    import asv
    import cm
    for table in (asv.MODELS, cm.MODELS):
        for arch, (cls, config) in table.items():
            parameters = inspect.signature(cls).parameters.values()
            assert set(config) == {p.name for p in parameters}, arch
            assert all(p.default is inspect.Parameter.empty for p in parameters), arch
