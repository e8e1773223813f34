"""Plug-ins: an oracle and a generator registered from outside the project run a campaign.

Both live in this file and nowhere else: registering them is all it takes for the campaign
file to accept their sections and for a round to generate with the one and relax with the
other, through FireWorks on the real MongoDB.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import Field
from pymatgen.core import Structure

from hullhunter.campaign_config import parse_config
from hullhunter.documents import Calculation, Campaign, Candidate, Round
from hullhunter.generators import Candidate as GeneratedCandidate
from hullhunter.generators import (
    GenerationContext,
    GeneratorSettings,
    register_generator,
    unregister_generator,
)
from hullhunter.workflows.oracles import (
    Oracle,
    OracleContext,
    OraclePlugin,
    OracleResult,
    OracleSettings,
    register_oracle,
    unregister_oracle,
)

pytestmark = pytest.mark.slow


class PairOracle(Oracle):
    """A toy oracle: energy per atom from a fixed value per element, structure unchanged."""

    name = "pairs"

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    @property
    def version(self) -> str:
        return "toy-1"

    def relax_one(self, structure: Structure, candidate_id: str) -> OracleResult:
        energies = {"Cu": -3.7, "Ag": -2.8, "Au": -3.2}
        per_atom = sum(energies[site.specie.symbol] for site in structure) / len(structure)
        per_atom += self.offset * (len(structure.composition) - 1)
        return OracleResult(
            candidate_id=candidate_id,
            formula=structure.composition.formula,
            energy_per_atom=per_atom,
            energy=per_atom * len(structure),
            structure=structure,
            converged=True,
            n_steps=0,
            wall_time_s=0.0,
            oracle=self.name,
            oracle_version=self.version,
        )


class PairSettings(OracleSettings):
    """Campaign section of the toy oracle: one knob, the mixing energy of compounds."""

    offset: float = Field(-0.05, description="eV/atom added per extra element")

    def oracle_kwargs(self, context: OracleContext) -> dict:
        return {"offset": self.offset}


class SwapSettings(GeneratorSettings):
    """A toy generator: each binary parent with its two elements' sites swapped."""

    def generate(self, context: GenerationContext) -> Iterator[GeneratedCandidate]:
        made = 0
        for parent in context.parents:
            elements = sorted({site.specie.symbol for site in parent.structure})
            if len(elements) != 2:
                continue
            swapped = parent.structure.copy()
            swapped.replace_species({elements[0]: elements[1], elements[1]: elements[0]})
            if swapped.composition.reduced_formula in context.known_formulas:
                continue
            yield GeneratedCandidate(swapped, "swap", parent.id, {"swapped": elements})
            made += 1
            if made >= self.limit:
                return


@pytest.fixture
def toy_plugins():
    register_oracle(OraclePlugin("pairs", PairOracle, PairSettings))
    register_generator("swap", SwapSettings)
    yield
    unregister_oracle("pairs")
    unregister_generator("swap")


def test_registered_sections_are_validated(toy_plugins):
    base = {"name": "toy", "chemical_space": {"systems": ["Ag-Au-Cu"]}}
    config = parse_config({**base, "oracle": {"name": "pairs", "offset": -0.1}})
    assert isinstance(config.oracle, PairSettings) and config.oracle.offset == -0.1
    assert parse_config(config.model_dump(mode="json")) == config  # as stored in MongoDB
    assert isinstance(config.generators["swap"], SwapSettings)
    with pytest.raises(ValueError, match=r"oracle\.offsett: unknown key"):
        parse_config({**base, "oracle": {"name": "pairs", "offsett": 1}})
    with pytest.raises(ValueError, match=r"fmax only apply to the chgnet oracle, not 'pairs'"):
        parse_config({**base, "oracle": {"name": "pairs", "fmax": 0.1}})


def test_one_round_campaign_with_a_toy_oracle_and_generator(toy_plugins, database, monkeypatch):
    from hullhunter.workflows.campaign import run_local, submit_campaign

    monkeypatch.setenv("HULLHUNTER_TORCH_THREADS", "1")
    config = parse_config(
        {
            "name": "toy",
            "chemical_space": {"systems": ["Ag-Au-Cu"]},
            "seeds": {"max_seeds": 8, "elemental_polymorphs": 1},
            "generators": {
                "swap": {"limit": 10},
                "substitution": {"enabled": False},
                "saps": {"enabled": False},
                "prototypes": {"enabled": False},
            },
            "screening": {"top_k": 3, "max_decomposition_energy": 10.0, "tta": False},
            "model": {"n_models": 2, "epochs": 5},
            "oracle": {"name": "pairs", "offset": -0.05, "batch_size": 2},
            "budget": {"rounds": 1},
        }
    )
    assert submit_campaign(config)[0]
    states = run_local("toy")
    assert dict(states) == {"COMPLETED": sum(states.values())}, states

    assert Campaign.objects.get(name="toy").status == "completed"
    assert [r.number for r in Round.objects(campaign="toy").order_by("number")] == [0, 1]
    swapped = Candidate.objects(campaign="toy", round=1)
    assert swapped.count() >= 1
    assert set(swapped.distinct("generator")) == {"swap"}
    relaxed = Calculation.objects(campaign="toy", round=1)
    assert 1 <= relaxed.count() <= 3
    assert set(Calculation.objects(campaign="toy").distinct("oracle")) == {"pairs"}
    assert set(relaxed.distinct("oracle_version")) == {"toy-1"}
