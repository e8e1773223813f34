"""The ``hullhunter`` command line: database, FireWorks configuration and campaigns.

Errors print as one line (``error: ...``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import typer
from pymongo.errors import PyMongoError
from rich import box
from rich.console import Console
from rich.table import Table

from hullhunter import __version__
from hullhunter.campaign_config import CampaignConfigError, load_config
from hullhunter.db import DatabaseError, check_connection, mask_uri, server_uri
from hullhunter.server import LocalServer, ServerError
from hullhunter.settings import SettingsError, get_settings

console = Console()

app = typer.Typer(
    help="GNoME-style materials discovery on HPC clusters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The MongoDB that holds all shared state.", no_args_is_help=True)
app.add_typer(db_app, name="db")
campaign_app = typer.Typer(help="Discovery campaigns: submit, run, inspect.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
models_app = typer.Typer(help="Screening models: the pretrained prior.", no_args_is_help=True)
app.add_typer(models_app, name="models")

_state = {"debug": False}
USER_ERRORS = (
    SettingsError,
    ServerError,
    DatabaseError,
    CampaignConfigError,
    ValueError,
    LookupError,
    OSError,
    PyMongoError,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"hullhunter {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug


@db_app.command("start")
def db_start() -> None:
    """Start the embedded MongoDB (or check the configured one answers)."""
    settings = get_settings()
    if settings.db_uri:
        check_connection(settings.db_uri, settings.db_timeout_s).close()
        console.print(f"using the configured MongoDB at {mask_uri(settings.db_uri)}")
        return
    server = LocalServer(settings.local_db_dir)
    info = server.start(port=settings.db_port)
    word = "started" if info.started else "already running"
    console.print(
        f"MongoDB {word}: {mask_uri(info.uri)} (pid {info.pid}, data in {server.data_dir}, "
        f"credentials in {server.access_file})",
        highlight=False,
    )
    if not info.user:
        console.print(
            "warning: this mongod was started without authorisation (by an older hullhunter): "
            "`hullhunter db stop` then `hullhunter db start` turns it on, keeping the data",
            highlight=False,
        )


@db_app.command("stop")
def db_stop() -> None:
    """Shut the embedded MongoDB down cleanly."""
    settings = get_settings()
    if settings.db_uri:
        raise ValueError(
            "HULLHUNTER_DB_URI is set: hullhunter does not stop a server it did not start"
        )
    stopped = LocalServer(settings.local_db_dir).stop()
    console.print("MongoDB stopped" if stopped else "MongoDB was not running")


@db_app.command("status")
def db_status() -> None:
    """Print the MongoDB version, URI and the size of hullhunter's database."""
    settings = get_settings()
    uri = server_uri(settings, start=False)
    client = check_connection(uri, settings.db_timeout_s)
    try:
        build = client.admin.command("buildInfo")
        stats = client[settings.db_name].command("dbStats")
    finally:
        client.close()
    table = Table(show_header=False, box=None)
    table.add_row("server", "embedded" if not settings.db_uri else "configured")
    table.add_row("version", f"MongoDB {build['version']}")
    table.add_row("uri", mask_uri(uri))
    table.add_row("database", settings.db_name)
    table.add_row("collections", str(stats.get("collections", 0)))
    table.add_row("size", f"{stats.get('storageSize', 0) / 1e6:.2f} MB")
    console.print(table)


@app.command("fireworks-config")
def fireworks_config(
    folder: Path | None = typer.Option(None, "--dir", help="Where to write the files."),
    category: str | None = typer.Option(None, help="FireWorks worker category (cpu, gpu)."),
    name: str | None = typer.Option(None, help="FireWorks worker name."),
    queue: str | None = typer.Option(
        None, help="SLURM partition for qlaunch jobs (default: the cluster's default, sinfo)."
    ),
    walltime: str = typer.Option("24:00:00", help="SLURM walltime, HH:MM:SS."),
    nodes: int = typer.Option(1, help="Nodes per SLURM job."),
    ntasks: int = typer.Option(1, help="MPI ranks per SLURM job (VASP ranks)."),
    cpus_per_task: int = typer.Option(1, help="Cores per rank."),
    account: str | None = typer.Option(None, help="SLURM account, if the site needs one."),
    singleshot: bool = typer.Option(
        False, "--singleshot", help="One firework per SLURM job (default: pilot jobs)."
    ),
) -> None:
    """Write my_launchpad.yaml, my_fworker.yaml, my_qadapter.yaml and jobflow.yaml.

    SLURM jobs are pilots by default: each runs fireworks back to back (rlaunch rapidfire)
    and starts none in the last tenth of its walltime.
    """
    from hullhunter.fireworks_config import (
        QueueSettings,
        check_association,
        get_launchpad,
        site_queue,
        write_config,
    )

    settings = get_settings()
    queue, chosen = site_queue(queue)  # checked before anything is written
    notes = [check_association("account", account)]
    slurm = QueueSettings(
        queue=queue, walltime=walltime, nodes=nodes, ntasks=ntasks,
        cpus_per_task=cpus_per_task, account=account,
        rocket_mode="singleshot" if singleshot else None,
    )  # fmt: skip
    paths = write_config(settings, folder=folder, category=category, name=name, queue=slurm)
    get_launchpad(settings)  # initialise the LaunchPad of a new database for lpad/qlaunch
    for role, path in paths.items():
        console.print(f"{role:>10}: {path}")
    console.print(f"SLURM partition: {queue} ({chosen})", highlight=False)
    for note in filter(None, notes):
        console.print(f"note: {note}", highlight=False)
    console.print("\nFor lpad, rlaunch, qlaunch and jobflow in this shell:")
    console.print(f"export FW_CONFIG_FILE={paths['fw_config']}", highlight=False)
    console.print(f"export JOBFLOW_CONFIG_FILE={paths['jobflow']}", highlight=False)
    if settings.db_uri and "HULLHUNTER_DB_URI" in os.environ:
        console.print(
            f"note: SLURM jobs read db_uri from {settings.home / 'config.yaml'}, not from this "
            "shell's HULLHUNTER_DB_URI: put it there (on a shared file system) for qlaunch.",
            highlight=False,
        )


@campaign_app.command("submit")
def campaign_submit(file: Path = typer.Argument(..., help="Campaign YAML file.")) -> None:
    """Validate a campaign file and add its seed round to the LaunchPad."""
    from hullhunter.workflows.campaign import submit_campaign

    config = load_config(file)
    _, message = submit_campaign(config)
    console.print(message)


@campaign_app.command("run")
def campaign_run(
    file: Path = typer.Argument(..., help="Campaign YAML file."),
    report: Path | None = typer.Option(None, help="Report folder (default: ./reports/NAME)."),
    rerun_lost: bool = typer.Option(
        False, "--rerun-lost", help="Rerun jobs whose worker died (finished work is kept)."
    ),
) -> None:
    """Submit (or continue) a campaign, run its jobs here until done, and write the report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hullhunter.fireworks_config import write_config
    from hullhunter.workflows.campaign import lost_jobs, run_local, submit_campaign
    from hullhunter.workflows.report import write_report

    config = load_config(file)
    _, message = submit_campaign(config)
    console.print(message)
    # so that lpad and rlaunch can inspect or take over this campaign; the site's own
    # files (queue, account, category from `hullhunter fireworks-config`) are kept
    paths = write_config(keep_site=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(config.name, total=None)

        def show(states) -> None:
            done = states.get("COMPLETED", 0)
            progress.update(task, completed=done, total=sum(states.values()))

        final = run_local(config.name, on_progress=show)
        lost = lost_jobs(config.name, rerun=rerun_lost)
        if lost and rerun_lost:
            console.print(f"rerunning {len(lost)} lost job(s): {lost}")
            final = run_local(config.name, on_progress=show)
            lost = lost_jobs(config.name)
    if lost:
        raise ValueError(
            f"{len(lost)} job(s) of {config.name} were RUNNING in a worker that died (fw ids "
            f"{lost[:10]}): `hullhunter campaign run {file} --rerun-lost` reruns them, "
            "keeping every candidate already relaxed"
        )
    if final.get("FIZZLED"):
        lpad = f"lpad -l {paths['launchpad']}"
        raise ValueError(
            f"{final['FIZZLED']} job(s) failed: see `{lpad} get_fws -s FIZZLED -d more` and "
            f"{get_settings().runs_dir / config.name / 'worker.log'}; fix the cause, then "
            f"`{lpad} rerun_fws -s FIZZLED` and run this command again"
        )
    unfinished = sum(final.get(state, 0) for state in ("RUNNING", "RESERVED", "READY", "WAITING"))
    if unfinished:
        _print_status(config.name)
        console.print(
            f"{unfinished} job(s) not finished: other workers are running them (or the "
            f"campaign is paused); `hullhunter campaign report {config.name}` once they are done"
        )
        return
    folder = report or Path("reports") / config.name
    summary = write_report(config.name, folder)
    _print_status(config.name)
    console.print(f"report: {summary}")
    _say_where_the_database_runs()


def _say_where_the_database_runs() -> None:
    """After a campaign run: whether the embedded MongoDB keeps running, and how to stop it."""
    settings = get_settings()
    if settings.db_uri:
        return
    info = LocalServer(settings.local_db_dir).running()
    if info is not None:
        console.print(
            f"the embedded MongoDB keeps running (pid {info.pid}, {settings.local_db_dir}) so "
            "that analysts, lpad and workers can use the results: `hullhunter db stop` stops it"
        )


def _cell(value: object) -> str:
    return "–" if value is None else str(value)


STATUS_LEGEND = (
    "new: candidates generated this round (new to the campaign) · relaxed: oracle results · "
    "hits: relaxed on or below the hull as it stood · screened / explore: hits / picks of the "
    "model's picks and of the random exploration picks (the unscreened baseline) · "
    "MAE: model error on the round's relaxations, meV/atom · hull: materials on the hull now"
)


def _print_status(name: str) -> None:
    from hullhunter.workflows.campaign import status
    from hullhunter.workflows.round.records import EXPLORATION, SCREENED

    state = status(name)
    console.print(f"campaign {name}: {state['status']}, round {state['current_round']}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("round", "status", "new", "relaxed", "hits", "screened", "explore"):
        table.add_column(column, justify="left" if column == "status" else "right")
    table.add_column("MAE", justify="right")
    table.add_column("hull", justify="right")
    for row in state["rounds"]:
        mae = row["model_mae"]
        table.add_row(
            str(row["round"]), row["status"], _cell(row["generated"]), _cell(row["relaxed"]),
            _cell(row["hits"]), _picks(row["selection"], SCREENED),
            _picks(row["selection"], EXPLORATION),
            "–" if mae is None else f"{1000 * mae:.0f}", _cell(row["on_hull_total"]),
        )  # fmt: skip
    console.print(table)
    console.print(STATUS_LEGEND, style="dim")
    console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(state["jobs"].items())))
    if state["lost_jobs"]:
        console.print(
            f"lost: {len(state['lost_jobs'])} RUNNING job(s) whose worker died or stopped "
            f"pinging (fw ids {state['lost_jobs'][:10]}): `hullhunter campaign rerun-lost {name}`"
        )
    console.print(
        "candidates: " + ", ".join(f"{k} {v}" for k, v in sorted(state["candidates"].items()))
    )


def _picks(selection: dict, kind: str) -> str:
    """``hits/picks`` of one selection kind, or a dash when the round had none."""
    counts = selection.get(kind) or {}
    if not counts.get("accepted"):
        return "–"
    return f"{counts.get('hits', 0)}/{counts['accepted']}"


@campaign_app.command("status")
def campaign_status(name: str = typer.Argument(..., help="Campaign name.")) -> None:
    """Rounds, job states from the LaunchPad, candidate counts and hit rate so far."""
    _print_status(name)


@campaign_app.command("rerun-lost")
def campaign_rerun_lost(
    name: str = typer.Argument(..., help="Campaign name."),
    expiration: int | None = typer.Option(
        None, help="Seconds without a ping before a job is lost (default 300; jobs ping each 60)."
    ),
) -> None:
    """Put jobs whose worker died back to READY (SLURM jobs cancelled, timed out or lost,
    found from squeue at once; other workers after the ping window); finished work is kept."""
    from hullhunter.fireworks_config import LOST_AFTER_S
    from hullhunter.workflows.campaign import lost_jobs

    expiration = expiration or LOST_AFTER_S
    if shutil.which("squeue") is None:
        console.print(
            f"no SLURM here (squeue): lost jobs are those silent for {expiration} s "
            "(the ping window) and dead `campaign run` workers of this host"
        )
    rerun = lost_jobs(name, expiration_s=expiration, rerun=True)
    console.print(f"{len(rerun)} lost job(s) of {name} set to rerun: {rerun}")


@campaign_app.command("report")
def campaign_report(
    name: str = typer.Argument(..., help="Campaign name."),
    folder: Path | None = typer.Option(None, "--dir", help="Default: ./reports/NAME."),
) -> None:
    """Write the plots and a Markdown summary of the campaign."""
    from hullhunter.workflows.report import write_report

    console.print(f"report: {write_report(name, folder or Path('reports') / name)}")


@campaign_app.command("screen")
def campaign_screen(
    name: str = typer.Argument(..., help="Campaign name."),
    screen: str = typer.Argument(..., help="layered, li_ion_conductor_candidates or family_view."),
    chemsys: str | None = typer.Option(None, help="Only materials inside this system."),
) -> None:
    """Run an application screen over the campaign's materials and save what passed."""
    from hullhunter.db import connect
    from hullhunter.workflows.applications import run_screen

    connect()
    records = run_screen(screen, name, chemsys=chemsys, save=True)
    passed = [record for record in records if record.passed]
    table = Table("material", "formula", "why")
    for record in passed:
        table.add_row(record.material_id, record.formula, "; ".join(record.reasons))
    console.print(table)
    console.print(f"{screen}: {len(passed)} of {len(records)} materials passed (saved)")


@campaign_app.command("export")
def campaign_export(
    name: str = typer.Argument(..., help="Campaign name."),
    path: Path = typer.Argument(..., help="File to write: .csv, .json, or any name with --format."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv, json (rows for pandas) or entries (pymatgen JSON)."
    ),
    chemsys: str | None = typer.Option(None, help="Only materials inside this system."),
    stable: bool = typer.Option(False, "--stable", help="Only materials on the hull."),
) -> None:
    """Write the campaign's materials (every analyst field) for pandas or pymatgen."""
    from hullhunter.db import connect
    from hullhunter.export import export_materials

    connect()
    count = export_materials(name, path, fmt, chemsys=chemsys, stable_only=stable)
    console.print(f"wrote {count} materials of {name} to {path}")


@campaign_app.command("finetune")
def campaign_finetune(
    name: str = typer.Argument(..., help="Campaign name."),
    frames: int = typer.Option(1024, help="Frames sampled (half first steps, as GNoME)."),
    epochs: int = typer.Option(20, help="Training epochs."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cuda."),
    out: Path | None = typer.Option(None, help="Also write the weights here (for MD)."),
) -> None:
    """Fine-tune CHGNet on the campaign's relaxation trajectories; store it as a potential."""
    from hullhunter.db import connect
    from hullhunter.workflows.finetune import format_comparison
    from hullhunter.workflows.learned_potential import finetune_campaign

    connect()
    report = finetune_campaign(
        name, n_frames=frames, epochs=epochs, device=device, save_path=out and str(out)
    )
    console.print(
        f"potential version {report['version']}: {report['n_train_trajectories']} train / "
        f"{report['n_heldout_trajectories']} held-out trajectories (composition-hash split)"
    )
    if report["skipped_trajectories"]:
        console.print(
            f"skipped {report['skipped_frames']} frames of {report['skipped_trajectories']} "
            "trajectories whose last frame is not their calculation's energy"
        )
    console.print(format_comparison(report["comparison"]))


@campaign_app.command("pause")
def campaign_pause(name: str = typer.Argument(..., help="Campaign name.")) -> None:
    """Pause the campaign's unfinished jobs (running ones finish)."""
    from hullhunter.workflows.campaign import pause

    console.print(f"paused {pause(name)} workflow(s) of {name}")


@campaign_app.command("resume")
def campaign_resume(name: str = typer.Argument(..., help="Campaign name.")) -> None:
    """Resume a paused campaign, submitting the next round if it stopped between rounds."""
    from hullhunter.workflows.campaign import resume

    resumed, submitted = resume(name)
    rounds = f"; submitted round(s) {submitted}" if submitted else ""
    console.print(f"resumed {resumed} job(s) of {name}{rounds}")


@campaign_app.command("cancel")
def campaign_cancel(name: str = typer.Argument(..., help="Campaign name.")) -> None:
    """Defuse the campaign's unfinished jobs; results already stored stay."""
    from hullhunter.workflows.campaign import cancel

    console.print(f"cancelled {name} ({cancel(name)} workflow(s) defused)")


@models_app.command("relax-generated")
def models_relax_generated(
    out: Path = typer.Option(..., help="Prior folder; the relaxations go to generated.json.gz."),
    systems: str | None = typer.Option(
        None, help="Comma-separated systems, e.g. Li-Fe-O,K-Al-F (default: 14 without Mn or Co)."
    ),
    per_generator: int = typer.Option(6, min=1, help="Candidates relaxed per generator, system."),
    fmax: float = typer.Option(0.1, help="CHGNet relaxation: force threshold (eV/Å)."),
    max_steps: int = typer.Option(200, help="CHGNet relaxation: most optimiser steps."),
    threads: int = typer.Option(1, help="Torch threads."),
) -> None:
    """Relax a sample of generated candidates of other systems with CHGNet, for the prior.

    A rerun goes on from the first system not in the file yet; ``pretrain --generated``
    learns from them.
    """
    from hullhunter.workflows.oracles import get_oracle
    from hullhunter.workflows.pretrain_generated import (
        DEFAULT_SYSTEMS,
        GENERATED_FILE,
        relax_generated,
        summary,
    )

    names = [name.strip() for name in systems.split(",")] if systems else list(DEFAULT_SYSTEMS)
    for name in names:
        if len(name.split("-")) < 2 or not all(name.split("-")):
            raise ValueError(f"system {name!r} needs two or more elements joined by '-'")
    oracle = get_oracle("chgnet", fmax=fmax, max_steps=max_steps, threads=threads)
    out.mkdir(parents=True, exist_ok=True)
    payload = relax_generated(
        out / GENERATED_FILE, oracle, names, per_generator, report=console.print
    )
    console.print(f"{summary(payload)['relaxed']} relaxed candidates in {out / GENERATED_FILE}")


@models_app.command("pretrain")
def models_pretrain(
    out: Path = typer.Option(..., help="Folder for the prior: weights, card.json, labels."),
    structures: Path | None = typer.Option(
        None, help="Extra CIF/POSCAR/JSON file or folder (JSON may carry energies)."
    ),
    shipped: bool = typer.Option(True, help="Include the shipped seeds (MP, AFLOW, pymatgen)."),
    oracle: str = typer.Option(
        "chgnet", help="Labels: chgnet (single points), data (energies given), or an oracle."
    ),
    data_oracle: str = typer.Option("data", help="With --oracle data: what computed them."),
    energy_scale: str = typer.Option(
        "MP2020-compatible", help="With --oracle data: the energies' scale."
    ),
    max_atoms: int = typer.Option(80, help="Skip larger cells."),
    preset: str = typer.Option("small", help="Network preset: small (CPU) or gnome."),
    n_models: int = typer.Option(3, help="Ensemble members."),
    epochs: int | None = typer.Option(None, help="Training epochs (default: the preset's)."),
    loss: str = typer.Option(
        "huber",
        help="Training loss: huber (default: the few elemental polymorphs labelled +2 to +5 "
        "eV/atom do not dominate it) or mse.",
    ),
    compositional: bool = typer.Option(True, help="Also train the compositional prior."),
    threads: int = typer.Option(1, help="Torch threads."),
    reuse_labels: bool = typer.Option(False, help="Use OUT/labels.json.gz if it exists."),
    labels_only: bool = typer.Option(False, help="Label and stop (train later)."),
    generated: bool = typer.Option(
        True,
        help="Also learn from OUT/generated.json.gz when it exists (models relax-generated): "
        "generated candidates, as generated and as relaxed, with their relaxed energies.",
    ),
) -> None:
    """Label known crystals and train the screening prior that campaigns start from."""
    from hullhunter import models
    from hullhunter.workflows import pretrain as pt
    from hullhunter.workflows import pretrain_generated as pg

    if preset not in ("small", "gnome"):
        raise ValueError(f"unknown preset {preset!r}; use small or gnome")
    if loss not in ("huber", "mse"):
        raise ValueError(f"unknown loss {loss!r}; use huber or mse")
    samples, unreadable = pt.gather_samples(shipped, structures, max_atoms)
    labels_path = out / pt.LABELS_FILE
    if reuse_labels and labels_path.is_file():
        labelled = pt.load_labels(labels_path, samples)
        console.print(f"reused {len(labelled.samples)} labels from {labels_path}")
    else:
        if oracle == pt.DATA_ORACLE:
            labelled = pt.label_from_data(samples, data_oracle, energy_scale)
        else:
            labelled = pt.label(samples, oracle, threads=threads)
        labelled.skipped = unreadable + labelled.skipped
        out.mkdir(parents=True, exist_ok=True)
        pt.save_labels(labelled, labels_path)
    _print_skipped(labelled.skipped)
    console.print(f"labelled {len(labelled.samples)} structures ({labelled.method}, {oracle})")
    if labels_only:
        return
    generated_path = out / pg.GENERATED_FILE
    relaxations = pg.read_generated(generated_path) if generated else None
    if relaxations is not None and relaxations["records"]:
        extra = pg.generated_samples(relaxations)
        labelled.samples += extra
        console.print(f"learning also from {len(extra)} generated structures ({generated_path})")
    else:
        relaxations = None
    overrides = {"torch_threads": threads, "progress": True, "loss": loss}
    if epochs is not None:
        overrides["epochs"] = epochs
    config = (
        models.GNoMEConfig.small(**overrides)
        if preset == "small"
        else models.GNoMEConfig(**overrides)
    )
    card = pt.pretrain(
        labelled,
        out,
        config,
        n_models=n_models,
        compositional=compositional,
        name=out.name,
        command="hullhunter models pretrain " + " ".join(sys.argv[3:]),
        max_atoms=max_atoms,
        generated=None if relaxations is None else pg.summary(relaxations),
    )
    figures = card["metrics"]["structural"]
    console.print(
        f"prior written to {out}: {card['counts']['labelled']} structures, held-out MAE "
        f"{1000 * figures.get('test_mae', float('nan')):.0f} meV/atom, stability F1 "
        f"{figures['stability'].get('f1', float('nan')):.2f}"
    )


def _print_skipped(skipped: list) -> None:
    """One line per skipped structure (the first 20), then the counts by reason."""
    from hullhunter.workflows.pretrain import reason_counts

    for item in skipped[:20]:
        console.print(f"skipped {item.id} ({item.source}): {item.reason}", highlight=False)
    if len(skipped) > 20:
        console.print(f"... and {len(skipped) - 20} more skipped (all in labels.json.gz)")
        for reason, count in reason_counts(skipped).items():
            console.print(f"  {count:5d} x {reason}", highlight=False)


def _warning_line(message: Warning | str, category: type, *_: object, **__: object) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Entry point: run the app, turning known errors into one line."""
    warnings.formatwarning = _warning_line  # one line, as errors are
    try:
        app()
    except USER_ERRORS as exc:
        if _state["debug"]:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(1)


def one_line(exc: BaseException) -> str:
    """The error as one line naming what failed and, for system and database errors, what
    to check (``--debug`` keeps the traceback)."""
    if isinstance(exc, PyMongoError):
        cause = re.split(r" \(configured timeouts|, Timeout:|, full error:", str(exc))[0]
        return mask_uri(
            f"MongoDB failed: {cause.strip()} ({type(exc).__name__}); check that it runs "
            "(`hullhunter db status`) and that the credentials in use may do this"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return (
            f"{exc.strerror or exc}: {exc.filename}: check that the path exists and that "
            "you may read and write it"
        )
    return " ".join(str(exc).split("\n"))
