"""`luxxon-agent keygen`: make this device's telemetry signing key; print its address only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from luxxon_agent.cli._common import handle_errors, print_json


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("keygen")(keygen)


@handle_errors
def keygen(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Keystore file to use (the agent's device_key_file); default: the keyring, "
            "else <user data dir>/luxxon-agent/device-keys/<name>.json.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Key name (one per device).")] = "default",
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help="Encrypt the keystore with the passphrase in this file (default: none; the "
            "file's 0600 mode protects it).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create the device key (or show the existing one) and print its address.

    Register the address from the operator's computer with
    `luxxon operators register --device-address ADDRESS`. The key never leaves
    this device and is never printed.
    """
    from luxxon_agent.errors import ConfigError
    from luxxon_agent.identity.device_key import DeviceKeyStore
    from luxxon_agent.secret import Secret

    passphrase = None
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --passphrase-file: {exc.strerror}") from None
        if not text:
            raise ConfigError("--passphrase-file is empty")
        passphrase = Secret(text)
    store = DeviceKeyStore(key_file, name=name, passphrase=passphrase)
    if force:
        key, created = store.generate(replace=True), True
    else:
        key, created = store.load_or_generate()
    if json_out:
        print_json({"address": key.address, "created": created, "store": key.location})
        return
    typer.echo(key.address)
    typer.echo(f"{'created in' if created else 'existing key in'} {key.location}", err=True)
