"""Each broken rule (a field of nodes.core.election.Broken, switched on alone) must make the
simulation fail within its seed budget, with the violation that rule exists to prevent.
The seed that first catches each today is noted; the budget leaves room for changes to the
simulation's randomness. COST: about 5 s in all."""
from __future__ import annotations

import pytest

from nodes.core.election import Broken
from tests.sim.runner import MUTATIONS, config, run_seeds

# rule broken -> (seed budget, what the checker must say)
EXPECTED = {
    "second_vote": (300, "two masters in epoch"),
    "vote_less_up_to_date": (300, "acknowledged with w=majority"),
    "deposed_stays_master": (300, "two masters in epoch"),
    "long_lease": (300, "leases overlap"),
    "vote_despite_master": (2000, "leases overlap"),
}


def test_every_mutation_has_a_test() -> None:
    assert set(EXPECTED) == set(MUTATIONS)


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("rule", MUTATIONS)
def test_simulation_catches(rule: str, nodes: int) -> None:
    budget, says = EXPECTED[rule]
    failure, ran, _ = run_seeds(range(budget), config(nodes, Broken(**{rule: True})))
    assert failure is not None, f"{rule} went unnoticed for {budget} seeds of {nodes} nodes"
    assert says in failure, failure
    print(f"{rule}, {nodes} nodes: caught after {ran} seeds: {failure.splitlines()[0]}")


def test_the_correct_rules_pass_the_same_budget() -> None:
    """The hooks are the only difference: without them the same seeds pass."""
    failure, _, _ = run_seeds(range(300), config(3))
    assert failure is None, failure
