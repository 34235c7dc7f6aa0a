"""params.yaml `download`: where the raw files come from and how hard to try."""

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from fmnist import paths
from fmnist.params import Section


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lowercase hex digits (a SHA-256)")
    return value


def _source(value: str) -> str:
    if "://" not in value:
        return value  # a local folder
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 (parses the port: raises on a bad one)
    except ValueError as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be a local folder or an http:// or https:// URL with a host")
    return value


class DownloadParams(Section):
    sources: list[Annotated[str, Field(min_length=1), AfterValidator(_source)]] = Field(min_length=1)
    sha256: dict[str, Annotated[str, AfterValidator(_sha256)]]
    retries: int = Field(ge=0, le=10)
    timeout_s: float = Field(gt=0, le=3600)
    backoff_s: float = Field(ge=0, le=3600)

    @field_validator("sha256")
    @classmethod
    def _every_file(cls, value: dict[str, str]) -> dict[str, str]:
        expected = sorted(paths.RAW_FILES.values())
        if sorted(value) != expected:
            raise ValueError(f"must list exactly the files {expected}")
        return value
