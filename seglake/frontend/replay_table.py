"""The replay cache, shared by every frontend process of one server.

Connections are spread over the frontends by the kernel, so a replay usually
reaches another frontend than the original request did; a per-process cache
would catch it only one time in N. The table therefore lives in one file,
``DATA_DIR/.seglake-replay``, that every frontend maps into memory (MAP_SHARED:
the page cache is the shared memory; nothing is ever fsynced, since a replay
window that does not survive a restart loses nothing — a restart takes longer
than most TTLs, and signatures older than 15 minutes fail their clock check).

Rules this module keeps:

* Fixed size: ``slots`` entries of 40 bytes (the 32-byte signature, then its
  expiry as u64 milliseconds since the epoch, big-endian; expiry 0 = empty).
  Memory and disk use never grow.
* Open addressing: a signature (an HMAC output, so already uniformly
  distributed) starts at slot ``first 8 bytes mod slots`` and occupies the
  first empty or expired slot of the next ``PROBE`` slots; when all of them
  hold live entries, the one closest to expiry is overwritten (counted in
  ``evicted_live``: the cache is too small for the request rate and TTL).
* Check-and-insert runs under an exclusive ``flock`` on the file, so two
  frontends receiving the same signature at the same moment see one insert
  and one replay. The lock is held for a few memory accesses.
* The first frontend to open a file of the wrong size (a new file, or one
  left by a run with another ``--replay-cache-max``) zeroes and resizes it
  under the same lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from pathlib import Path
from typing import Final

from seglake.format.layout import REPLAY_FILE

ENTRY: Final = struct.Struct(">32sQ")
PROBE: Final = 16
FILE_NAME: Final = REPLAY_FILE


class SharedReplayTable:
    """Signatures seen within ``ttl`` seconds, shared through a mapped file."""

    def __init__(self, path: Path, ttl: float, slots: int) -> None:
        self.path = path
        self.ttl = ttl
        self.slots = max(PROBE, slots)
        self.evicted_live = 0
        size = self.slots * ENTRY.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size != size:
                    os.ftruncate(self._fd, 0)  # stale layout: start empty
                    os.ftruncate(self._fd, size)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    @staticmethod
    def _digest(signature: str) -> bytes:
        try:
            raw = bytes.fromhex(signature)
        except ValueError:
            raw = b""
        return raw if len(raw) == 32 else hashlib.sha256(signature.encode()).digest()

    def seen(self, signature: str, now: float) -> bool:
        """True if ``signature`` was recorded within ``ttl`` (by any
        frontend); records it otherwise. ``now`` is wall-clock seconds."""
        digest = self._digest(signature)
        now_ms = int(now * 1000)
        start = int.from_bytes(digest[:8], "big") % self.slots
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            target = -1
            oldest = -1
            oldest_expiry = 0
            for i in range(PROBE):
                slot = (start + i) % self.slots
                key, expiry = ENTRY.unpack_from(self._map, slot * ENTRY.size)
                if expiry > now_ms:
                    if key == digest:
                        return True
                    if oldest < 0 or expiry < oldest_expiry:
                        oldest, oldest_expiry = slot, expiry
                elif target < 0:
                    target = slot
            if target < 0:
                target = oldest
                self.evicted_live += 1
            expires = now_ms + max(1, int(self.ttl * 1000))
            ENTRY.pack_into(self._map, target * ENTRY.size, digest, expires)
            return False
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
