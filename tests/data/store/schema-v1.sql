-- Frozen copy of migration 1 (schema version 1) of src/store.c.
-- check_store builds a version-1 queue from it and migrates that; never edit it.
CREATE TABLE watches (
	name TEXT PRIMARY KEY NOT NULL,
	path TEXT NOT NULL,
	dest TEXT NOT NULL,
	slug TEXT NOT NULL,
	updated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE cases (
	id INTEGER PRIMARY KEY,
	watch TEXT NOT NULL,
	name TEXT NOT NULL,
	path TEXT,
	fingerprint TEXT NOT NULL,
	state TEXT NOT NULL,
	resume_state TEXT,
	held INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_attempt INTEGER NOT NULL DEFAULT 0,
	error TEXT,
	bytes_done INTEGER NOT NULL DEFAULT 0,
	bytes_total INTEGER NOT NULL DEFAULT 0,
	results TEXT,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL,
	lease_owner TEXT,
	lease_until INTEGER NOT NULL DEFAULT 0,
	UNIQUE (watch, name, fingerprint)
);
CREATE TABLE files (
	id INTEGER PRIMARY KEY,
	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
	relpath TEXT NOT NULL,
	upload_name TEXT,
	socket TEXT,
	size INTEGER NOT NULL,
	mtime_ns INTEGER NOT NULL,
	upload_pk TEXT,
	upload_url TEXT,
	multipart_id TEXT,
	parts_done INTEGER NOT NULL DEFAULT 0,
	bytes_done INTEGER NOT NULL DEFAULT 0,
	completed INTEGER NOT NULL DEFAULT 0,
	sha256 TEXT,
	UNIQUE (case_id, relpath)
);
CREATE TABLE parts (
	file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
	number INTEGER NOT NULL,
	etag TEXT NOT NULL,
	size INTEGER NOT NULL,
	PRIMARY KEY (file_id, number)
) WITHOUT ROWID;
CREATE TABLE remotes (
	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
	kind TEXT NOT NULL,
	key TEXT NOT NULL DEFAULT '',
	intent_only INTEGER NOT NULL DEFAULT 1,
	title TEXT,
	pk TEXT,
	url TEXT,
	status TEXT,
	json TEXT,
	updated INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (case_id, kind, key)
);
CREATE TABLE outputs (
	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
	socket TEXT NOT NULL,
	super_kind TEXT NOT NULL,
	value_json TEXT,
	url TEXT,
	path TEXT,
	PRIMARY KEY (case_id, socket)
);
CREATE TABLE events (
	id INTEGER PRIMARY KEY,
	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
	time INTEGER NOT NULL,
	state TEXT,
	message TEXT
);
