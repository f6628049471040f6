"""The concentrator's TOML configuration: load, validate, and return typed, frozen data.

A leaf package: of vpnhub it imports only the primitive vpnhub/secret.py
(docs/ARCHITECTURE.md says why; tests/test_config.py checks it), so every
layer that reads settings can import it without importing anything else.

    errors.py        ConfigError, key paths ("group[1].address_pool")
    locate.py        reading the file and TOML; the line of a key or a syntax error
    schema.py        the typed result: Config and one frozen dataclass per section
    validate.py      load_config, parse_config: TOML in, Config out, or a ConfigError
    eventclasses.py  event classes and severities ([log.classes]; the event log's too)
    passwordhash.py  the password hash format and its parser (auth/users.py hashes)

PSKs and passwords are kept in `Secret`, which never prints its value; no error
message quotes the value of a secret key. docs/CONFIG.md documents every key.
"""

from __future__ import annotations

from vpnhub.config.errors import ConfigError, KeyPath, format_key_path
from vpnhub.config.schema import (
    AdminConfig,
    AdminUserConfig,
    ClusterConfig,
    ConcentratorConfig,
    Config,
    CryptoProposal,
    DataplaneConfig,
    GroupConfig,
    LanToLanConfig,
    LimitsConfig,
    LogClassConfig,
    LogConfig,
    NatTransparencyConfig,
    PkiConfig,
    RadiusConfig,
    RadiusDaeClientConfig,
    RadiusServerConfig,
    UserConfig,
)
from vpnhub.config.validate import load_config, parse_config, parse_proposal
from vpnhub.secret import Secret

__all__ = [
    "AdminConfig",
    "AdminUserConfig",
    "ClusterConfig",
    "ConcentratorConfig",
    "Config",
    "ConfigError",
    "CryptoProposal",
    "DataplaneConfig",
    "GroupConfig",
    "KeyPath",
    "LanToLanConfig",
    "LimitsConfig",
    "LogClassConfig",
    "LogConfig",
    "NatTransparencyConfig",
    "PkiConfig",
    "RadiusConfig",
    "RadiusDaeClientConfig",
    "RadiusServerConfig",
    "Secret",
    "UserConfig",
    "format_key_path",
    "load_config",
    "parse_config",
    "parse_proposal",
]
