"""What every stage of a round reads from the campaign's records in MongoDB.

The campaign's validated configuration, and the converged calculations that count as
evidence of (in)stability; round 0 (the seed round) is the campaign's reference hull.
The screen records why it picked each candidate (``Candidate.selected_as``, one of
:data:`SELECTION_KINDS`); the hull stage counts hits per kind.
"""

from __future__ import annotations

from hullhunter.campaign_config import CampaignConfig
from hullhunter.documents import Calculation, Campaign

SEED_ROUND = 0

SEED = "seed"  # round 0: every seed crystal is relaxed
SCREENED = "screened"  # passed the structural model's filter, best first
EXPLORATION = "exploration"  # a uniform random draw from the same pool: the baseline
COMPOSITIONAL = "compositional"  # an AIRSS structure, best of its composition
SELECTION_KINDS = (SEED, SCREENED, EXPLORATION, COMPOSITIONAL)


def load_campaign(name: str) -> tuple[Campaign, CampaignConfig]:
    """The campaign document and its validated configuration."""
    campaign = Campaign.objects(name=name).first()
    if campaign is None:
        raise ValueError(f"no campaign named '{name}': submit it first")
    return campaign, CampaignConfig.model_validate(campaign.config)


def usable_calculations(name: str, up_to_round: int | None = None) -> list[Calculation]:
    """Converged calculations, oldest round first: the only evidence of (in)stability."""
    query = {"campaign": name, "state": "completed", "energy_per_atom__ne": None}
    if up_to_round is not None:
        query["round__lte"] = up_to_round
    return list(Calculation.objects(**query).order_by("round", "candidate_id"))
