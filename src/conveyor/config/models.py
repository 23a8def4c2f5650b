"""The pipelines-as-code models: what a conveyor.yaml may say, field by field.

Each top-level section is a mapping from name to definition, except
``environments``, an ordered list (order is the lifecycle). Every model
rejects unknown keys. Cross-references are checked in ``references.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import Field, ValidationInfo, field_validator, model_validator

from conveyor.config.fields import ChunkSize, Duration, EnvName, Regex, Template
from conveyor.config.selection import FilterConfig, PolicyConfig
from conveyor.config.steps import Step
from conveyor.config.strict import Strict

Name = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$",
        description="lowercase letters, digits, '.', '_' and '-'",
    ),
]

INLINE_SECRET_KEYS = ("password", "token", "secret")


def refuse_inline_secret(data: Any, *, field: str) -> Any:  # noqa: ANN401 - raw YAML
    """Secrets are referenced (an environment variable name), never written into config."""
    if isinstance(data, dict):
        for key in INLINE_SECRET_KEYS:
            if key in data:
                raise ValueError(
                    f"'{key}' is a secret and must not be written in the config; "
                    f"use '{key}_env: VARIABLE_NAME' (the name of an environment variable)"
                )
    return data


class Credentials(Strict):
    """Credentials by reference only: environment variable names or docker's config.json."""

    username_env: EnvName | None = Field(None, description="Variable holding the username.")
    password_env: EnvName | None = Field(None, description="Variable holding the password/token.")
    docker_config: bool | str | None = Field(
        None, description="true: ~/.docker/config.json (or $DOCKER_CONFIG); or a path to one."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:  # noqa: ANN401
        return refuse_inline_secret(data, field="credentials")

    @model_validator(mode="after")
    def _one_kind(self) -> Credentials:
        by_env = self.username_env is not None or self.password_env is not None
        if by_env and self.docker_config:
            raise ValueError("use either username_env/password_env or docker_config, not both")
        if by_env and (self.username_env is None or self.password_env is None):
            raise ValueError("username_env and password_env go together")
        if not by_env and not self.docker_config:
            raise ValueError("give username_env and password_env, or docker_config: true")
        return self


class Tls(Strict):
    ca_file: str | None = Field(None, description="PEM bundle to verify the registry with.")
    insecure: bool = Field(
        False, description="Allow plain http or unverified TLS (loopback test registries only)."
    )


def _check_url(value: str) -> str:
    if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError(f"'{value}' is not a URL; write e.g. https://registry.example.com")
    return value.rstrip("/")


def _host_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


class Registry(Strict):
    """An OCI Distribution endpoint."""

    url: str = Field(description="Public address, e.g. https://registry.example.com")
    internal_url: str | None = Field(
        None, description="VPC-internal address a deploy step may pull through instead."
    )
    credentials: Credentials | None = None
    tls: Tls = Field(default_factory=Tls)
    token_flow: Literal["auto", "oauth2"] = Field(
        "auto",
        description="How bearer tokens are fetched: auto (GET, OAuth2 POST when the token "
        "service refuses GET) or oauth2 (OAuth2 POST with the password, then the refresh token).",
    )
    chunk_size: ChunkSize | None = Field(
        None,
        description="Blobs larger than this are uploaded in PATCH chunks of this size "
        "(e.g. 16MiB); default: one streamed PUT per blob.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:  # noqa: ANN401
        return refuse_inline_secret(data, field="registry")

    @field_validator("url", "internal_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @model_validator(mode="after")
    def _plain_http(self) -> Registry:
        for url in (self.url, self.internal_url):
            if url and url.startswith("http://") and not self.tls.insecure:
                raise ValueError(f"'{url}' is plain http; set tls.insecure: true to allow it")
        return self

    @model_validator(mode="after")
    def _oauth2_needs_credentials(self) -> Registry:
        if self.token_flow == "oauth2" and self.credentials is None:
            raise ValueError(
                "token_flow: oauth2 sends a username and password (or an identity token) "
                "to the token service; add 'credentials', or leave token_flow at auto"
            )
        return self

    @property
    def host(self) -> str:
        """The host[:port] that image references use."""
        return _host_of(self.url)

    @property
    def internal_host(self) -> str | None:
        """The host[:port] of the internal (VPC) address, if there is one."""
        return _host_of(self.internal_url) if self.internal_url else None


class ApprovalRules(Strict):
    required: int = Field(1, ge=1, description="Distinct approvals needed.")
    approvers: list[str] = Field(default_factory=list, description="Users who may approve.")
    groups: list[str] = Field(default_factory=list, description="Groups whose members may.")
    allow_author: bool = False


class Environment(Strict):
    """One ordered stage of the lifecycle."""

    name: Name
    description: str | None = None
    requires: list[str] = Field(
        default_factory=list,
        description="Earlier environments a digest must have been verified in.",
    )
    approval: ApprovalRules | None = None

    @field_validator("requires", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:  # noqa: ANN401
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            from conveyor.config.problems import describe

            raise ValueError(
                f"expected an environment name or a list of names, found {describe(value)}"
            )
        return value


class DefaultVersion(Strict):
    tag: Template | None = Field(
        None, description="Fixed tag or template, e.g. myapp-V${R_VERSION}"
    )
    digest: str | None = None

    @model_validator(mode="after")
    def _one(self) -> DefaultVersion:
        if (self.tag is None) == (self.digest is None):
            raise ValueError("give exactly one of 'tag' or 'digest'")
        return self


class ArtifactSource(Strict):
    """A registry repository runs take their image from."""

    registry: str = Field(description="Name of a configured registry.")
    repository: str = Field(description="Repository path, e.g. team/myapp")
    filter: FilterConfig | None = None
    policy: PolicyConfig | None = Field(None, description="Default: semver (any stable version).")
    default: DefaultVersion | None = Field(None, description="Default: the policy's pick.")


class PipelineSource(Strict):
    """Where a pipeline's runs get their image."""

    artifact: str | None = Field(None, description="Name of an artifact source.")
    pipeline: str | None = Field(None, description="Name of an upstream pipeline.")

    @model_validator(mode="after")
    def _one(self) -> PipelineSource:
        if (self.artifact is None) == (self.pipeline is None):
            raise ValueError("give exactly one of 'artifact' or 'pipeline'")
        return self


EventKind = Literal["push", "scan_completed", "scan_failed", "delete"]


class RegistryEventTrigger(Strict):
    source: str = Field(description="Artifact source whose repository the event must name.")
    webhook: str | None = Field(None, description="Only events from this webhook endpoint.")
    events: list[EventKind] = Field(default_factory=lambda: ["push"])  # type: ignore[arg-type]
    tag: Regex | None = Field(None, description="Only tags matching this RE2 regex.")


class PollTrigger(Strict):
    source: str
    interval: Duration = "5m"


def _check_cron(value: str) -> str:
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(
            f"'{value}' is not a cron expression; write five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 * * 1-5'"
        )
    return value


class ScheduleTrigger(Strict):
    cron: str

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _check_cron(value)


class PipelineTrigger(Strict):
    name: str
    status: Literal["succeeded", "failed"] = "succeeded"


class Trigger(Strict):
    """Exactly one of the trigger kinds."""

    manual: dict[str, Any] | None = None
    registry_event: RegistryEventTrigger | None = None
    poll: PollTrigger | None = None
    schedule: ScheduleTrigger | None = None
    pipeline: PipelineTrigger | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            kinds = ", ".join(type(self).model_fields)
            raise ValueError(f"a trigger has exactly one kind ({kinds}); found {len(given)}")
        return self


class Parameter(Strict):
    default: str | None = None
    required: bool = False
    description: str | None = None

    @field_validator("default", mode="before")
    @classmethod
    def _scalar(cls, value: Any) -> Any:  # noqa: ANN401
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


class Pipeline(Strict):
    """A named definition: source, triggers, parameters and steps."""

    description: str | None = None
    environment: str | None = Field(None, description="The environment this pipeline deploys to.")
    source: PipelineSource | None = Field(None, description="Omit for pipelines that build.")
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @field_validator("parameters", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:  # noqa: ANN401
        """`R_VERSION: 1.4.2` is short for `R_VERSION: {default: '1.4.2'}`."""
        if isinstance(value, dict):
            return {
                k: v if isinstance(v, dict) or v is None else {"default": v}
                for k, v in value.items()
            }
        return value


WebhookFormat = Literal[
    "distribution",
    "harbor",
    "harbor-cloudevents",
    "acr",
    "azure",
    "dockerhub",
    "github",
    "quay",
    "ecr",
    "gar",
]


# Pub/Sub push tokens are signed by Google; these are its published keys and issuers
# (developers.google.com/identity/openid-connect/openid-connect#validatinganidtoken:
# "iss" is https://accounts.google.com or accounts.google.com).
GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
OIDC_FIELDS = ("audience", "email", "issuer", "jwks_file", "jwks_url")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class Webhook(Strict):
    """An inbound endpoint served at /hooks/<name>."""

    format: WebhookFormat
    registry: str | None = Field(None, description="Registry the events come from.")
    auth: Literal["bearer", "header", "hmac-sha256", "basic", "oidc"] = "bearer"
    header: str | None = Field(None, description="Header carrying the secret (auth: header).")
    secret_env: EnvName | None = Field(
        None, description="Variable holding the shared secret (every auth but oidc)."
    )
    previous_secret_env: EnvName | None = Field(
        None,
        description="While rotating the secret: variable holding the one being replaced, "
        "also accepted until the sender uses the new one (unset or empty: not used).",
    )
    audience: str | None = Field(
        None,
        description="auth: oidc: the token's expected 'aud', the push subscription's audience "
        "(Pub/Sub's default is the endpoint's URL).",
    )
    email: str | None = Field(
        None,
        description="auth: oidc: the service account the subscription pushes as "
        "(the token's 'email', which must be verified).",
    )
    issuer: str | None = Field(
        None,
        description="auth: oidc: the token's expected 'iss'; default Google's "
        "(https://accounts.google.com or accounts.google.com).",
    )
    jwks_file: str | None = Field(
        None,
        description="auth: oidc: a JWKS JSON file with the signing keys (relative to the "
        "config files), instead of jwks_url.",
    )
    jwks_url: str | None = Field(
        None,
        description=f"auth: oidc: where the signing keys are fetched; default {GOOGLE_JWKS_URL}.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:  # noqa: ANN401
        return refuse_inline_secret(data, field="webhook")

    @field_validator("auth")
    @classmethod
    def _oidc_for_pubsub(cls, value: str, info: ValidationInfo) -> str:
        sender = info.data.get("format")
        if value == "oidc" and sender is not None and sender != "gar":
            raise ValueError(
                f"auth 'oidc' checks Google Pub/Sub push tokens (format 'gar'); "
                f"'{sender}' does not send them: use bearer, header, hmac-sha256 or basic"
            )
        return value

    @field_validator("header")
    @classmethod
    def _header_for_header_modes(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("auth")
        if value is not None and auth is not None and auth not in ("header", "hmac-sha256"):
            raise ValueError(
                f"'header' is only used with auth 'header' or 'hmac-sha256', not '{auth}'"
            )
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_for_shared_modes(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("auth") == "oidc":
            raise ValueError(
                "auth 'oidc' uses no shared secret (the token is checked against the signing "
                "keys); remove 'secret_env'"
            )
        return value

    @field_validator("previous_secret_env")
    @classmethod
    def _previous_for_shared_modes(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("auth") == "oidc":
            raise ValueError("auth 'oidc' uses no shared secret; remove 'previous_secret_env'")
        if value is not None and value == info.data.get("secret_env"):
            raise ValueError(
                f"names the same variable as 'secret_env' ({value}); during a rotation it "
                "names the variable holding the old secret"
            )
        return value

    @field_validator(*OIDC_FIELDS)
    @classmethod
    def _oidc_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        auth = info.data.get("auth")
        if value is not None and auth is not None and auth != "oidc":
            raise ValueError(f"'{info.field_name}' is only used with auth 'oidc', not '{auth}'")
        if value is not None and not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and (value.count("@") != 1 or value != value.strip()):
            raise ValueError(
                f"'{value}' is not an email address; write the service account's, e.g. "
                "pusher@my-project.iam.gserviceaccount.com"
            )
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_jwks_url(value)

    @model_validator(mode="after")
    def _auth_fields(self) -> Webhook:
        if self.auth == "header" and not self.header:
            raise ValueError("auth 'header' needs 'header' (the header's name)")
        if self.auth != "oidc":
            if self.secret_env is None:
                raise ValueError(
                    f"required field 'secret_env' is missing (auth '{self.auth}' checks a "
                    "shared secret held in that environment variable)"
                )
            return self
        if self.audience is None:
            raise ValueError(
                "auth 'oidc' needs 'audience' (the push subscription's audience: its "
                "--push-auth-token-audience, by default the endpoint's URL)"
            )
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError("give 'jwks_file' or 'jwks_url', not both")
        return self

    @property
    def issuers(self) -> tuple[str, ...]:
        """The accepted ``iss`` values of auth: oidc tokens."""
        return (self.issuer,) if self.issuer is not None else GOOGLE_ISSUERS

    @property
    def signing_keys_url(self) -> str:
        """Where auth: oidc keys are fetched when no ``jwks_file`` is given."""
        return self.jwks_url or GOOGLE_JWKS_URL


def _check_jwks_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"'{value}' is not a URL; write e.g. {GOOGLE_JWKS_URL}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise ValueError(
            f"'{value}' is plain http: anyone on the way could swap the keys; use https "
            "(plain http is allowed for loopback addresses only)"
        )
    return value


class ConfigFile(Strict):
    """One YAML file; a directory's files are merged."""

    version: Literal[1] = 1
    registries: dict[Name, Registry] = Field(default_factory=dict)
    environments: list[Environment] = Field(default_factory=list)
    sources: dict[Name, ArtifactSource] = Field(default_factory=dict)
    pipelines: dict[Name, Pipeline] = Field(default_factory=dict)
    webhooks: dict[Name, Webhook] = Field(default_factory=dict)
