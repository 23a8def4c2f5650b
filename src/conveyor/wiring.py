"""The composition root: builds the use cases' dependencies from settings and definitions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from conveyor import settings as settings_module
from conveyor.config import loader, models
from conveyor.core.credentials import Credentials, Secret
from conveyor.core.errors import DatabaseUnavailable, InvalidInput, NotFound
from conveyor.core.images import PinnedImage, Repository
from conveyor.core.ports import Registry
from conveyor.service.context import Services, WebhookKeys
from conveyor.store import database, schema

RegistryFactory = Callable[[models.Registry, Credentials | None], Registry]


def default_registry_factory(
    definition: models.Registry, credentials: Credentials | None
) -> Registry:
    """The OCI Distribution client for one configured registry."""
    from conveyor.registry.wiring import client_for

    return client_for(definition, credentials)


@dataclass
class ConfiguredRegistries:
    """Registry clients for the configured registries, created on first use."""

    definitions: Mapping[str, models.Registry]
    environ: Mapping[str, str]
    factory: RegistryFactory = default_registry_factory
    _clients: dict[str, Registry] = field(default_factory=dict)

    def definition(self, name: str) -> models.Registry:
        definition = self.definitions.get(name)
        if definition is None:
            known = ", ".join(sorted(self.definitions)) or "none"
            raise NotFound("registry", name, hint=f"defined: {known}")
        return definition

    def credentials(self, name: str) -> Credentials | None:
        definition = self.definition(name)
        reference = definition.credentials
        if reference is not None and reference.docker_config:
            from conveyor.registry import dockerconfig

            return dockerconfig.load_credentials(
                definition.host, path=self.docker_config_path(reference.docker_config)
            )
        if reference is None or reference.username_env is None or reference.password_env is None:
            return None
        missing = [
            v for v in (reference.username_env, reference.password_env) if v not in self.environ
        ]
        if missing:
            raise InvalidInput(
                f"registry '{name}': environment variable {missing[0]} is not set "
                "(credentials are read from the variables the config names)"
            )
        return Credentials(
            username=self.environ[reference.username_env],
            password=Secret(self.environ[reference.password_env]),
        )

    def docker_config_path(self, setting: bool | str) -> Path:
        """``docker_config: true``: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
        from conveyor.registry import dockerconfig

        if isinstance(setting, str):
            return Path(setting).expanduser()
        return dockerconfig.default_path(self.environ.get("DOCKER_CONFIG"))

    async def transfer(
        self,
        image: PinnedImage,
        *,
        source: str,
        destination: str,
        to: Repository,
        tag: str | None = None,
    ) -> PinnedImage:
        """Copy a digest from one configured registry to another (streamed, checked)."""
        from conveyor.registry.wiring import ConfiguredRegistry, copy_between

        from_client, to_client = self.client(source), self.client(destination)
        if not (
            isinstance(from_client, ConfiguredRegistry)
            and isinstance(to_client, ConfiguredRegistry)
        ):
            raise InvalidInput("copying between registries needs the OCI Distribution client")
        return await copy_between(from_client, image, destination=to_client, to=to, tag=tag)

    def client(self, name: str) -> Registry:
        if name not in self._clients:
            self._clients[name] = self.factory(self.definition(name), self.credentials(name))
        return self._clients[name]


def services(
    settings: settings_module.Settings,
    *,
    config: Path | None,
    database_url: str | None = None,
    registry_factory: RegistryFactory | None = None,
) -> Services:
    """Everything the use cases need, from settings and the config files."""
    definitions = loader.load(config or settings.config_path)
    engine = open_database(database_url or settings.database_url)
    environ = settings_module.process_environ()
    registries = ConfiguredRegistries(
        definitions.registries, environ, registry_factory or default_registry_factory
    )
    return Services(
        definitions=definitions,
        engine=engine,
        registries=registries,
        data_dir=settings.data_dir,
        base_env=settings_module.inherited_environ(),
        environ=environ,
        webhook_keys=webhook_keys(definitions),
    )


def webhook_keys(definitions: loader.Definitions) -> dict[str, WebhookKeys]:
    """The signing keys of every ``auth: oidc`` endpoint; endpoints with one source share it.

    Nothing is fetched here: the server starts the fetches when it starts
    (``conveyor.jwks`` explains when keys are fetched again).
    """
    from conveyor import jwks

    by_source: dict[str, jwks.JwksKeys] = {}
    result: dict[str, WebhookKeys] = {}
    for name, webhook in definitions.webhooks.items():
        if webhook.auth != "oidc":
            continue
        if webhook.jwks_file is not None:
            # Relative to the config files, like a kubeconfig.
            path = (definitions.base_dir / Path(webhook.jwks_file).expanduser()).resolve()
            source = f"jwks_file {path}"
            fetch = jwks.file_fetcher(path)
        else:
            source = webhook.signing_keys_url
            fetch = jwks.url_fetcher(source)
        if source not in by_source:
            by_source[source] = jwks.JwksKeys(fetch, source=source)
        result[name] = by_source[source]
    return result


def open_database(url: str) -> sa.Engine:
    """The state database; SQLite is migrated on first use, PostgreSQL must be up to date.

    SQLite is one file that nothing else manages, so Conveyor brings it to the
    current schema itself. A shared PostgreSQL is migrated deliberately, with
    `conveyor db upgrade`, so that several processes never race a migration.
    """
    engine = database.create_engine(url)
    with database.translate_errors(engine):
        current = schema.current_revision(engine)
    head = schema.head_revision()
    if current == head:
        return engine
    if engine.dialect.name == "sqlite":
        schema.upgrade_engine(engine)
        return engine
    raise DatabaseUnavailable(
        f"the database at {database.masked(engine.url)} is at schema revision "
        f"{current or 'none'}, this Conveyor needs {head}; run `conveyor db upgrade`"
    )
