"""Server-side encryption in the frontends: which key seals a new object, and
which opens a stored one (``docs/design-version-metadata.md`` §4).

Rules this module keeps:

* Frontends hold the keys; the writer only stores what they send (wrapped
  KEKs through ``EnsureKek``, sealed chunks through ``Append``).
* Master keys are read from the master file and any ``<file>.<id>`` a
  rotation kept, again whenever a KEK names a master not yet loaded (a
  rotation by ``seglake sse rotate-master`` while the server runs).
  Unwrapped KEKs are cached by id: a rotation changes their wrapping, never
  their value, so the cache stays right.
* SSE-C: the customer key wraps a fresh DEK; only a salted HMAC of the key
  is stored. A read without the key, with a wrong one, or with a key for an
  object that has none gets AWS's errors (``seglake/sse/headers.py``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from seglake.config import Config
from seglake.errors import S3Error
from seglake.frontend.http import Request
from seglake.frontend.writer_client import WriterClient
from seglake.ipc.messages import EnsureKek, KekRow
from seglake.meta import sse_reads
from seglake.meta.reads import MetaReader
from seglake.meta.schema import query
from seglake.protocol.bucket_encryption import stored_algorithm
from seglake.sse import keys
from seglake.sse.chunks import (
    CUSTOMER,
    ChunkCipher,
    ChunkOpenError,
    SseInfo,
    chunk_keys,
    new_nonce_base,
)
from seglake.sse.headers import (
    AES256,
    MSG_MISSING_ON_READ,
    MSG_NOT_APPLICABLE,
    MSG_WRONG_KEY,
    CustomerKey,
    customer_key,
    new_object_encryption,
)

log = logging.getLogger(__name__)

SSE_S3_HEADERS: list[tuple[bytes, bytes]] = [(b"x-amz-server-side-encryption", AES256.encode())]


def stored_encryption(reader: MetaReader, bucket: str) -> str | None:
    """The bucket's default-encryption configuration (canonical XML), or None."""
    rows = query(reader.conn, "SELECT encryption FROM buckets WHERE name = ?", (bucket,))
    return None if not rows or rows[0][0] is None else str(rows[0][0])


def bucket_default_sse(reader: MetaReader, bucket: str) -> str | None:
    """The default encryption of ``bucket`` ("AES256"), or None for none."""
    return stored_algorithm(stored_encryption(reader, bucket))


def secure(cfg: Config, req: Request) -> bool:
    """Whether a customer key may travel on this request (TLS, or the test flag)."""
    return req.scope.get("scheme") == "https" or cfg.sse_c_allow_http


def response_headers(info: SseInfo | None, ck: CustomerKey | None) -> list[tuple[bytes, bytes]]:
    """What a response about a version encrypted as ``info`` says of it."""
    if info is None:
        return []
    if info.customer:
        return ck.response_headers() if ck is not None else []
    return list(SSE_S3_HEADERS)


@dataclass(frozen=True)
class Sealing:
    """How a new object (or upload) is encrypted: its manifest ``sse`` and DEK."""

    info: SseInfo
    dek: bytes
    customer: CustomerKey | None = None

    def cipher(self, part: int = 0) -> ChunkCipher:
        return ChunkCipher(self.dek, self.info.nonces[part])

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        return response_headers(self.info, self.customer)


class VersionCipher:
    """Opens the sealed chunks of one version (or part list), in object order."""

    def __init__(self, info: SseInfo, dek: bytes, size: int, parts: list[int] | None) -> None:
        try:
            self._keys = chunk_keys(info, size, parts)
        except ValueError as exc:
            raise S3Error("ObjectDamaged", message=str(exc)) from None
        self._ciphers = [ChunkCipher(dek, n) for n in info.nonces]

    def open(self, index: int, sealed: bytes) -> bytes:
        if index >= len(self._keys):
            raise S3Error("ObjectDamaged", message="more chunks than the object's size needs")
        part, i = self._keys[index]
        try:
            return self._ciphers[part].open(i, sealed)
        except ChunkOpenError:
            # The chunk passed BLAKE3, so its bytes are what was written:
            # the key is not the one it was sealed with.
            log.error("a sealed chunk does not open with its data key")
            raise S3Error(
                "InternalError", message="the object's data key does not open it"
            ) from None


class SseKeyring:
    def __init__(self, cfg: Config, reader: MetaReader, writer: WriterClient) -> None:
        self.cfg = cfg
        self.reader = reader
        self.writer = writer
        self._masters: dict[str, bytes] = {}
        self._keks: dict[str, bytes] = {}
        self._current: str | None = None

    # ---- keys ------------------------------------------------------------
    def _master(self, mid: str) -> bytes:
        key = self._masters.get(mid)
        if key is None:
            try:
                self._masters = keys.load_all(self.cfg.sse_master_path)
            except keys.SseKeyError as exc:
                log.error("SSE master key: %s", exc)
                raise S3Error("InternalError", message="the SSE master key is unreadable") from None
            key = self._masters.get(mid)
        if key is None:
            log.error(
                "SSE master key %s is missing (%s): encrypted objects cannot be read",
                mid,
                self.cfg.sse_master_path,
            )
            raise S3Error("InternalError", message="the SSE master key is missing")
        return key

    def _unwrap(self, row: KekRow) -> bytes:
        try:
            kek = keys.unwrap_kek(self._master(row.master_id), row.id, row.wrapped)
        except keys.SseKeyError as exc:
            log.error("SSE: %s", exc)
            raise S3Error("InternalError", message="an SSE key does not unwrap") from None
        self._keks[row.id] = kek
        return kek

    def kek(self, kek_id: str) -> bytes:
        hit = self._keks.get(kek_id)
        if hit is not None:
            return hit
        row = sse_reads.kek(self.reader.conn, kek_id)
        if row is None:
            log.error("SSE: KEK %s is not in meta.db", kek_id)
            raise S3Error("InternalError", message="the object's key is missing")
        return self._unwrap(KekRow(row.id, row.wrapped, row.master_id))

    async def current_kek(self) -> tuple[str, bytes]:
        if self._current is not None:
            return self._current, self._keks[self._current]
        row = sse_reads.current_kek(self.reader.conn)
        if row is not None:
            stored = KekRow(row.id, row.wrapped, row.master_id)
        else:
            try:
                master = keys.ensure_master(self.cfg.sse_master_path)
            except (OSError, keys.SseKeyError) as exc:
                log.error("SSE master key %s: %s", self.cfg.sse_master_path, exc)
                raise S3Error("InternalError", message="the SSE master key is unusable") from None
            mid = keys.master_id(master)
            self._masters[mid] = master
            kid, kek = keys.new_kek_id(), keys.new_key()
            candidate = KekRow(kid, keys.wrap_kek(master, kid, kek), mid)
            stored = (await self.writer.call(EnsureKek(candidate=candidate))).kek
        key = self._unwrap(stored)
        self._current = stored.id
        return stored.id, key

    # ---- new objects -----------------------------------------------------
    async def sealing_for(
        self, req: Request, *, bucket_default: str | None = None, parts: int = 1
    ) -> Sealing | None:
        """How a write (PUT, Copy destination, CreateMultipartUpload) must be
        encrypted: by its headers, else by the bucket's default; None: not."""
        sse, ck = new_object_encryption(req.headers, secure=secure(self.cfg, req))
        if ck is not None:
            return self.seal_customer(ck, parts=parts)
        if sse is None and bucket_default is None:
            return None
        return await self.seal_s3(parts=parts)

    async def seal_s3(self, *, parts: int = 1) -> Sealing:
        kid, kek = await self.current_kek()
        dek = keys.new_key()
        nonces = tuple(new_nonce_base() for _ in range(parts))
        return Sealing(SseInfo(kek=kid, wrapped_dek=keys.wrap_dek(kek, dek), nonces=nonces), dek)

    @staticmethod
    def seal_customer(ck: CustomerKey, *, parts: int = 1) -> Sealing:
        dek, salt = keys.new_key(), os.urandom(keys.SALT_BYTES)
        info = SseInfo(
            kek=CUSTOMER,
            wrapped_dek=keys.wrap_dek(ck.key, dek),
            nonces=tuple(new_nonce_base() for _ in range(parts)),
            salt=salt,
            check=keys.key_check(salt, ck.key),
        )
        return Sealing(info, dek, ck)

    # ---- stored objects --------------------------------------------------
    def dek_for(self, info: SseInfo, ck: CustomerKey | None) -> bytes:
        """The DEK of a stored version, checking the request's SSE-C key."""
        if info.customer:
            if ck is None:
                raise S3Error("InvalidRequest", message=MSG_MISSING_ON_READ)
            assert info.salt is not None and info.check is not None  # from_meta checks
            if not keys.key_matches(info.salt, info.check, ck.key):
                raise S3Error("AccessDenied", message=MSG_WRONG_KEY)
            try:
                return keys.unwrap_dek(ck.key, info.wrapped_dek)
            except keys.SseKeyError:
                raise S3Error("AccessDenied", message=MSG_WRONG_KEY) from None
        if ck is not None:
            raise S3Error("InvalidRequest", message=MSG_NOT_APPLICABLE)
        try:
            return keys.unwrap_dek(self.kek(info.kek), info.wrapped_dek)
        except keys.SseKeyError as exc:
            log.error("SSE: %s", exc)
            raise S3Error(
                "InternalError", message="the object's data key does not unwrap"
            ) from None

    def read_key(
        self, req: Request, meta: dict[str, object], *, source: bool = False
    ) -> tuple[SseInfo | None, CustomerKey | None]:
        """The SSE facts of a stored version and the request's customer key
        for it (``source``: the copy-source headers), checked: a request for
        an SSE-C version must carry its key, and one for any other must not."""
        ck = customer_key(req.headers, source=source, secure=secure(self.cfg, req))
        try:
            info = SseInfo.from_meta(dict(meta))
        except ValueError as exc:
            log.error("SSE: %s", exc)
            raise S3Error("ObjectDamaged") from None
        if info is None:
            if ck is not None:
                raise S3Error("InvalidRequest", message=MSG_NOT_APPLICABLE)
            return None, None
        if info.customer:
            self.dek_for(info, ck)  # the key check, before anything is sent
        elif ck is not None:
            raise S3Error("InvalidRequest", message=MSG_NOT_APPLICABLE)
        return info, ck

    def version_cipher(
        self, info: SseInfo, ck: CustomerKey | None, size: int, parts: list[int] | None
    ) -> VersionCipher:
        return VersionCipher(info, self.dek_for(info, ck), size, parts)
