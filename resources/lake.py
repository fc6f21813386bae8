"""The lake storage resource: a local directory or ``s3://bucket/prefix``."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from tidelake.lake import Lake
from tidelake.settings import DEFAULT_LAKE_URI, LakeSettings


class LakeResource(dg.ConfigurableResource):
    """Where the Delta tables live. Local paths need only ``uri``; S3 uses the AWS fields.

    Values are validated as ``LakeSettings.from_env`` validates the variables named per field.
    """

    uri: str = Field(
        default=DEFAULT_LAKE_URI, description="LAKE_URI: local path or s3://bucket/prefix"
    )
    aws_region: str | None = Field(default=None, description="AWS_REGION")
    aws_endpoint_url: str | None = Field(
        default=None, description="AWS_ENDPOINT_URL: S3-compatible endpoint (MinIO, moto)"
    )
    aws_access_key_id: str | None = Field(default=None, description="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: str | None = Field(
        default=None, description="AWS_SECRET_ACCESS_KEY (secret)"
    )
    aws_session_token: str | None = Field(default=None, description="AWS_SESSION_TOKEN (secret)")
    aws_allow_http: bool = Field(
        default=False, description="AWS_ALLOW_HTTP: allow plain HTTP to the endpoint"
    )

    def settings(self) -> LakeSettings:
        """The engine's :class:`LakeSettings` (raises ``ConfigError`` on an unusable URI)."""
        env = {
            "LAKE_URI": self.uri,
            "AWS_REGION": self.aws_region or "",
            "AWS_ENDPOINT_URL": self.aws_endpoint_url or "",
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key or "",
            "AWS_SESSION_TOKEN": self.aws_session_token or "",
            "AWS_ALLOW_HTTP": "true" if self.aws_allow_http else "",
        }
        return LakeSettings.from_env(env)

    def lake(self) -> Lake:
        """The lake root with its deltalake storage options."""
        return Lake.from_settings(self.settings())
