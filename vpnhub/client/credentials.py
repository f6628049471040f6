"""The XAUTH user name and password for `vpnhub connect`.

User name: `--user`, else the profile's, else asked at the terminal.
Password, the first that is set:

1. the profile's (a .pcf's saved password, a TOML `password`), unless
   `--user` names someone else than the profile does;
2. the first line of `--password-file PATH`;
3. the environment variable VPNHUB_PASSWORD;
4. asked at the terminal without echo (getpass), only when stdin is a TTY.

Otherwise `CredentialsError` says what was tried. The password is only ever
held in a `Secret`; no message contains it.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping
from pathlib import Path

from vpnhub.client.profile import ClientProfile
from vpnhub.secret import Secret

__all__ = ["PASSWORD_ENV", "CredentialsError", "resolve_credentials"]

PASSWORD_ENV = "VPNHUB_PASSWORD"


class CredentialsError(ValueError):
    """No usable user name or password; `str()` is the message for the user."""


def resolve_credentials(
    profile: ClientProfile,
    *,
    user: str | None,
    password_file: Path | None,
    env: Mapping[str, str],
    interactive: bool,
    prompt: Callable[[str], str] = input,
    ask_secret: Callable[[str], str] = getpass.getpass,
) -> tuple[str, Secret]:
    """The (user name, password) to answer XAUTH with.

    `interactive` says whether we may ask (normally `sys.stdin.isatty()`);
    `prompt` and `ask_secret` are the ways to ask (tests pass fakes).
    """
    username = _username(profile, user, interactive, prompt)
    if profile.password is not None and (user is None or user == profile.username):
        return username, profile.password
    if password_file is not None:
        return username, _read_password_file(password_file)
    if env.get(PASSWORD_ENV):
        return username, Secret(env[PASSWORD_ENV])
    if interactive:
        try:
            answer = ask_secret(f"Password for {username}@{profile.host}: ")
        except EOFError:
            answer = ""
        if answer:
            return username, Secret(answer)
        raise CredentialsError("no password: nothing was entered at the prompt")
    raise CredentialsError(
        "no password: the profile saves none, no --password-file was given, "
        f"{PASSWORD_ENV} is not set, and stdin is not a terminal to ask at"
    )


def _username(
    profile: ClientProfile, user: str | None, interactive: bool, prompt: Callable[[str], str]
) -> str:
    if user:
        return user
    if profile.username:
        return profile.username
    if not interactive:
        raise CredentialsError(
            "no user name: give --user or set one in the profile (Username= in a .pcf,"
            " username in TOML); stdin is not a terminal to ask at"
        )
    try:
        answer = prompt(f"Username for {profile.host}: ").strip()
    except EOFError:
        answer = ""
    if not answer:
        raise CredentialsError("no user name: nothing was entered at the prompt")
    return answer


def _read_password_file(path: Path) -> Secret:
    """The first line of `path`, without its line end; bytes as they are."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read password file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    first = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not first:
        raise CredentialsError(f"password file {str(path)!r}: the first line is empty")
    return Secret(first)
