"""A key's rows under the last-writer-wins rule (``seglake/protocol/lww.py``),
in the writer's transaction: which rows are CONFLICT and which is current.

Every mutation that changes the set of a key's live rows in a way the LWW
order decides (a remote version applied, a version deleted here or there)
recomputes the key here, so every site derives ``current`` by the same
rule from the same rows and they converge.
"""

from __future__ import annotations

import apsw

from seglake.meta.schema import query
from seglake.protocol import lww


def recompute_key(conn: apsw.Connection, bucket: str, key: str) -> int:
    """Set every row's ACTIVE/CONFLICT state and the key's ``current`` row
    by ``lww.decide_key``; the number of rows that became CONFLICT."""
    rows = query(
        conn,
        "SELECT id, uid, hlc, site, prev_hlc, prev_site, state, delete_marker, tombstone, "
        "version_id FROM versions WHERE bucket = ? AND key = ?",
        (bucket, key),
    )
    ids: dict[str, int] = {}
    lrows: list[lww.Row] = []
    null_rows: set[str] = set()
    for row_id, uid, hlc, site, prev_hlc, prev_site, state, marker, tomb, vid in rows:
        ids[str(uid)] = int(row_id)
        prev = None if prev_hlc is None else (int(prev_hlc), str(prev_site or ""))
        lrows.append(
            lww.Row(str(uid), int(hlc), str(site), prev, str(state), bool(marker), bool(tomb))
        )
        if vid == "null":
            null_rows.add(str(uid))
    verdict = lww.decide_key(lrows)
    current_row = next((r for r in lrows if r.uid == verdict.current), None)
    has_tombstone = any(r.tombstone for r in lrows)
    became_conflict = 0
    for r in lrows:
        new = verdict.states[r.uid]
        if has_tombstone and new == lww.ACTIVE and r.uid in null_rows and r.uid != verdict.current:
            # A key an unversioned DELETE left a tombstone on keeps one null
            # version, as S3 does: a put older than the tombstone (late,
            # from another site) or the tombstone a newer put replaced goes.
            new = lww.DELETED
        if new != r.state:
            conn.execute("UPDATE versions SET state = ? WHERE id = ?", (new, ids[r.uid]))
            became_conflict += new == lww.CONFLICT
    if current_row is None or current_row.tombstone:
        # A tombstone is the key's LWW winner but S3 sees no version at all.
        conn.execute("DELETE FROM current WHERE bucket = ? AND key = ?", (bucket, key))
    else:
        conn.execute(
            "INSERT INTO current(bucket, key, version) VALUES (?, ?, ?) "
            "ON CONFLICT(bucket, key) DO UPDATE SET version = excluded.version",
            (bucket, key, ids[current_row.uid]),
        )
    return became_conflict
