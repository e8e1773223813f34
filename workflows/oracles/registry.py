"""The one list of oracles: each oracle module registers itself once, here.

An :class:`OraclePlugin` names the oracle, the class (or function) that builds it, and its
section of the campaign file (a subclass of :class:`OracleSettings` that says which keys the
section takes and how they become the oracle's arguments on a worker). The campaign file,
the round's relax stage and the FireWorks worker files all read :data:`ORACLES`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hullhunter.models.prior import ORACLE_ENERGY_SCALE
from hullhunter.settings import Settings
from hullhunter.workflows.oracles.base import Oracle


@dataclass(frozen=True)
class OracleContext:
    """Where and with what one worker runs the oracle: its run folder and site settings."""

    run_dir: Path
    site: Settings

    @classmethod
    def for_round(cls, site: Settings, campaign: str, round_number: int) -> OracleContext:
        """The context of a campaign's round: its own folder under the site's run folder."""
        return cls(run_dir=site.runs_dir / campaign / f"round-{round_number}", site=site)


class OracleSettings(BaseModel):
    """The campaign file's ``oracle:`` section; each oracle's subclass adds its own keys."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = "chgnet"
    batch_size: int = Field(10, ge=1, description="candidates per relaxation job")

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        plugin = oracle_plugin(value)
        plugin.check_installed()
        return plugin.name

    def oracle_kwargs(self, context: OracleContext) -> dict[str, Any]:
        """Keyword arguments of the oracle's class for this campaign on this worker."""
        return {}


@dataclass(frozen=True)
class OraclePlugin:
    """One oracle: its name, how to build it, its campaign section and what it needs.

    ``site_settings`` names the hullhunter settings (e.g. ``vasp_cmd``) that a worker of
    this oracle may set per SLURM partition; the FireWorks files export them to jobs.
    ``energy_scale`` names the scale of its energies: results of oracles on different
    scales are never placed on one hull, and a prior from another scale must be fine-tuned.
    """

    name: str
    create: Callable[..., Oracle]
    settings: type[OracleSettings] = OracleSettings
    requires: str | None = None
    install_hint: str = ""
    site_settings: tuple[str, ...] = ()
    energy_scale: str = ORACLE_ENERGY_SCALE

    def check_installed(self) -> None:
        """Raise ValueError (one line) when the package this oracle needs is missing."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            hint = f" ({self.install_hint})" if self.install_hint else ""
            raise ValueError(f"oracle '{self.name}' needs the package '{self.requires}'{hint}")


ORACLES: dict[str, OraclePlugin] = {}


def register_oracle(plugin: OraclePlugin) -> OraclePlugin:
    """Add an oracle to the list; a second, different registration of a name is refused."""
    if plugin.name in ORACLES and ORACLES[plugin.name] != plugin:
        raise ValueError(f"an oracle named {plugin.name!r} is already registered")
    ORACLES[plugin.name] = plugin
    return plugin


def unregister_oracle(name: str) -> None:
    """Remove an oracle (tests and notebooks that registered their own)."""
    ORACLES.pop(name, None)


def oracle_plugin(name: str) -> OraclePlugin:
    """The registered oracle called ``name``; one line naming the known ones otherwise."""
    plugin = ORACLES.get(name.lower())
    if plugin is None:
        raise ValueError(f"unknown oracle {name!r}; choose one of {', '.join(sorted(ORACLES))}")
    return plugin


def energy_scale(oracle: str) -> str:
    """The scale of an oracle's energies, by name (unregistered here: says so)."""
    plugin = ORACLES.get(oracle.lower())
    return plugin.energy_scale if plugin else f"unknown (oracle {oracle!r} is not registered)"


def get_oracle(name: str, **settings: Any) -> Oracle:
    """Build the oracle called ``name`` with keyword arguments of its class.

    For example ``get_oracle("chgnet", fmax=0.05)`` or ``get_oracle("vasp", root_dir=...)``;
    an unknown keyword raises TypeError naming it.
    """
    return oracle_plugin(name).create(**settings)


def oracle_section(data: Any) -> OracleSettings:
    """Validate a campaign file's ``oracle:`` mapping against the named oracle's section.

    Keys that belong to another oracle's section are refused with a line that says which.
    """
    if isinstance(data, OracleSettings):
        return data
    data = dict(data or {})
    plugin = oracle_plugin(OracleSettings.model_validate({"name": data.get("name", "chgnet")}).name)
    own_keys = set(plugin.settings.model_fields)
    owners = {
        other.name: sorted(set(data) & set(other.settings.model_fields) - own_keys)
        for other in ORACLES.values()
    }
    owners = {name: keys for name, keys in owners.items() if keys}
    if owners:
        owner, keys = next(iter(owners.items()))
        raise ValueError(
            f"{', '.join(keys)} only apply to the {owner} oracle, not '{plugin.name}'; "
            f"remove them or set oracle.name: {owner}"
        )
    return plugin.settings.model_validate({**data, "name": plugin.name})


def build_oracle(section: OracleSettings, context: OracleContext) -> Oracle:
    """The campaign's oracle on this worker, from its validated section."""
    return oracle_plugin(section.name).create(**section.oracle_kwargs(context))
