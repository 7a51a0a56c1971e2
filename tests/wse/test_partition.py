"""partition_layers is optimal: brute force over every contiguous partition finds no smaller bottleneck."""

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from wse.errors import PlanError
from wse.partition import bottleneck, partition_layers


def brute_force(costs, n_stages, memory=None, capacity=None):
    n, best = len(costs), None
    for cuts in itertools.combinations(range(1, n), n_stages - 1):
        bounds = list(zip((0,) + cuts, cuts + (n,)))
        if memory is not None and any(sum(memory[a:b]) > capacity for a, b in bounds):
            continue
        value = max(sum(costs[a:b]) for a, b in bounds)
        best = value if best is None else min(best, value)
    return best


@settings(max_examples=150, deadline=None)
@given(costs=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=8), data=st.data())
def test_optimal_against_brute_force(costs, data):
    n_stages = data.draw(st.integers(1, len(costs)))
    with_memory = data.draw(st.booleans())
    memory = data.draw(st.lists(st.integers(0, 50), min_size=len(costs), max_size=len(costs))) if with_memory else None
    capacity = data.draw(st.integers(0, 150)) if with_memory else None
    expected = brute_force(costs, n_stages, memory, capacity)
    if expected is None:
        with pytest.raises(PlanError):
            partition_layers(costs, n_stages, memory, capacity)
        return
    stages = partition_layers(costs, n_stages, memory, capacity)
    assert len(stages) == n_stages
    assert [a for a, _ in stages] == [0] + [b + 1 for _, b in stages[:-1]]  # contiguous, in order
    assert stages[-1][1] == len(costs) - 1 and all(b >= a for a, b in stages)  # all placed, none empty
    if memory is not None:
        assert all(sum(memory[a:b + 1]) <= capacity for a, b in stages)
    assert bottleneck(costs, stages) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_fewer_layers_than_stages_leaves_trailing_stages_empty():
    assert partition_layers([1.0, 2.0], 4) == [(0, 0), (1, 1), (2, 1), (2, 1)]


def test_balanced_example_and_errors():
    assert partition_layers([1, 1, 1, 1, 1, 1, 1, 1], 4) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert partition_layers([5, 1, 1, 1, 1, 5], 3) == [(0, 0), (1, 4), (5, 5)]
    with pytest.raises(PlanError, match="layer 1 alone needs"):
        partition_layers([1, 1], 2, memory=[1, 9], capacity=5)
    with pytest.raises(PlanError, match="do not fit in 2 stages"):
        partition_layers([1, 1, 1], 2, memory=[3, 3, 3], capacity=5)
