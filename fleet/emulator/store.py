"""The emulator's SQLite state: it outlives the process, so a restarted emulator carries on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS scale_sets (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    reimages_done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    scale_set TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    zone TEXT,
    update_domain INTEGER NOT NULL,
    fault_domain INTEGER NOT NULL,
    os_disk TEXT NOT NULL,
    data_disks TEXT NOT NULL,
    busy_operation TEXT,
    ready_at REAL NOT NULL DEFAULT 0,
    forced_health TEXT,
    deallocated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scale_set, instance_id)
);
CREATE TABLE IF NOT EXISTS os_disks (
    name TEXT PRIMARY KEY,
    scale_set TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    image TEXT NOT NULL,
    app_healthy INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    definition TEXT NOT NULL,
    version TEXT NOT NULL,
    image TEXT NOT NULL,
    regions TEXT NOT NULL,
    exclude_from_latest INTEGER NOT NULL DEFAULT 0,
    published_at REAL NOT NULL,
    PRIMARY KEY (definition, version)
);
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    scale_set TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time REAL NOT NULL,
    complete_at REAL NOT NULL,
    end_time REAL,
    image TEXT,
    target_disk TEXT,
    previous_os_disk TEXT,
    os_disk TEXT,
    error_code TEXT,
    error_message TEXT,
    request_count INTEGER NOT NULL DEFAULT 1,
    ready_at REAL
);
-- One ARM long-running operation (what Azure-AsyncOperation polls): the instance operations
-- it started (operations.arm_operation) decide its status; none means it is done.
CREATE TABLE IF NOT EXISTS arm_operations (
    id TEXT PRIMARY KEY,
    scale_set TEXT NOT NULL,
    location TEXT NOT NULL,
    start_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS extension_versions (
    publisher TEXT NOT NULL,
    type TEXT NOT NULL,
    version TEXT NOT NULL,
    regions TEXT NOT NULL,
    PRIMARY KEY (publisher, type, version)
);
-- The extensions installed on each instance (besides the Application Health extension, which
-- the scale set's spec describes): the version installed and its provisioning status.
CREATE TABLE IF NOT EXISTS instance_extensions (
    scale_set TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    publisher TEXT NOT NULL,
    type TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'succeeded',
    error_code TEXT,
    changed_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (scale_set, instance_id, name)
);
-- Microsoft.Maintenance (fleet/emulator/maintenance.py): configurations by lowercased name, and
-- their assignments to scale sets; each the JSON document a GET answers.
CREATE TABLE IF NOT EXISTS maintenance_configurations (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS configuration_assignments (
    scale_set TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (scale_set, name)
);
-- Microsoft.Insights metric alert rules (fleet/emulator/insights.py), by lowercased name: the
-- status, scripted answers (JSON list) and the rule's own faults.
CREATE TABLE IF NOT EXISTS metric_alerts (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    status TEXT NOT NULL,
    answers TEXT NOT NULL DEFAULT '[]',
    throttle_calls INTEGER NOT NULL DEFAULT 0,
    fail_calls INTEGER NOT NULL DEFAULT 0,
    reads INTEGER NOT NULL DEFAULT 0,
    changed_at REAL NOT NULL
);
-- Every instance's life (MaxSurge: capacity must never drop): created, provisioned, booted,
-- deletion begun and done. Kept after the instance is gone.
CREATE TABLE IF NOT EXISTS instance_records (
    scale_set TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    zone TEXT,
    created_at REAL NOT NULL,
    provisioned_at REAL,
    ready_at REAL,
    delete_started_at REAL,
    deleted_at REAL,
    PRIMARY KEY (scale_set, instance_id)
);
-- Core quota limits a scenario set, per region and VM family ('cores': the regional total).
CREATE TABLE IF NOT EXISTS core_quotas (
    location TEXT NOT NULL,
    family TEXT NOT NULL,
    core_limit INTEGER NOT NULL,
    PRIMARY KEY (location, family)
);
CREATE INDEX IF NOT EXISTS operations_due ON operations (status, complete_at);
CREATE INDEX IF NOT EXISTS operations_by_set ON operations (scale_set, seq);
"""


def open_database(path: str | Path) -> sqlite3.Connection:
    """One connection, used from the server's single event loop thread."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    migrate(db)
    return db


# Columns added since the first schema: (table, column, definition).
ADDED_COLUMNS = [
    ("operations", "ready_at", "REAL"),
    ("operations", "arm_operation", "TEXT"),
    ("instances", "error_code", "TEXT"),
    ("scale_sets", "etag", "INTEGER NOT NULL DEFAULT 1"),
    ("images", "end_of_life", "TEXT"),
    ("images", "excluded_regions", "TEXT NOT NULL DEFAULT '[]'"),
    ("operations", "extension_name", "TEXT"),
    ("operations", "extension_version", "TEXT"),
    ("instances", "deallocated", "INTEGER NOT NULL DEFAULT 0"),
]


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an older emulator up to date (state files outlive versions)."""
    for table, column, definition in ADDED_COLUMNS:
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    # Instances placed before instance_records existed: there since their set was created.
    db.execute(
        "INSERT OR IGNORE INTO instance_records (scale_set, instance_id, zone, created_at,"
        " provisioned_at, ready_at) SELECT i.scale_set, i.instance_id, i.zone, s.created_at,"
        " s.created_at, MAX(i.ready_at, s.created_at)"
        " FROM instances i JOIN scale_sets s ON s.name = i.scale_set"
    )
