-- The queue's schema at version 3 (migrations 1 to 3 as they shipped), frozen
-- for tests/check_store.c: a file built from it must migrate to the current
-- schema with its data. Never edit it.
-- migration 0 -> 1
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
-- migration 1 -> 2
CREATE TABLE requests (
	id INTEGER PRIMARY KEY,
	kind TEXT NOT NULL,
	case_id INTEGER NOT NULL DEFAULT 0,
	watch TEXT,
	path TEXT,
	created INTEGER NOT NULL
);
CREATE INDEX cases_state ON cases (state, held);
CREATE INDEX cases_pending ON cases (next_attempt, id)
	WHERE state NOT IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX cases_watch ON cases (watch, id);
CREATE INDEX events_case ON events (case_id, id);
-- migration 2 -> 3
CREATE INDEX remotes_status ON remotes (case_id, kind, key, url)
	WHERE url IS NOT NULL;
