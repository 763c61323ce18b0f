"""`devicecare privacy export | erase`: a family's data, handed over or pseudonymised.

Exit status: 0 on success; 1 when the guardian is unknown, the actor lacks the Manage Family
Data permission, or the family still owes money (erase without --force). Nothing is written
in those cases, except that a refusal is kept in the activity log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bot.cli.run import cli_actor, log_refusal, run_with_runtime
from bot.runtime import Runtime
from bot.settings import get_settings
from storage.privacy import (
    ErasureResult,
    ExportResult,
    delete_blobs,
    erase_family,
    export_family,
    find_family,
    zip_folder,
)
from workflows.clock import local_date
from workflows.errors import PermissionDenied
from workflows.i18n import N_, _
from workflows.permissions import Permission, require
from workflows.privacy import OpenBalance

privacy_app = typer.Typer(
    help=N_("A family's personal data: export a copy, or erase it when they leave."),
    no_args_is_help=True,
)
console = Console()


@privacy_app.command(
    "export",
    help=N_(
        "Write everything held about a guardian's family (family.json, photos, received mail)."
    ),
)
def export_command(
    guardian: Annotated[str, typer.Option("--guardian", help=N_("The guardian's email."))],
    out: Annotated[
        Path, typer.Option("--out", help=N_("Folder to write the export into (created if needed)."))
    ] = Path("."),
    as_email: Annotated[
        str | None,
        typer.Option("--as", help=N_("Staff email to act as (needs Manage Family Data).")),
    ] = None,
    as_zip: Annotated[
        bool, typer.Option("--zip", help=N_("Write one .zip instead of a folder."))
    ] = False,
) -> None:
    async def work(runtime: Runtime) -> ExportResult:
        actor = await cli_actor(runtime, as_email)
        try:
            require(actor, Permission.MANAGE_FAMILY_DATA)
        except PermissionDenied as exc:
            await log_refusal(runtime, actor, "privacy export", exc.message)
            raise
        async with runtime.stores() as store:
            family = await find_family(store, guardian)
            now = runtime.clock.now()
            day = local_date(now, runtime.settings.district_timezone)
            folder = out / f"family-export-{family.guardians[0].id}-{day.isoformat()}"
            if folder.exists() or folder.with_suffix(".zip").exists():
                folder = folder.with_name(f"{folder.name}-{int(now.timestamp())}")
            result = await export_family(store, runtime.blobs, family, folder, now=now, actor=actor)
            await store.commit()
        return result

    result = run_with_runtime(get_settings(), work, console=console)
    path = zip_folder(result.path) if as_zip else result.path
    rows = sum(result.counts.values())
    console.print(
        _(
            "Exported {rows} records and {photos} photos to {path}",
            rows=rows,
            photos=result.photos,
            path=escape(str(path)),
        )
    )


@privacy_app.command(
    "erase",
    help=N_(
        "Replace a departed family's personal data by a pseudonym; invoices, payments and the\n"
        "activity log stay whole. This cannot be undone: export first if a copy is needed."
    ),
)
def erase_command(
    guardian: Annotated[str, typer.Option("--guardian", help=N_("The guardian's email."))],
    as_email: Annotated[
        str, typer.Option("--as", help=N_("Your staff email (needs Manage Family Data)."))
    ],
    yes: Annotated[bool, typer.Option("--yes", help=N_("Don't ask for confirmation."))] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help=N_("Erase even though the family still owes money.")),
    ] = False,
) -> None:
    if not yes:
        typer.confirm(
            _(
                "Erase the personal data of the family of {guardian}? This cannot be undone",
                guardian=guardian,
            ),
            abort=True,
        )

    async def work(runtime: Runtime) -> ErasureResult:
        actor = await cli_actor(runtime, as_email)
        try:
            async with runtime.stores() as store:
                family = await find_family(store, guardian)
                result = await erase_family(
                    store, runtime.clock, runtime.blobs, actor, family, force=force
                )
                await store.commit()
        except (PermissionDenied, OpenBalance) as exc:
            await log_refusal(runtime, actor, "privacy erase", exc.message)
            raise
        await delete_blobs(runtime.blobs, result.blobs_to_delete)
        return result

    result = run_with_runtime(get_settings(), work, console=console)
    console.print(
        _(
            "Erased the family as {pseudonym}: {guardians} guardian(s), "
            "{students} student(s); {invoices} invoice(s) kept, "
            "{rows} stored records rewritten.",
            pseudonym=result.pseudonym,
            guardians=result.guardians,
            students=result.students,
            invoices=result.invoices,
            rows=result.rows_rewritten,
        )
    )
