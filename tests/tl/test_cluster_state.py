"""tl.louvain leaves global random state alone (issue 13 item 7)."""

import random
import warnings

import igraph
import numpy as np
import pytest

from madspatial.tl import _cluster as cl


class _Recorder:
    """A generator for igraph.set_random_number_generator that counts its draws."""

    def __init__(self, seed):
        self.rng, self.calls = random.Random(seed), 0

    def __getattr__(self, name):  # random, randint, getrandbits, gauss
        fn = getattr(self.rng, name)

        def call(*args):
            self.calls += 1
            return fn(*args)

        return call


def test_louvain_leaves_pythons_random_state_alone(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=30)
    random.seed(123)
    state = random.getstate()
    cl.louvain(adata, n_neighbors=10, seed=1)
    assert random.getstate() == state
    first = adata.obs["mad_louvain"].copy()
    random.seed(999)  # the caller's random state does not change the clusters
    cl.louvain(adata, n_neighbors=10, seed=1)
    np.testing.assert_array_equal(adata.obs["mad_louvain"], first)


def test_louvain_keeps_a_users_igraph_generator(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=30)
    rec = _Recorder(7)
    igraph.set_random_number_generator(rec)
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cl.louvain(adata, n_neighbors=10, seed=1)
        before = rec.calls
        igraph.Graph.Erdos_Renyi(n=30, p=0.3).community_multilevel()
        # before the fix, louvain reset igraph to the random module: no draws here
        assert rec.calls > before
        said = [x for x in w if "seed=1 does not make these clusters" in str(x.message)]
        assert [x.filename for x in said] == [__file__]
    finally:
        igraph.set_random_number_generator(random)


def test_seeded_python_random_restores_on_error():
    random.seed(5)
    state = random.getstate()
    with pytest.raises(RuntimeError, match="boom"), cl.seeded_python_random(0) as drew:
        assert not drew()
        random.random()
        assert drew()
        raise RuntimeError("boom")
    assert random.getstate() == state
