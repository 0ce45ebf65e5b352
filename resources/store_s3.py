"""The S3 artifact store: the same layout as the local one under ``s3://bucket/prefix``; the
manifest, written last, is the commit marker (S3 objects are atomic)."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from resources.store import (
    CHUNK, MANIFEST, STAGE_TAG, ArtifactMissing, ArtifactStore, StoredSet, StoreError, _check_name)

__all__ = ["S3Store"]


class S3Store(ArtifactStore):
    """An S3 bucket (or any S3-compatible endpoint: ``endpoint_url``, else ``AWS_ENDPOINT_URL``).

    Objects are atomic, so the manifest, written last, is the commit marker. Range reads stream
    ``GetObject`` with ``Range``; large puts go multipart. Objects never get a Content-Encoding."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    multipart_threshold: int = 64 * 1024 * 1024  # bytes; larger artifacts go up in parts

    _client: Any = PrivateAttr(default=None)

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32),
            )
        return self._client

    def _object(self, key: str, name: str) -> str:
        _check_name(key, name)
        prefix = self.prefix.strip("/")
        return f"{prefix}/{key}/{name}" if prefix else f"{key}/{name}"

    def put_file(self, key: str, name: str, path: Path) -> int:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=self.multipart_threshold)
        try:
            self.client.upload_file(
                str(path), self.bucket, self._object(key, name),
                ExtraArgs={"ContentType": "application/octet-stream"}, Config=config,
            )
        except Exception as exc:  # noqa: BLE001 - boto3 raises botocore and S3 transfer errors
            raise StoreError(f"Uploading {key}/{name} to s3://{self.bucket} failed: {_reason(exc)}.") from None
        return path.stat().st_size

    def put_json(self, key: str, name: str, value: dict[str, Any]) -> None:
        body = json.dumps(value, indent=2, sort_keys=True).encode()
        # Stage records are scaffolding: tagged so the bucket's lifecycle rule expires them
        # (deploy/cloudformation.yaml); a prefix cannot tell them apart from artifacts.
        tagging = {"Tagging": STAGE_TAG} if name.startswith("stage-") else {}
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._object(key, name), Body=body, ContentType="application/json", **tagging
            )
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"Writing {key}/{name} to s3://{self.bucket} failed: {_reason(exc)}.") from None

    def get_json(self, key: str, name: str) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key, name))["Body"].read()
            value = json.loads(body)
        except ValueError:
            return None
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return None
            raise StoreError(f"Reading {key}/{name} from s3://{self.bucket} failed: {_reason(exc)}.") from None
        return value if isinstance(value, dict) else None

    def size(self, key: str, name: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=self._object(key, name))["ContentLength"])
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                raise ArtifactMissing(f"{key}/{name} is not in the store.") from None
            raise StoreError(f"Reading {key}/{name} from s3://{self.bucket} failed: {_reason(exc)}.") from None

    def iter_range(self, key: str, name: str, start: int, end: int) -> Iterator[bytes]:
        # GetObject is issued here, before any byte is promised: a vanished object is ArtifactMissing.
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self._object(key, name), Range=f"bytes={start}-{end - 1}"
            )["Body"]
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                raise ArtifactMissing(f"{key}/{name} is not in the store.") from None
            raise StoreError(f"Reading {key}/{name} from s3://{self.bucket} failed: {_reason(exc)}.") from None
        return _stream(body)

    @contextlib.contextmanager
    def local_path(self, key: str, name: str, workdir: Path) -> Iterator[Path]:
        dest = workdir / name
        try:
            self.client.download_file(self.bucket, self._object(key, name), str(dest))
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                raise ArtifactMissing(f"{key}/{name} is not in the store.") from None
            raise StoreError(f"Downloading {key}/{name} from s3://{self.bucket} failed: {_reason(exc)}.") from None
        try:
            yield dest
        finally:
            dest.unlink(missing_ok=True)

    def presigned_url(self, key: str, name: str, expires_s: int = 3600) -> str:
        """A time-limited GET URL for one artifact (for CFDB_S3_REDIRECT)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._object(key, name)}, ExpiresIn=expires_s
        )

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(
                f"The bucket s3://{self.bucket} is not reachable ({_reason(exc)}); check CFDB_STORE, "
                "AWS_ENDPOINT_URL and the credentials."
            ) from None

    def sets(self) -> Iterator[StoredSet]:
        for key, objects in itertools.groupby(self._objects(""), key=lambda o: o[0]):  # keys come sorted
            objects = list(objects)
            yield StoredSet(key, tuple(name for _, name, _ in objects), max(when for _, _, when in objects))

    def delete_set(self, key: str) -> int:
        _check_name(key, MANIFEST)
        names = [name for _, name, _ in self._objects(f"{key}/")]
        for start in range(0, len(names), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = [{"Key": self._object(key, n)} for n in names[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(names)

    def _objects(self, under: str) -> Iterator[tuple[str, str, datetime]]:
        """(key, name, last modified) of the set objects under the prefix (other objects skipped,
        e.g. a catalog snapshot kept next to the artifacts)."""
        root = f"{self.prefix.strip('/')}/" if self.prefix.strip("/") else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + under)
        for page in pages:
            for obj in page.get("Contents", []):
                key, _, name = obj["Key"][len(root):].partition("/")
                if name and "/" not in name:
                    yield key, name, obj["LastModified"]

    def partial_uploads(self, before: datetime, remove: bool) -> list[str]:
        prefix = self.prefix.strip("/")
        found = []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=f"{prefix}/" if prefix else "")
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    found.append(upload["Key"])
                    if remove:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
        return found


def _stream(body) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def _reason(exc: Exception) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__
