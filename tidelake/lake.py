"""Lake location: turns ``LAKE_URI`` (+ AWS settings) into Delta table URIs and storage options."""

from __future__ import annotations

import os
from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from tidelake.settings import LakeSettings


@dataclass(frozen=True)
class Lake:
    """A lake root: local directory or ``s3://bucket/prefix``.

    ``storage_options`` are passed to every deltalake call. On S3, concurrent writers are made safe
    by conditional puts (``conditional_put=etag``); unsafe renames are never enabled.
    """

    root: str
    storage_options: dict[str, str]

    @classmethod
    def from_settings(cls, settings: LakeSettings) -> Lake:
        if not settings.is_s3:
            path = settings.uri.removeprefix("file://")
            return cls(root=os.path.abspath(path), storage_options={})
        opts: dict[str, str] = {"conditional_put": "etag"}
        if settings.aws_region:
            opts["AWS_REGION"] = settings.aws_region
        if settings.aws_endpoint_url:
            opts["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        if settings.aws_access_key_id:
            opts["AWS_ACCESS_KEY_ID"] = settings.aws_access_key_id
        if settings.aws_secret_access_key:
            opts["AWS_SECRET_ACCESS_KEY"] = settings.aws_secret_access_key
        if settings.aws_session_token:
            opts["AWS_SESSION_TOKEN"] = settings.aws_session_token
        if settings.aws_allow_http:
            opts["AWS_ALLOW_HTTP"] = "true"
        return cls(root=settings.uri.replace("s3a://", "s3://").rstrip("/"), storage_options=opts)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, relative: str) -> str:
        """URI of a table below the root, e.g. ``bronze/shop_clicks``."""
        return f"{self.root.rstrip('/')}/{relative.strip('/')}"

    def open(self, relative: str, version: int | None = None) -> DeltaTable | None:
        """Open a Delta table, or ``None`` if it does not exist yet."""
        try:
            return DeltaTable(
                self.uri(relative), version=version, storage_options=self.storage_options
            )
        except TableNotFoundError:
            return None
