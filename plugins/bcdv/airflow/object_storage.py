"""Staging through Airflow's object storage abstraction.

With ``BCDV_STAGING_URL`` set (``s3://bucket/bcdv``, ``abfs://container/bcdv``,
``file:///shared/bcdv``), every task's pass directories are URLs. :func:`install` makes the
core open them as Airflow ObjectStoragePath objects, so a URL may name an Airflow connection
for its credentials (``s3://aws_default@bucket/bcdv``) instead of the environment's. The
filesystem's fsspec package must be installed on every worker (s3fs for S3, adlfs for Azure
Blob); ``file://`` needs nothing but a directory every worker mounts.

https://airflow.apache.org/docs/apache-airflow/stable/core-concepts/objectstorage.html
"""

from __future__ import annotations

from typing import Any

from bcdv.engine import staging


def open_path(url: str) -> Any:
    """The ObjectStoragePath of a staging URL; a scheme Airflow registers no filesystem for
    (fsspec's ``memory://``, say) opens as a plain UPath, as without Airflow."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io.fs import has_fs

    scheme = url.split("://", 1)[0]
    if not has_fs(scheme):
        from upath import UPath

        return UPath(url)
    return ObjectStoragePath(url)


def install() -> None:
    """Open staging URLs as ObjectStoragePath in this process (idempotent)."""
    staging.set_opener(open_path)
