"""AWS credentials and request signing for Bedrock, done by botocore (SigV4 is never hand-rolled here).

Credentials are resolved once, when the provider is built, and without any network access: explicit
config keys first, else botocore's environment and shared-file providers (``AWS_ACCESS_KEY_ID``...,
``~/.aws/credentials``, ``~/.aws/config``). The EC2/ECS metadata endpoints, SSO and assume-role
providers of botocore's default chain are deliberately left out: they call the network at startup.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ConfigProvider, CredentialResolver, Credentials, EnvProvider, SharedCredentialProvider
from botocore.exceptions import BotoCoreError

from omen.config.schema import ProviderConfig
from omen.providers.base import Headers

# Bedrock Runtime's endpoint prefix is "bedrock-runtime" but its SigV4 signing name is "bedrock".
SIGNING_NAME = "bedrock"
# The variable botocore and the AWS SDKs read a Bedrock API key from.
BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"
# Headers the signature adds; the rest of the signed headers are the request's own.
_SIGNING_HEADERS = ("X-Amz-Content-SHA256", "X-Amz-Date", "X-Amz-Security-Token", "Authorization")
# botocore.auth logs each canonical request at DEBUG, signed header values (the session token) included:
# keep that out of the logs even when an application turns DEBUG on for everything.
logging.getLogger("botocore.auth").setLevel(logging.INFO)


@dataclass(frozen=True, slots=True)
class BearerKey:
    """A Bedrock API key: sent as ``Authorization: Bearer <key>`` instead of a SigV4 signature."""

    key: str


def _shared_file(environ: Mapping[str, str], variable: str, default: str) -> str:
    return os.path.expanduser(environ.get(variable) or default)


def resolve_credentials(
    provider_id: str, config: ProviderConfig, environ: Mapping[str, str]
) -> Credentials | BearerKey:
    """The credentials this provider signs with, found without network access.

    Order: ``api_key`` (a Bedrock API key), explicit ``access_key_id`` + ``secret_access_key`` (+
    ``session_token``), ``AWS_BEARER_TOKEN_BEDROCK``, then botocore's environment provider (skipped
    when a ``profile`` is named, as botocore does) and the profile in the shared credentials and config
    files (``profile``, else ``AWS_PROFILE``, else ``default``).
    """
    if config.api_key:
        return BearerKey(config.api_key)
    if config.access_key_id or config.secret_access_key:
        if not (config.access_key_id and config.secret_access_key):
            missing = "secret_access_key" if config.access_key_id else "access_key_id"
            raise ValueError(
                f"provider '{provider_id}': access_key_id and secret_access_key go together; set {missing}"
            )
        return Credentials(config.access_key_id, config.secret_access_key, config.session_token or None)
    if environ.get(BEARER_ENV):
        return BearerKey(environ[BEARER_ENV])
    profile = config.profile or environ.get("AWS_PROFILE") or "default"
    providers = [] if config.profile else [EnvProvider(environ=dict(environ))]
    providers.append(
        SharedCredentialProvider(_shared_file(environ, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), profile)
    )
    providers.append(ConfigProvider(_shared_file(environ, "AWS_CONFIG_FILE", "~/.aws/config"), profile))
    try:
        credentials = CredentialResolver(providers).load_credentials()
    except BotoCoreError as exc:  # e.g. an unreadable or malformed shared file
        raise ValueError(f"provider '{provider_id}': cannot read AWS credentials: {exc}") from None
    if credentials is None:
        raise ValueError(
            f"provider '{provider_id}': no AWS credentials found; set access_key_id and secret_access_key "
            f"(or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), api_key (or {BEARER_ENV}), "
            f"or a profile with keys in the shared credentials or config file (profile '{profile}' has none; "
            "SSO, assume-role and credential_process profiles are not used: they need the network at startup)"
        )
    return credentials


def sigv4_headers(
    credentials: Credentials, region: str, method: str, url: str, headers: Headers, body: bytes
) -> Headers:
    """The headers that sign ``method url`` with ``headers`` and ``body`` exactly as they will be sent.

    ``X-Amz-Content-SHA256`` (the body's hash) is added and signed too: AWS accepts it on every service,
    and it lets a verifier that sees only the headers check the signature.
    """
    frozen = credentials.get_frozen_credentials()  # refreshable credentials refresh here, if due
    signed = dict(headers)
    signed["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    request = AWSRequest(method=method, url=url, data=body, headers=signed)
    SigV4Auth(frozen, SIGNING_NAME, region).add_auth(request)
    return [(name, request.headers[name]) for name in _SIGNING_HEADERS if name in request.headers]


__all__ = ["BEARER_ENV", "SIGNING_NAME", "BearerKey", "resolve_credentials", "sigv4_headers"]
