"""The campaign file: one YAML document that says what a campaign explores and how.

Validated before anything is submitted; unknown or duplicate keys, values of the wrong type
(no coercion: ``rounds: true`` is refused, not read as 1), values out of bounds, seeds that
do not exist, impossible element sets and oracles that are not installed are rejected with
one line naming the file, the key (or line) and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pymatgen.core.periodic_table import Element

from hullhunter.generators.registry import GENERATORS, GeneratorSettings, generator_settings

if TYPE_CHECKING:
    from pymatgen.core import Structure


class CampaignConfigError(ValueError):
    """The campaign file cannot be used as written."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChemicalSpace(_Strict):
    """Which elements a campaign may combine: a list of elements or of chemical systems."""

    elements: list[str] = Field(default_factory=list)
    systems: list[str] = Field(default_factory=list)
    max_elements: int = Field(3, ge=1, le=6, description="most elements in one candidate")
    max_atoms: int | None = Field(
        None,
        ge=1,
        description="most atoms per cell of a seed or candidate (a DFT campaign on a laptop "
        "keeps cells small); none: no limit",
    )

    @field_validator("elements")
    @classmethod
    def _known_elements(cls, value: list[str]) -> list[str]:
        unknown = [symbol for symbol in value if not Element.is_valid_symbol(symbol)]
        if unknown:
            raise ValueError(f"unknown element symbol(s) {unknown}")
        return sorted(set(value))

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, value: list[str]) -> list[str]:
        systems = []
        for system in value:
            symbols = system.split("-")
            unknown = [symbol for symbol in symbols if not Element.is_valid_symbol(symbol)]
            if unknown:
                raise ValueError(f"system '{system}' has unknown element symbol(s) {unknown}")
            systems.append("-".join(sorted(set(symbols))))
        return sorted(set(systems))

    @model_validator(mode="after")
    def _not_empty(self) -> ChemicalSpace:
        if not self.elements and not self.systems:
            raise ValueError("give 'elements' or 'systems' (e.g. systems: [Li-Mn-O])")
        return self

    @property
    def all_elements(self) -> list[str]:
        return sorted(set(self.elements) | {el for s in self.systems for el in s.split("-")})

    def fits(self, structure: Structure) -> bool:
        """True when ``structure`` lies inside this space and within ``max_atoms``."""
        if self.max_atoms is not None and len(structure) > self.max_atoms:
            return False
        return self.allows({element.symbol for element in structure.composition})

    def allows(self, elements: list[str] | set[str]) -> bool:
        """True when a crystal made of ``elements`` lies inside this space."""
        elements = set(elements)
        if len(elements) > self.max_elements:
            return False
        if self.systems:
            return any(elements <= set(system.split("-")) for system in self.systems)
        return elements <= set(self.elements)


class Seeds(_Strict):
    """Starting crystals: the shipped public set, or a user file/folder (CIF, pymatgen JSON)."""

    source: str = Field("builtin", description="'builtin' or a path to CIFs / JSON")
    max_seeds: int = Field(200, ge=1)
    elemental_polymorphs: int = Field(
        3, ge=1, description="lowest-energy polymorphs per element relaxed for the references"
    )


class CompositionalSettings(_Strict):
    """The compositional pipeline: formulas -> composition model -> AIRSS structures."""

    max_atoms: int = Field(12, ge=2, description="most atoms per formula unit cell")
    max_formulas: int = Field(20, ge=1, description="formulas sent to AIRSS per round")
    structures_per_formula: int = Field(10, ge=1, description="AIRSS structures (GNoME: 100)")


def generator_sections(data: Any) -> dict[str, GeneratorSettings]:
    """Each named section validated by its registered generator; the others at defaults."""
    data = dict(data or {})
    if "compositional" in data and "compositional" not in GENERATORS:
        raise ValueError(
            "'compositional' is a pipeline: its settings go in the top-level "
            "'compositional:' section"
        )
    sections: dict[str, GeneratorSettings] = {}
    problems = []
    for name, section in data.items():
        try:
            sections[name] = (
                section
                if isinstance(section, GeneratorSettings)
                else generator_settings(name).model_validate(section or {})
            )
        except ValidationError as exc:  # keep the section's name in each error's key
            problems += [
                {key: error[key] for key in ("type", "input", "ctx") if key in error}
                | {"loc": (name, *error["loc"])}
                for error in exc.errors()
            ]
    if problems:
        raise ValidationError.from_exception_data("generators", problems)
    for name, settings in GENERATORS.items():
        sections.setdefault(name, settings())
    return sections


class Screening(_Strict):
    """How candidates are chosen for the oracle (GNoME: 50 meV/atom, one per composition)."""

    top_k: int = Field(50, ge=1, description="candidates sent to the oracle per round")
    max_decomposition_energy: float = Field(
        0.05, ge=-1.0, le=10.0, description="eV/atom, predicted (GNoME: 0.05)"
    )
    one_per_composition: bool = True
    exploration_fraction: float = Field(0.1, ge=0, le=1, description="share picked at random")
    tta: bool = True
    chunk_size: int = Field(
        2000, ge=1, description="candidates read, scored and written at a time (bounds memory)"
    )
    shard_size: int = Field(
        50_000, ge=1, description="a larger pool is scored by one job per shard of this size"
    )


class ModelSettings(_Strict):
    """Screening networks: size, ensemble, training, and the prior round 0 starts from."""

    preset: Literal["small", "gnome"] = "small"
    n_models: int = Field(3, ge=1, le=20)
    epochs: int = Field(200, ge=1)
    seed: int = 0
    prior: str = Field(
        "builtin",
        min_length=1,
        description="'builtin' (the shipped CHGNet-labelled prior, used where it fits: the "
        "small preset with the chgnet, vasp or cp2k oracle; fine-tuned on the campaign's seeds "
        "first), 'none' (train from scratch), or a "
        "folder made by `hullhunter models pretrain` (refused if it does not fit)",
    )
    learn_generated: bool = Field(
        True,
        description="also train on each relaxed candidate as generated, labelled with the "
        "energy it relaxed to (the screen predicts that energy from that structure)",
    )


def oracle_section(data: Any) -> Any:
    """The ``oracle:`` section, validated by the registered oracle it names.

    The oracle list lives with the oracles (:mod:`hullhunter.workflows.oracles.registry`);
    it is imported here, on first use, so reading settings never loads the oracles.
    """
    from hullhunter.workflows.oracles.registry import oracle_section as validate

    return validate(data)


class Budget(_Strict):
    rounds: int = Field(3, ge=1, description="active-learning rounds after the seed round")
    max_oracle_calls: int = Field(1000, ge=1)
    target_new_stable: int | None = Field(None, ge=1, description="stop early at this many")


class Workers(_Strict):
    """FireWorks categories jobs are routed to, and how far a round's generation fans out."""

    cpu_category: str = "cpu"
    gpu_category: str | None = Field(None, description="training and screening go here if set")
    generation_shards: int = Field(
        1,
        ge=1,
        description="a round's generation split by formula into this many jobs (cpu workers),"
        " each with its share of every generator's limit",
    )


class CampaignConfig(_Strict):
    """Everything one campaign needs; the whole file is stored with the campaign."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    pipelines: list[Literal["structural", "compositional"]] = Field(
        default_factory=lambda: ["structural"], min_length=1
    )
    chemical_space: ChemicalSpace
    seeds: Seeds = Field(default_factory=Seeds)
    generators: dict[str, SerializeAsAny[GeneratorSettings]] = Field(
        default_factory=lambda: generator_sections({})
    )
    compositional: CompositionalSettings = Field(default_factory=CompositionalSettings)
    screening: Screening = Field(default_factory=Screening)
    model: ModelSettings = Field(default_factory=ModelSettings)
    oracle: SerializeAsAny[Any] = Field(default_factory=lambda: oracle_section({}))
    budget: Budget = Field(default_factory=Budget)
    workers: Workers = Field(default_factory=Workers)

    @field_validator("generators", mode="before")
    @classmethod
    def _generators(cls, value: Any) -> dict[str, GeneratorSettings]:
        return generator_sections(value)

    @field_validator("oracle", mode="before")
    @classmethod
    def _oracle(cls, value: Any) -> Any:
        return oracle_section(value)

    @model_validator(mode="after")
    def _makes_candidates(self) -> CampaignConfig:
        working = [n for n, s in self.generators.items() if s.enabled and s.limit > 0]
        if "compositional" not in self.pipelines and not working:
            raise ValueError(
                "generators: every generator is disabled or has limit 0, so no pipeline "
                "would make candidates: give one a limit above 0, or add the compositional "
                "pipeline"
            )
        return self


def parse_config(data: dict, origin: str = "campaign file") -> CampaignConfig:
    """Validate a campaign mapping, reporting each problem as 'key: what is wrong'."""
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(
                str(part) for part in error["loc"] if not str(part).startswith("function")
            )
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key (check the spelling against examples/)"
            problems.append(f"{key}: {message}" if key else message)
        raise CampaignConfigError(f"{origin}: " + "; ".join(problems)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the
    last silently, so half a section would be lost without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path | str) -> CampaignConfig:
    """Read and validate a campaign YAML file; a seeds path is made absolute (relative to
    the file) and must exist, since workers read it from other folders."""
    path = Path(path)
    if not path.is_file():
        raise CampaignConfigError(f"campaign file {path} does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CampaignConfigError(f"{where}: not valid YAML: {problem}") from None
    except UnicodeDecodeError as exc:
        raise CampaignConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    if not isinstance(data, dict):
        raise CampaignConfigError(f"{path}: expected a mapping of campaign settings")
    config = parse_config(data, origin=str(path))
    source = config.seeds.source
    if source != "builtin":
        seeds = (path.parent / Path(source).expanduser()).resolve()
        if not seeds.exists():
            raise CampaignConfigError(
                f"{path}: seeds.source: {seeds} does not exist: give a CIF/JSON file or folder "
                "(relative paths are read from the campaign file's folder), or 'builtin'"
            )
        config.seeds.source = str(seeds)
    return config
