"""Where `vpnhub connect` gets the XAUTH user name and password from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vpnhub.client.credentials import PASSWORD_ENV, CredentialsError, resolve_credentials
from vpnhub.client.profile import ClientProfile
from vpnhub.secret import Secret

BASE = ClientProfile(host="vpn.example.net", group="helpdesk", group_password=Secret("g"))
SAVED = dataclasses.replace(BASE, username="jdoe", password=Secret("from-profile"))


class Asker:
    """Stands in for input() and getpass(); records the prompts."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


def resolve(
    profile: ClientProfile,
    *,
    user: str | None = None,
    password_file: Path | None = None,
    env: dict[str, str] | None = None,
    interactive: bool = False,
    prompt: Asker | None = None,
    ask_secret: Asker | None = None,
) -> tuple[str, bytes]:
    name, secret = resolve_credentials(
        profile,
        user=user,
        password_file=password_file,
        env=env or {},
        interactive=interactive,
        prompt=prompt or Asker(),
        ask_secret=ask_secret or Asker(),
    )
    return name, secret.reveal()


def test_profile_password_comes_first(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    got = resolve(SAVED, password_file=pw, env={PASSWORD_ENV: "from-env"}, interactive=True)
    assert got == ("jdoe", b"from-profile")


def test_profile_password_is_not_used_for_another_user() -> None:
    assert resolve(SAVED, user="root", env={PASSWORD_ENV: "env"}) == ("root", b"env")
    assert resolve(SAVED, user="jdoe") == ("jdoe", b"from-profile")


def test_password_file_first_line_only(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b" pass word \r\nsecond\n")
    got = resolve(BASE, user="alice", password_file=pw, env={PASSWORD_ENV: "env"})
    assert got == ("alice", b" pass word ")


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\nsecond\n"])
def test_empty_password_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(content)
    with pytest.raises(CredentialsError, match="first line is empty"):
        resolve(BASE, user="alice", password_file=pw, env={PASSWORD_ENV: "env"})


def test_missing_password_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read password file"):
        resolve(BASE, user="alice", password_file=tmp_path / "nope")


def test_environment_before_the_terminal() -> None:
    ask = Asker("typed")
    assert resolve(BASE, user="a", env={PASSWORD_ENV: "env"}, interactive=True, ask_secret=ask) == (
        "a",
        b"env",
    )
    assert ask.prompts == []


def test_empty_environment_variable_counts_as_unset() -> None:
    ask = Asker("typed")
    got = resolve(BASE, user="a", env={PASSWORD_ENV: ""}, interactive=True, ask_secret=ask)
    assert got == ("a", b"typed")


def test_terminal_asks_without_echo_naming_user_and_host() -> None:
    ask = Asker("typed")
    assert resolve(BASE, user="alice", interactive=True, ask_secret=ask) == ("alice", b"typed")
    assert ask.prompts == ["Password for alice@vpn.example.net: "]


@pytest.mark.parametrize("answers", [(), ("",)], ids=["eof", "empty"])
def test_nothing_typed_is_an_error(answers: tuple[str, ...]) -> None:
    with pytest.raises(CredentialsError, match="no password: nothing was entered"):
        resolve(BASE, user="alice", interactive=True, ask_secret=Asker(*answers))


def test_no_password_anywhere_and_no_terminal() -> None:
    ask = Asker("never asked")
    with pytest.raises(CredentialsError) as info:
        resolve(BASE, user="alice", interactive=False, ask_secret=ask)
    message = str(info.value)
    assert message.startswith("no password: ")
    assert "--password-file" in message and PASSWORD_ENV in message
    assert ask.prompts == []


def test_username_from_user_option_then_profile() -> None:
    with_user = dataclasses.replace(BASE, username="profile-user")
    assert resolve(with_user, user="cli-user", env={PASSWORD_ENV: "p"})[0] == "cli-user"
    assert resolve(with_user, env={PASSWORD_ENV: "p"})[0] == "profile-user"


def test_username_asked_at_the_terminal() -> None:
    prompt = Asker("  bob \n")
    got = resolve(BASE, interactive=True, prompt=prompt, ask_secret=Asker("pw"))
    assert got == ("bob", b"pw")
    assert prompt.prompts == ["Username for vpn.example.net: "]


def test_no_username_and_no_terminal() -> None:
    with pytest.raises(CredentialsError, match="no user name: give --user"):
        resolve(BASE, env={PASSWORD_ENV: "p"})


def test_username_prompt_eof() -> None:
    with pytest.raises(CredentialsError, match="no user name"):
        resolve(BASE, interactive=True, prompt=Asker())


def test_messages_never_contain_the_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    _, secret = resolve_credentials(BASE, user="a", password_file=pw, env={}, interactive=False)
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
