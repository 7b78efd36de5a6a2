"""Every way Seglake offers to destroy a locked version, tried in turn (issue #19).

One store, three locked versions (COMPLIANCE retention, legal hold, GOVERNANCE
retention), then: S3 deletes by version id, DeleteObjects, overwrites and a
CopyObject onto the key, retention shortened or removed, a lifecycle pass,
``gc-run`` and ``gc-rewrite-run`` with ``--force``, ``bucket delete --force``,
a new all-powerful key and an allow-all bucket policy, maintenance mode, the
wall clock jumped forward while running and set back across a restart, and
``rebuild-index`` from a deleted ``meta.db``. After each, and at the end, every
locked version's bytes read back intact, and its lock is still in force.

The wall clock is moved through the test hook ``SEGLAKE_TEST_CLOCK_OFFSET_FILE``
(``seglake/failpoints.py``), which the writer adds to its clock readings.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e._helpers import cli, cli_json, status_and_code
from tests.harness import SeglakeServer

VAULT = "vault"
YEAR_MS = 365 * 86_400_000


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.clock_file = root / "clock-offset"
        self.clock_file.write_text("0")
        self.srv: SeglakeServer | None = None
        self.versions: dict[str, tuple[str, bytes]] = {}
        self.starts = 0

    def start(self) -> SeglakeServer:
        self.starts += 1
        self.srv = SeglakeServer(
            self.data, frontends=1,
            extra_args=["--lifecycle-day-seconds", "1", "--lifecycle-interval", "3600"],
            env={"SEGLAKE_TEST_CLOCK_OFFSET_FILE": str(self.clock_file)},
            log_path=self.root / f"server-{self.starts}.log",
        ).start()  # fmt: skip
        return self.srv

    def stop(self) -> None:
        if self.srv is not None:
            self.srv.close()
            self.srv = None

    @property
    def s3(self) -> Any:
        assert self.srv is not None
        return self.srv.s3()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    st = Store(tmp_path_factory.mktemp("lock-attacks"))
    st.start()
    s3 = st.s3
    s3.create_bucket(Bucket=VAULT, ObjectLockEnabledForBucket=True)
    rng = random.Random(19)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    specs: dict[str, dict[str, Any]] = {
        "compliance": {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until},
        "hold": {"ObjectLockLegalHoldStatus": "ON"},
        "governance": {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until},
    }
    for key, extra in specs.items():
        body = rng.randbytes(5 * 1024 * 1024 + 123)  # more than one chunk
        vid = s3.put_object(Bucket=VAULT, Key=key, Body=body, **extra)["VersionId"]
        st.versions[key] = (vid, body)
    try:
        yield st
    finally:
        st.stop()


def assert_intact(st: Store) -> None:
    s3 = st.s3
    for key, (vid, body) in st.versions.items():
        got = s3.get_object(Bucket=VAULT, Key=key, VersionId=vid)
        assert got["Body"].read() == body, key
        if key == "hold":
            assert got["ObjectLockLegalHoldStatus"] == "ON"
        else:
            assert got["ObjectLockMode"] == key.upper()


def assert_refused(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return status_and_code(info)


def test_s3_deletes(store: Store) -> None:
    s3 = store.s3
    for key, (vid, _) in store.versions.items():
        for bypass in (False, True):
            if key == "governance" and bypass:
                continue  # bypass is the documented way out of GOVERNANCE, not an attack
            assert assert_refused(
                s3.delete_object, Bucket=VAULT, Key=key, VersionId=vid,
                BypassGovernanceRetention=bypass,
            ) == (403, "AccessDenied")  # fmt: skip
    result = s3.delete_objects(
        Bucket=VAULT,
        Delete={"Objects": [{"Key": k, "VersionId": v} for k, (v, _) in store.versions.items()]},
    )
    assert sorted(e["Code"] for e in result["Errors"]) == ["AccessDenied"] * 3
    assert_intact(store)


def test_overwrites_copies_and_retention_changes(store: Store) -> None:
    s3 = store.s3
    for key in store.versions:
        s3.put_object(Bucket=VAULT, Key=key, Body=b"overwritten")
        s3.copy_object(Bucket=VAULT, Key=key, CopySource={"Bucket": VAULT, "Key": "compliance",
                                                          "VersionId": store.versions["compliance"][0]})  # fmt: skip
        s3.delete_object(Bucket=VAULT, Key=key)  # a delete marker on top
    vid = store.versions["compliance"][0]
    sooner = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    for retention in ({"Mode": "COMPLIANCE", "RetainUntilDate": sooner},
                      {"Mode": "GOVERNANCE", "RetainUntilDate": sooner}):  # fmt: skip
        assert assert_refused(
            s3.put_object_retention, Bucket=VAULT, Key="compliance", VersionId=vid,
            Retention=retention, BypassGovernanceRetention=True,
        ) == (403, "AccessDenied")  # fmt: skip
    assert_intact(store)


def test_lifecycle_pass(store: Store) -> None:
    s3 = store.s3
    for key in store.versions:  # the locked versions become noncurrent
        s3.put_object(Bucket=VAULT, Key=key, Body=b"newer")
    s3.put_bucket_lifecycle_configuration(
        Bucket=VAULT,
        LifecycleConfiguration={"Rules": [{
            "ID": "expire-all", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Days": 1}, "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        }]},
    )  # fmt: skip
    import time

    time.sleep(2.5)  # two lifecycle days of one second
    assert store.srv is not None
    code, doc = cli_json(store.data, "lifecycle-run", VAULT)
    assert code == 0, doc
    # Every locked version was planned for deletion, and skipped by the writer.
    skipped = {reason: n for reason, n in doc["skipped"].items() if "Object Lock" in reason}
    assert sum(skipped.values()) >= 3, doc
    assert_intact(store)
    s3.delete_bucket_lifecycle(Bucket=VAULT)


def test_gc_and_gc_rewrite_forced(store: Store) -> None:
    # Garbage around the locked versions, so both passes have work to do.
    s3 = store.s3
    for i in range(4):
        vid = s3.put_object(Bucket=VAULT, Key=f"junk{i}", Body=random.randbytes(1 << 20))[
            "VersionId"
        ]
        s3.delete_object(Bucket=VAULT, Key=f"junk{i}", VersionId=vid)
    for args in (("gc-run", "--force", "--yes"), ("gc-rewrite-run", "--force", "--yes")):
        out = cli(store.data, *args)
        assert out.returncode == 0, out.stdout + out.stderr
        assert_intact(store)


def test_bucket_delete_force(store: Store) -> None:
    out = cli(store.data, "bucket", "delete", VAULT, "--force")
    assert out.returncode != 0 and "Object Lock" in (out.stderr + out.stdout)
    assert_intact(store)


def test_keys_policies_and_maintenance(store: Store) -> None:
    import boto3
    from botocore.config import Config

    out = cli(store.data, "keys", "create", "--key-access", "mallory", "--key-secret",
              "mallory-secret-x", "--key-policy",
              json.dumps({"Version": "2012-10-17", "Statement": [
                  {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert store.srv is not None
    mallory = boto3.client(
        "s3", endpoint_url=store.srv.endpoint, aws_access_key_id="mallory",
        aws_secret_access_key="mallory-secret-x", region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip
    store.s3.put_bucket_policy(Bucket=VAULT, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:*",
             "Resource": [f"arn:aws:s3:::{VAULT}", f"arn:aws:s3:::{VAULT}/*"]}]}))  # fmt: skip
    for key in ("compliance", "hold"):
        vid = store.versions[key][0]
        assert assert_refused(
            mallory.delete_object, Bucket=VAULT, Key=key, VersionId=vid,
            BypassGovernanceRetention=True,
        ) == (403, "AccessDenied")  # fmt: skip
    assert cli(store.data, "maintenance", "enable").returncode == 0
    try:
        vid = store.versions["compliance"][0]
        status, _ = assert_refused(store.s3.delete_object, Bucket=VAULT, Key="compliance",
                                   VersionId=vid)  # fmt: skip
        assert status in (403, 503)
        out = cli(store.data, "gc-run", "--force", "--yes")
        assert out.returncode in (0, 1), out.stderr
    finally:
        assert cli(store.data, "maintenance", "disable").returncode == 0
    store.s3.delete_bucket_policy(Bucket=VAULT)
    assert_intact(store)


def test_clock_jumps(store: Store) -> None:
    s3 = store.s3
    vid = store.versions["compliance"][0]
    # Ten years ahead while running: not believed, the lock clock keeps to
    # monotonic time.
    store.clock_file.write_text(str(10 * YEAR_MS))
    s3.put_object(Bucket=VAULT, Key="tick", Body=b"a batch reads the clock")
    assert assert_refused(s3.delete_object, Bucket=VAULT, Key="compliance",
                          VersionId=vid) == (403, "AccessDenied")  # fmt: skip
    # Set back a year, across a restart: the stored high-water mark holds.
    store.clock_file.write_text(str(-YEAR_MS))
    store.stop()
    store.start()
    s3 = store.s3
    assert assert_refused(s3.delete_object, Bucket=VAULT, Key="compliance",
                          VersionId=vid) == (403, "AccessDenied")  # fmt: skip
    store.clock_file.write_text("0")
    assert_intact(store)


def test_rebuild_index_from_deleted_meta_db(store: Store) -> None:
    store.stop()
    for name in ("meta.db", "meta.db-wal", "meta.db-shm"):
        (store.data / name).unlink(missing_ok=True)
    out = cli(store.data, "rebuild-index", "--force")
    assert out.returncode == 0, out.stderr
    store.start()
    s3 = store.s3
    for key, (vid, _) in store.versions.items():
        assert assert_refused(s3.delete_object, Bucket=VAULT, Key=key,
                              VersionId=vid) == (403, "AccessDenied")  # fmt: skip
    assert (
        s3.get_object_lock_configuration(Bucket=VAULT)["ObjectLockConfiguration"][
            "ObjectLockEnabled"
        ]
        == "Enabled"
    )
    assert assert_refused(
        s3.put_bucket_versioning, Bucket=VAULT, VersioningConfiguration={"Status": "Suspended"}
    ) == (409, "InvalidBucketState")  # fmt: skip
    assert_intact(store)
