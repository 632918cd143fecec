"""The configuration: one YAML file, read strictly into typed sections, once.

Every section is a frozen dataclass with working defaults and its own ``validate``
(``sections``, ``blocking``). Unknown keys, wrong types and bad values are errors that
name the key path (``blocking.response``) and what was expected (``loader``); a server
never starts on a config it only half understood. Addresses, networks and dates become
typed values as they are read (``values``), so nothing downstream parses text again.

May import ``resolver.dns`` and ``resolver.yamltext``; everything else imports it.
"""

from resolver.config.blocking import (
    BlockingConfig,
    CatalogPolicy,
    CatalogSelector,
    GroupConfig,
    LocalListConfig,
    RemoteListConfig,
    ResponseMode,
)
from resolver.config.feed import CatalogConfig, CatalogSourceConfig, decode_public_key
from resolver.config.loader import config_from_mapping, load_config
from resolver.config.sections import (
    DEFAULT_CLIENT_NETWORKS,
    AccessConfig,
    ApiConfig,
    AuditConfig,
    CacheConfig,
    Config,
    ListenConfig,
    LoggingConfig,
    PrivacyConfig,
    RateLimitConfig,
    StateConfig,
    UpstreamConfig,
)
from resolver.config.system import available_cpus, system_nameservers
from resolver.config.values import (
    CATEGORIES,
    KEY_MIN_BYTES,
    RESTART_KEYS,
    ClientNetwork,
    ConfigError,
    DnsEndpoint,
    EncryptedEndpoint,
    Endpoint,
    HttpEndpoint,
    Until,
    UpstreamServer,
    read_key_file,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_CLIENT_NETWORKS",
    "KEY_MIN_BYTES",
    "RESTART_KEYS",
    "AccessConfig",
    "ApiConfig",
    "AuditConfig",
    "BlockingConfig",
    "CacheConfig",
    "CatalogConfig",
    "CatalogPolicy",
    "CatalogSelector",
    "CatalogSourceConfig",
    "ClientNetwork",
    "Config",
    "ConfigError",
    "DnsEndpoint",
    "EncryptedEndpoint",
    "Endpoint",
    "GroupConfig",
    "HttpEndpoint",
    "ListenConfig",
    "LocalListConfig",
    "LoggingConfig",
    "PrivacyConfig",
    "RateLimitConfig",
    "RemoteListConfig",
    "ResponseMode",
    "StateConfig",
    "Until",
    "UpstreamConfig",
    "UpstreamServer",
    "available_cpus",
    "config_from_mapping",
    "decode_public_key",
    "load_config",
    "read_key_file",
    "system_nameservers",
]
