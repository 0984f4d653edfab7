/*
 * store.c: the SQLite queue.
 *
 * DESIGN
 * The queue is one SQLite file, STATE_DIR/gcdrop.db. This module owns its
 * schema, every SQL statement that touches it and the mapping of SQLite's result
 * codes to negative errno values. It never logs above debug: it returns errors,
 * and store_errmsg() or the open's message says what SQLite said.
 *
 * Journal and durability. The file is in WAL mode, so that `gcdrop status` (a
 * separate read-only connection) never blocks the daemon's writes and is never
 * blocked by them. Every commit survives a kill of the process (a committed
 * transaction is in the -wal file when COMMIT returns). Against power loss,
 * every commit is synced (fdatasync of the -wal file before COMMIT returns,
 * what synchronous=FULL does in WAL mode) except a commit whose changed rows
 * all come from re-doable writes, which is left to the next synced commit or
 * checkpoint (synchronous=NORMAL). The re-doable writes are store_part_done(),
 * store_file_set_completed() and store_case_set_progress(); everything else
 * (cases, states, events, upload pks, remote intents and objects, requests,
 * outputs) is synced, so the intent recorded before a create request
 * (store_remote_intent) and the upload pk recorded after one are on disk
 * before the pipeline sends anything that depends on them, as before.
 *
 * Why losing re-doable commits is safe. The -wal file is a log whose frames are
 * checksummed in a chain: after a power cut SQLite's recovery keeps a prefix
 * of the commits, the last one whose frames are all intact. Syncing a commit
 * therefore makes every earlier commit durable too, and what a power cut can
 * take is only a run of re-doable commits after the last synced one. Those
 * hold (1) part records: after a restart a file with an upload lists the
 * parts the platform holds (list-parts) and that answer, not the store,
 * decides which parts are sent (upload.h), so a lost part record costs at
 * most that part's PUT again; (2) a completed flag: the file reconciles, the
 * platform refuses list-parts of a completed upload, the GET of the upload
 * that follows (contract 7.4) says Completed and the flag is recorded again:
 * nothing is sent twice; (3) progress bytes, which only `gcdrop status`
 * shows. Nothing that creates an object on the platform depends on a
 * re-doable record alone: an import or a job starts after the case's state
 * change (synced, so the completions before it are durable with it). A lost
 * re-doable commit is thus the same as a SIGKILL just before it, which the
 * pipeline's recovery handles, with at most a part re-sent; a case is never
 * lost or doubled by it.
 *
 * How a commit is classified: sqlite3_total_changes64() counts every row
 * changed on the connection; the re-doable functions add the rows they
 * changed to redo_changes. At each commit (the WAL hook, which SQLite calls
 * after every commit in WAL mode, before COMMIT returns) the rows changed
 * since the last commit are compared with redo_changes: only when they are
 * equal and not zero is the sync skipped; DDL-only commits (zero rows) are
 * synced. The connection runs with synchronous=NORMAL and the hook syncs the
 * -wal file itself (SQLITE_FCNTL_JOURNAL_POINTER, xSync), so that the
 * decision is made per commit (FULL would also pad a synced commit to a sector
 * boundary on storage without powersafe overwrite; the unix VFS assumes it,
 * so FULL does not pad here either); the hook replaces SQLite's automatic
 * checkpoint, so it checkpoints at the same threshold (1000 frames). The
 * daemon batches the writes of one loop turn in one store_begin()/
 * store_commit(), so a sync is paid per turn at most. The read-write handle
 * keeps the -wal and -shm files after close
 * (SQLITE_FCNTL_PERSIST_WAL, the -wal truncated to zero bytes) so that readers
 * without write access to the state directory can still open the queue.
 *
 * Schema versions. PRAGMA user_version is the number of migrations applied.
 * migrations[i] takes version i to i + 1; all pending ones run in one IMMEDIATE
 * transaction, which re-reads the version first, so two processes that open an
 * old file at the same time migrate it once and a reader never sees a version
 * in between. A file whose version is newer than ours is refused
 * before anything is written to it; so is a file that is not an SQLite database
 * (checked by its 16-byte header before SQLite sees it): we never "repair" a
 * file we do not understand, the operator decides.
 *
 * Read-only handles (`gcdrop status`) never create, migrate or write: a missing
 * or empty file is -ENOENT ("does not exist yet"), and so is a file without
 * schema; a schema older or newer than ours is -ENOTSUP. SQLite reads a WAL
 * file through its -shm file, which it must be able to create unless it
 * exists; when it does not exist, the directory is not writable and there is
 * no -wal either, no writer is active and every commit is in the main file, so
 * the file is opened with immutable=1. (A writer that starts during such a
 * read can make it fail; it cannot make it return wrong rows silently, since
 * SQLite checks page structure. The daemon's PERSIST_WAL makes this rare.)
 *
 * Errors. SQLite's codes map to: READONLY -> -EROFS, FULL -> -ENOSPC,
 * BUSY/LOCKED -> -EBUSY (after the 5 s busy timeout), NOMEM -> -ENOMEM,
 * UNIQUE/PRIMARYKEY constraint -> -EEXIST, FOREIGNKEY constraint -> -ENOENT
 * (the parent row does not exist), other constraints -> -EINVAL, the rest ->
 * -EIO. Before SQLite opens the file, missing write permission on it or on its
 * directory is reported as -EROFS with a message saying which, because SQLite
 * itself would silently fall back to a read-only connection.
 *
 * Strings. Case names and relative paths may hold any byte but NUL (quotes,
 * newlines, invalid UTF-8). They are bound as TEXT with their explicit length
 * and read back with their length; SQLite stores TEXT bytes as given when the
 * database encoding is UTF-8 and nobody asks for a conversion, and the BINARY
 * collation compares them with memcmp(), so nothing is mangled and the UNIQUE
 * constraints compare bytes. Every statement binds them the same way (never as
 * BLOB), because SQLite orders TEXT and BLOB values apart.
 *
 * Statements. Every statement is prepared once per handle, on first use, and
 * kept (SQLITE_PREPARE_PERSISTENT); each use resets it so that no read
 * transaction stays open. If a cached statement is still running (a callback
 * of store_case_foreach() that calls store_case_foreach() again), a private
 * copy is prepared for that use and finalized after it.
 *
 * Transactions nest: the outermost store_begin() is BEGIN IMMEDIATE (the write
 * lock is taken at once, so the busy timeout applies and no transaction fails
 * half-way with SQLITE_BUSY on lock upgrade); inner ones are SAVEPOINTs, so an
 * inner rollback undoes only its own work. The outer BEGIN runs with the
 * group's first statement, not in store_begin(): the daemon opens a group on
 * every loop turn, and most turns of an upload (a presign's answer, a PUT still
 * out) run no statement; an empty group costs no lock calls and no commit. Every multi-statement function
 * (a transition and its event row, a case and its files) runs in such a nested
 * transaction, so inside a caller's batch it does not commit on its own.
 *
 * Concurrency. A handle belongs to one thread at a time (the connection is
 * opened with SQLITE_OPEN_NOMUTEX). Several handles, in one or several
 * processes, may use the same file: transitions are compare-and-set on the
 * state (UPDATE ... WHERE id = ? AND state = ?) and a claim is a single UPDATE
 * ... WHERE id = (SELECT ... LIMIT 1) RETURNING, which SQLite runs under the
 * database's single write lock, so two claimers never get the same case.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"

#define STORE_BUSY_TIMEOUT_MS 5000
/* After a checkpoint the -wal file is cut back to this size. */
#define STORE_WAL_LIMIT (8 * 1024 * 1024)
#define STORE_ERRMSG_MAX 512
/* Frames in the -wal file after which a commit checkpoints (SQLite's default). */
#define STORE_WAL_CHECKPOINT_FRAMES 1000

/*
 * The migrations. Never edit one that has shipped: add a new one. A test keeps
 * a frozen copy of migration 1 (tests/data/store/schema-v1.sql) and checks that
 * a file migrated from it ends up with the same schema as a new file.
 */
/* clang-format off */
static const char *const migrations[] = {
	/* 0 -> 1: the base tables. */
	"CREATE TABLE watches (\n"
	"	name TEXT PRIMARY KEY NOT NULL,\n"
	"	path TEXT NOT NULL,\n"
	"	dest TEXT NOT NULL,\n"
	"	slug TEXT NOT NULL,\n"
	"	updated INTEGER NOT NULL DEFAULT 0\n"
	");\n"
	"CREATE TABLE cases (\n"
	"	id INTEGER PRIMARY KEY,\n"
	"	watch TEXT NOT NULL,\n"
	"	name TEXT NOT NULL,\n"
	"	path TEXT,\n"
	"	fingerprint TEXT NOT NULL,\n"
	"	state TEXT NOT NULL,\n"
	"	resume_state TEXT,\n"
	"	held INTEGER NOT NULL DEFAULT 0,\n"
	"	attempts INTEGER NOT NULL DEFAULT 0,\n"
	"	next_attempt INTEGER NOT NULL DEFAULT 0,\n"
	"	error TEXT,\n"
	"	bytes_done INTEGER NOT NULL DEFAULT 0,\n"
	"	bytes_total INTEGER NOT NULL DEFAULT 0,\n"
	"	results TEXT,\n"
	"	created INTEGER NOT NULL,\n"
	"	updated INTEGER NOT NULL,\n"
	"	lease_owner TEXT,\n"
	"	lease_until INTEGER NOT NULL DEFAULT 0,\n"
	"	UNIQUE (watch, name, fingerprint)\n"
	");\n"
	"CREATE TABLE files (\n"
	"	id INTEGER PRIMARY KEY,\n"
	"	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,\n"
	"	relpath TEXT NOT NULL,\n"
	"	upload_name TEXT,\n"
	"	socket TEXT,\n"
	"	size INTEGER NOT NULL,\n"
	"	mtime_ns INTEGER NOT NULL,\n"
	"	upload_pk TEXT,\n"
	"	upload_url TEXT,\n"
	"	multipart_id TEXT,\n"
	"	parts_done INTEGER NOT NULL DEFAULT 0,\n"
	"	bytes_done INTEGER NOT NULL DEFAULT 0,\n"
	"	completed INTEGER NOT NULL DEFAULT 0,\n"
	"	sha256 TEXT,\n"	/* no longer written (a whole-file hash at completion) */
	"	UNIQUE (case_id, relpath)\n"
	");\n"
	"CREATE TABLE parts (\n"
	"	file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,\n"
	"	number INTEGER NOT NULL,\n"
	"	etag TEXT NOT NULL,\n"
	"	size INTEGER NOT NULL,\n"
	"	PRIMARY KEY (file_id, number)\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE remotes (\n"
	"	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,\n"
	"	kind TEXT NOT NULL,\n"
	"	key TEXT NOT NULL DEFAULT '',\n"
	"	intent_only INTEGER NOT NULL DEFAULT 1,\n"
	"	title TEXT,\n"
	"	pk TEXT,\n"
	"	url TEXT,\n"
	"	status TEXT,\n"
	"	json TEXT,\n"
	"	updated INTEGER NOT NULL DEFAULT 0,\n"
	"	PRIMARY KEY (case_id, kind, key)\n"
	");\n"
	"CREATE TABLE outputs (\n"
	"	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,\n"
	"	socket TEXT NOT NULL,\n"
	"	super_kind TEXT NOT NULL,\n"
	"	value_json TEXT,\n"
	"	url TEXT,\n"
	"	path TEXT,\n"
	"	PRIMARY KEY (case_id, socket)\n"
	");\n"
	"CREATE TABLE events (\n"
	"	id INTEGER PRIMARY KEY,\n"
	"	case_id INTEGER NOT NULL REFERENCES cases (id) ON DELETE CASCADE,\n"
	"	time INTEGER NOT NULL,\n"
	"	state TEXT,\n"
	"	message TEXT\n"
	");\n",

	/*
	 * 1 -> 2: operator requests, and the indexes of the daemon's and the
	 * CLI's queries. cases_pending is partial: the claim query repeats its
	 * WHERE term, walks it in (next_attempt, id) order and stops at the first
	 * claimable row; finished cases, the bulk of a long-lived queue, are not
	 * in it. cases_state covers store_count_states().
	 */
	"CREATE TABLE requests (\n"
	"	id INTEGER PRIMARY KEY,\n"
	"	kind TEXT NOT NULL,\n"
	"	case_id INTEGER NOT NULL DEFAULT 0,\n"
	"	watch TEXT,\n"
	"	path TEXT,\n"
	"	created INTEGER NOT NULL\n"
	");\n"
	"CREATE INDEX cases_state ON cases (state, held);\n"
	"CREATE INDEX cases_pending ON cases (next_attempt, id)\n"
	"	WHERE state NOT IN ('succeeded', 'failed', 'cancelled');\n"
	"CREATE INDEX cases_watch ON cases (watch, id);\n"
	"CREATE INDEX events_case ON events (case_id, id);\n",

	/*
	 * 2 -> 3: the remote URLs of every case in case order, for `gcdrop
	 * status --json` (store_status_foreach). Covering and partial: the walk
	 * reads only the index, and intents without a URL are not in it.
	 */
	"CREATE INDEX remotes_status ON remotes (case_id, kind, key, url)\n"
	"	WHERE url IS NOT NULL;\n",

	/*
	 * 3 -> 4: operator settings that outlive the daemon (`gcdrop hold
	 * --all`), and the cases the daemon is settling, so that `gcdrop status`
	 * (another process) can show them. Both are small: settings has a row
	 * per setting, settling a row per case between detection and queueing.
	 */
	"CREATE TABLE settings (\n"
	"	name TEXT PRIMARY KEY NOT NULL,\n"
	"	value TEXT NOT NULL\n"
	") WITHOUT ROWID;\n"
	"CREATE TABLE settling (\n"
	"	watch TEXT NOT NULL,\n"
	"	name TEXT NOT NULL,\n"
	"	since INTEGER NOT NULL,\n"
	"	PRIMARY KEY (watch, name)\n"
	") WITHOUT ROWID;\n",
};
/* clang-format on */

#define STORE_SCHEMA_VERSION ((int)GC_ARRAY_SIZE(migrations))

#define CASE_COLS                                                                                  \
	"id, watch, name, path, fingerprint, state, resume_state, held, attempts, "                \
	"next_attempt, error, bytes_done, bytes_total, results, created, updated, "                \
	"lease_owner, lease_until"

#define FILE_COLS                                                                                  \
	"id, case_id, relpath, upload_name, socket, size, mtime_ns, upload_pk, "                   \
	"upload_url, multipart_id, parts_done, bytes_done, completed"

/*
 * What `gcdrop status` reads per case (store_status_foreach): the table's
 * columns, and for --json the rest. Fewer columns is most of what makes the
 * walk of 100,000 cases fast: SQLite's cost per row is mostly per column.
 */
#define STATUS_COLS "id, watch, name, state, held, attempts, bytes_done, bytes_total, error"
#define STATUS_FULL_COLS "next_attempt, results, created, updated, fingerprint"

#define REMOTE_COLS "case_id, kind, key, intent_only, title, pk, url, status, json, updated"

/* Every statement this module runs; prepared on first use, then cached. */
enum stmt_id {
	ST_BEGIN,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_CASE_EXISTS,
	ST_CASE_FIND,
	ST_CASE_INSERT,
	ST_CASE_GET,
	ST_CASE_TRANSITION,
	ST_CASE_RETRY_WAIT,
	ST_CASE_RESUME,
	ST_CASE_HELD,
	ST_CASE_PROGRESS,
	ST_CASE_RESULTS,
	ST_CASE_RESET,
	ST_CASE_CLAIM,
	ST_CASE_RENEW,
	ST_CASE_UNCLAIM,
	ST_LEASES_RELEASE,
	ST_CASE_ALL,
	ST_CASE_WATCH,
	ST_CASE_COUNT,
	ST_STATUS_ALL,
	ST_STATUS_WATCH,
	ST_STATUS_FULL_ALL,
	ST_STATUS_FULL_WATCH,
	ST_STATUS_REMOTES,
	ST_CASE_DELETE,
	ST_FILE_INSERT,
	ST_FILE_LIST,
	ST_FILE_GET,
	ST_FILE_NAME,
	ST_FILE_UPLOAD,
	ST_FILE_RESET,
	ST_FILE_COMPLETED,
	ST_PARTS_DELETE,
	ST_PART_PUT,
	ST_PART_OLD,
	ST_PART_ADD,
	ST_PART_LIST,
	ST_REMOTE_INTENT,
	ST_REMOTE_SET,
	ST_REMOTE_GET,
	ST_REMOTE_LIST,
	ST_REMOTE_DELETE,
	ST_OUTPUT_PUT,
	ST_OUTPUT_PATH,
	ST_OUTPUT_LIST,
	ST_EVENT_ADD,
	ST_EVENT_LIST,
	ST_REQUEST_ADD,
	ST_REQUEST_NEXT,
	ST_REQUEST_DONE,
	ST_WATCH_SYNC,
	ST_SETTING_GET,
	ST_SETTING_SET,
	ST_SETTING_DEL,
	ST_SETTLING_ADD,
	ST_SETTLING_DEL,
	ST_SETTLING_CLEAR,
	ST_SETTLING_ALL,
	ST_SETTLING_WATCH,
	ST_SETTLING_COUNT,
	ST_BYTES_LEFT,
	_ST_MAX,
};

/* clang-format off */
static const char *const stmt_sql[_ST_MAX] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT gcdrop_nested",
	[ST_RELEASE] = "RELEASE gcdrop_nested",
	[ST_ROLLBACK_TO] = "ROLLBACK TO gcdrop_nested",
	[ST_CASE_EXISTS] = "SELECT 1 FROM cases WHERE id = ?1",
	[ST_CASE_FIND] = "SELECT id FROM cases WHERE watch = ?1 AND name = ?2 AND fingerprint = ?3",
	[ST_CASE_INSERT] =
		"INSERT INTO cases (watch, name, path, fingerprint, state, error, bytes_total, "
		"created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
	[ST_CASE_GET] = "SELECT " CASE_COLS " FROM cases WHERE id = ?1",
	[ST_CASE_TRANSITION] =
		"UPDATE cases SET state = ?3, error = ?4, updated = ?5, "
		"resume_state = CASE WHEN ?3 = 'retry-wait' AND ?2 != 'retry-wait' THEN ?2 "
		"ELSE resume_state END "
		"WHERE id = ?1 AND state = ?2",
	[ST_CASE_RETRY_WAIT] =
		"UPDATE cases SET state = 'retry-wait', attempts = attempts + 1, "
		"next_attempt = ?3, error = ?4, updated = ?5, "
		"resume_state = CASE WHEN ?2 = 'retry-wait' THEN resume_state ELSE ?2 END "
		"WHERE id = ?1 AND state = ?2",
	[ST_CASE_RESUME] =
		"UPDATE cases SET state = coalesce(?2, resume_state, 'queued'), "
		"resume_state = NULL, "
		"next_attempt = 0, updated = ?3 WHERE id = ?1 AND state = 'retry-wait' "
		"RETURNING state",
	[ST_CASE_HELD] = "UPDATE cases SET held = ?2, updated = ?3 WHERE id = ?1 AND held != ?2 "
			 "RETURNING state",
	[ST_CASE_PROGRESS] = "UPDATE cases SET bytes_done = ?2, bytes_total = ?3 WHERE id = ?1",
	[ST_CASE_RESULTS] = "UPDATE cases SET results = ?2, updated = ?3 WHERE id = ?1",
	[ST_CASE_RESET] =
		"UPDATE cases SET state = ?2, attempts = 0, error = NULL, next_attempt = 0, "
		"resume_state = NULL, updated = ?3 WHERE id = ?1",
	[ST_CASE_CLAIM] =
		"UPDATE cases SET lease_owner = ?1, lease_until = ?2 + ?3, updated = ?2 "
		"WHERE id = (SELECT id FROM cases "
		"WHERE state NOT IN ('succeeded', 'failed', 'cancelled') "
		"AND held = 0 AND next_attempt <= ?2 "
		"AND (lease_owner IS NULL OR lease_until <= ?2 OR lease_owner = ?1) "
		"ORDER BY next_attempt, id LIMIT 1) "
		"RETURNING " CASE_COLS,
	[ST_CASE_RENEW] = "UPDATE cases SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2",
	[ST_CASE_UNCLAIM] = "UPDATE cases SET lease_owner = NULL, lease_until = 0 "
			    "WHERE id = ?1 AND lease_owner = ?2",
	[ST_LEASES_RELEASE] = "UPDATE cases SET lease_owner = NULL, lease_until = 0 "
			      "WHERE lease_owner IS NOT NULL",
	[ST_CASE_ALL] = "SELECT " CASE_COLS " FROM cases ORDER BY id",
	[ST_CASE_WATCH] = "SELECT " CASE_COLS " FROM cases WHERE watch = ?1 ORDER BY id",
	[ST_CASE_COUNT] = "SELECT state, held, count(*) FROM cases GROUP BY state, held",
	[ST_STATUS_ALL] = "SELECT " STATUS_COLS " FROM cases ORDER BY id",
	[ST_STATUS_WATCH] = "SELECT " STATUS_COLS " FROM cases WHERE watch = ?1 ORDER BY id",
	[ST_STATUS_FULL_ALL] = "SELECT " STATUS_COLS ", " STATUS_FULL_COLS " FROM cases "
			       "ORDER BY id",
	[ST_STATUS_FULL_WATCH] = "SELECT " STATUS_COLS ", " STATUS_FULL_COLS " FROM cases "
				 "WHERE watch = ?1 ORDER BY id",
	[ST_STATUS_REMOTES] = "SELECT case_id, kind, url FROM remotes WHERE url IS NOT NULL "
			      "ORDER BY case_id, kind, key",
	[ST_CASE_DELETE] = "DELETE FROM cases WHERE id = ?1",
	[ST_FILE_INSERT] =
		"INSERT INTO files (case_id, relpath, upload_name, socket, size, mtime_ns) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_FILE_LIST] = "SELECT " FILE_COLS " FROM files WHERE case_id = ?1 ORDER BY relpath",
	[ST_FILE_GET] = "SELECT " FILE_COLS " FROM files WHERE id = ?1",
	[ST_FILE_NAME] = "UPDATE files SET upload_name = ?2, socket = ?3 WHERE id = ?1",
	[ST_FILE_UPLOAD] =
		"UPDATE files SET upload_pk = ?2, upload_url = ?3, multipart_id = ?4, "
		"parts_done = 0, bytes_done = 0, completed = 0 WHERE id = ?1",
	[ST_FILE_RESET] =
		"UPDATE files SET upload_pk = NULL, upload_url = NULL, multipart_id = NULL, "
		"parts_done = 0, bytes_done = 0, completed = 0 WHERE id = ?1",
	[ST_FILE_COMPLETED] = "UPDATE files SET completed = 1 WHERE id = ?1",
	[ST_PARTS_DELETE] = "DELETE FROM parts WHERE file_id = ?1",
	[ST_PART_PUT] =
		"INSERT INTO parts (file_id, number, etag, size) VALUES (?1, ?2, ?3, ?4) "
		"ON CONFLICT (file_id, number) DO UPDATE SET etag = excluded.etag, "
		"size = excluded.size",
	[ST_PART_OLD] = "SELECT size FROM parts WHERE file_id = ?1 AND number = ?2",
	[ST_PART_ADD] =
		"UPDATE files SET parts_done = parts_done + ?2, bytes_done = bytes_done + ?3 "
		"WHERE id = ?1",
	[ST_PART_LIST] = "SELECT number, etag, size FROM parts WHERE file_id = ?1 ORDER BY number",
	[ST_REMOTE_INTENT] =
		"INSERT INTO remotes (case_id, kind, key, intent_only, title, updated) "
		"VALUES (?1, ?2, ?3, 1, ?4, ?5) "
		"ON CONFLICT (case_id, kind, key) DO UPDATE SET "
		"title = coalesce(excluded.title, title), updated = excluded.updated",
	[ST_REMOTE_SET] =
		"INSERT INTO remotes "
		"(case_id, kind, key, intent_only, pk, url, status, json, updated) "
		"VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8) "
		"ON CONFLICT (case_id, kind, key) DO UPDATE SET intent_only = 0, "
		"pk = coalesce(excluded.pk, pk), url = coalesce(excluded.url, url), "
		"status = coalesce(excluded.status, status), json = coalesce(excluded.json, json), "
		"updated = excluded.updated",
	[ST_REMOTE_GET] = "SELECT " REMOTE_COLS " FROM remotes "
			  "WHERE case_id = ?1 AND kind = ?2 AND key = ?3",
	[ST_REMOTE_LIST] = "SELECT " REMOTE_COLS " FROM remotes WHERE case_id = ?1 "
			   "ORDER BY kind, key",
	[ST_REMOTE_DELETE] = "DELETE FROM remotes WHERE case_id = ?1 AND kind = ?2 AND key = ?3",
	[ST_OUTPUT_PUT] =
		"INSERT INTO outputs (case_id, socket, super_kind, value_json, url, path) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
		"ON CONFLICT (case_id, socket) DO UPDATE SET super_kind = excluded.super_kind, "
		"value_json = excluded.value_json, url = excluded.url, "
		"path = coalesce(excluded.path, path)",
	[ST_OUTPUT_PATH] = "UPDATE outputs SET path = ?3 WHERE case_id = ?1 AND socket = ?2",
	[ST_OUTPUT_LIST] = "SELECT case_id, socket, super_kind, value_json, url, path FROM outputs "
			   "WHERE case_id = ?1 ORDER BY socket",
	[ST_EVENT_ADD] =
		"INSERT INTO events (case_id, time, state, message) VALUES (?1, ?2, ?3, ?4)",
	[ST_EVENT_LIST] = "SELECT id, case_id, time, state, message FROM events "
			  "WHERE case_id = ?1 ORDER BY id",
	[ST_REQUEST_ADD] = "INSERT INTO requests (kind, case_id, watch, path, created) "
			   "VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_REQUEST_NEXT] =
		"SELECT id, kind, case_id, watch, path FROM requests ORDER BY id LIMIT 1",
	[ST_REQUEST_DONE] = "DELETE FROM requests WHERE id = ?1",
	[ST_WATCH_SYNC] =
		"INSERT INTO watches (name, path, dest, slug, updated) VALUES (?1, ?2, ?3, ?4, ?5) "
		"ON CONFLICT (name) DO UPDATE SET path = excluded.path, dest = excluded.dest, "
		"slug = excluded.slug, updated = excluded.updated",
	[ST_SETTING_GET] = "SELECT value FROM settings WHERE name = ?1",
	[ST_SETTING_SET] = "INSERT INTO settings (name, value) VALUES (?1, ?2) "
			   "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
	[ST_SETTING_DEL] = "DELETE FROM settings WHERE name = ?1",
	[ST_SETTLING_ADD] = "INSERT INTO settling (watch, name, since) VALUES (?1, ?2, ?3) "
			    "ON CONFLICT (watch, name) DO UPDATE SET since = excluded.since",
	[ST_SETTLING_DEL] = "DELETE FROM settling WHERE watch = ?1 AND name = ?2",
	[ST_SETTLING_CLEAR] = "DELETE FROM settling",
	[ST_SETTLING_ALL] = "SELECT watch, name, since FROM settling ORDER BY since, watch, name",
	[ST_SETTLING_WATCH] = "SELECT watch, name, since FROM settling WHERE watch = ?1 "
			      "ORDER BY since, watch, name",
	[ST_SETTLING_COUNT] = "SELECT count(*) FROM settling",
	/* Through the cases_state index: only the uploading rows are read. */
	[ST_BYTES_LEFT] =
		"SELECT coalesce(sum(CASE WHEN bytes_total > bytes_done "
		"THEN bytes_total - max(bytes_done, 0) ELSE 0 END), 0), "
		"coalesce(sum(bytes_total <= 0), 0) FROM cases WHERE state = ?1",
};
/* clang-format on */

struct store {
	sqlite3 *db;
	char *path;
	bool readonly;
	int version;
	/* store_begin() depth; 1 = the outer transaction, > 1 = savepoints. */
	int depth;
	/* SQLite ended the transaction by itself (e.g. SQLITE_FULL): unwind only. */
	bool txn_lost;
	/* The outer store_begin() has not run its BEGIN yet: the first statement will. */
	bool begin_pending;
	/* First error of the bind_*() calls since the last stmt_get(). */
	int bind_rc;
	/* Durability (see DESIGN): total changes at the last commit, re-doable ones since. */
	int64_t changes_at_commit;
	int64_t redo_changes;
	uint64_t commits_synced;
	uint64_t commits_relaxed;
	sqlite3_stmt *stmts[_ST_MAX];
	char errmsg[STORE_ERRMSG_MAX];
};

/* clang-format off */
static const char *const state_names[_STORE_STATE_MAX] = {
	[STORE_SETTLING] = "settling",
	[STORE_QUEUED] = "queued",
	[STORE_UPLOADING] = "uploading",
	[STORE_IMPORTING] = "importing",
	[STORE_SUBMITTED] = "submitted",
	[STORE_RUNNING] = "running",
	[STORE_SUCCEEDED] = "succeeded",
	[STORE_FAILED] = "failed",
	[STORE_CANCELLED] = "cancelled",
	[STORE_RETRY_WAIT] = "retry-wait",
};

static const char *const remote_kind_names[_STORE_REMOTE_MAX] = {
	[STORE_REMOTE_SESSION] = "session",
	[STORE_REMOTE_ARCHIVE_ITEM] = "archive-item",
	[STORE_REMOTE_DISPLAY_SET] = "display-set",
	[STORE_REMOTE_JOB] = "job",
};

static const char *const request_kind_names[] = {
	[STORE_REQ_RETRY] = "retry",
	[STORE_REQ_HOLD] = "hold",
	[STORE_REQ_RELEASE] = "release",
	[STORE_REQ_ENQUEUE] = "enqueue",
};
/* clang-format on */

const char *
store_state_name(enum store_state state)
{
	if ((int)state < 0 || state >= _STORE_STATE_MAX)
		return NULL;
	return state_names[state];
}

int
store_state_from_name(const char *name)
{
	if (name == NULL)
		return -1;
	/* The first byte rules out all but one or two names (inner loop of `gcdrop status`). */
	for (int i = 0; i < _STORE_STATE_MAX; i++)
		if (state_names[i][0] == name[0] && strcmp(state_names[i], name) == 0)
			return i;
	return -1;
}

bool
store_state_is_terminal(enum store_state state)
{
	return state == STORE_SUCCEEDED || state == STORE_FAILED || state == STORE_CANCELLED;
}

const char *
store_remote_kind_name(enum store_remote_kind kind)
{
	if ((int)kind < 0 || kind >= _STORE_REMOTE_MAX)
		return NULL;
	return remote_kind_names[kind];
}

static int
remote_kind_from_name(const char *name)
{
	for (int i = 0; name != NULL && i < _STORE_REMOTE_MAX; i++)
		if (strcmp(remote_kind_names[i], name) == 0)
			return i;
	return -1;
}

static const char *
request_kind_name(enum store_request_kind kind)
{
	if ((int)kind < 0 || (size_t)kind >= GC_ARRAY_SIZE(request_kind_names))
		return NULL;
	return request_kind_names[kind];
}

static int
request_kind_from_name(const char *name)
{
	for (size_t i = 0; name != NULL && i < GC_ARRAY_SIZE(request_kind_names); i++)
		if (strcmp(request_kind_names[i], name) == 0)
			return (int)i;
	return -1;
}

int
store_schema_version(void)
{
	return STORE_SCHEMA_VERSION;
}

int
store_file_version(struct store *store)
{
	return store->version;
}

const char *
store_errmsg(struct store *store)
{
	if (store == NULL)
		return "no queue";
	return store->errmsg[0] != '\0' ? store->errmsg : "not an error";
}

/* A malloc'd printf; NULL when out of memory. */
static char *str_printf(const char *fmt, ...) GC_PRINTF(1, 2);

static char *
str_printf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* The errno equivalent of an SQLite (extended) result code. */
static int
errno_from_sqlite(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return -ENOENT;
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	default:
		break;
	}
	switch (rc & 0xff) {
	case SQLITE_OK:
		return 0;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CONSTRAINT:
	case SQLITE_RANGE:
	case SQLITE_MISMATCH:
		return -EINVAL;
	case SQLITE_TOOBIG:
		return -E2BIG;
	default:
		return -EIO;
	}
}

/* Remember what SQLite said about 'rc' and return it as a negative errno. */
static int
sql_fail(struct store *s, int rc)
{
	snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s", s->path,
	         s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	return errno_from_sqlite(rc);
}

static int stmt_exec(struct store *s, enum stmt_id id);

/*
 * Run the BEGIN that the outer store_begin() put off. When it fails (the lock
 * stayed taken for the whole busy timeout) it stays pending, so that no later
 * statement of the group runs outside a transaction: each tries it again.
 */
static int
txn_open(struct store *s)
{
	int r;

	s->begin_pending = false;
	r = stmt_exec(s, s->readonly ? ST_BEGIN_READ : ST_BEGIN);
	if (r < 0)
		s->begin_pending = true;
	return r;
}

/*
 * The cached statement 'id', or a private copy when the cached one is running.
 * Give it back with stmt_put().
 */
static int
stmt_get(struct store *s, enum stmt_id id, sqlite3_stmt **ret)
{
	sqlite3_stmt *st = s->stmts[id];
	int rc;

	if (s->begin_pending && id != ST_BEGIN && id != ST_BEGIN_READ) {
		int r = txn_open(s);

		if (r < 0)
			return r;
	}
	s->bind_rc = SQLITE_OK;
	if (st != NULL && !sqlite3_stmt_busy(st)) {
		*ret = st;
		return 0;
	}
	rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, st == NULL ? SQLITE_PREPARE_PERSISTENT : 0,
	                        &st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(s, rc);
	if (s->stmts[id] == NULL)
		s->stmts[id] = st;
	*ret = st;
	return 0;
}

static void
stmt_put(struct store *s, enum stmt_id id, sqlite3_stmt *st)
{
	if (st == NULL)
		return;
	if (st != s->stmts[id]) {
		sqlite3_finalize(st);
		return;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void
bind_note(struct store *s, int rc)
{
	if (rc != SQLITE_OK && s->bind_rc == SQLITE_OK)
		s->bind_rc = rc;
}

/* NULL binds SQL NULL; anything else is bound with its explicit length. */
static void
bind_text(struct store *s, sqlite3_stmt *st, int i, const char *v)
{
	if (v == NULL)
		bind_note(s, sqlite3_bind_null(st, i));
	else
		bind_note(s,
		          sqlite3_bind_text64(st, i, v, strlen(v), SQLITE_TRANSIENT, SQLITE_UTF8));
}

static void
bind_i64(struct store *s, sqlite3_stmt *st, int i, int64_t v)
{
	bind_note(s, sqlite3_bind_int64(st, i, v));
}

/* Step once: 1 for a row, 0 when done, a negative errno on error. */
static int
stmt_step(struct store *s, sqlite3_stmt *st)
{
	int rc;

	if (s->bind_rc != SQLITE_OK)
		return sql_fail(s, s->bind_rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	/* sqlite3_step() returns the primary code; the handle has the extended one. */
	return sql_fail(s, sqlite3_extended_errcode(s->db));
}

/* Run a statement to the end, ignoring any rows. */
static int
stmt_run(struct store *s, sqlite3_stmt *st)
{
	int r;

	do
		r = stmt_step(s, st);
	while (r == 1);
	return r;
}

/* Copy of column 'i' (NULL for SQL NULL) into *ret; -ENOMEM. */
static int
col_dup(sqlite3_stmt *st, int i, char **ret)
{
	const unsigned char *t;
	int n;
	char *p;

	if (sqlite3_column_type(st, i) == SQLITE_NULL) {
		*ret = NULL;
		return 0;
	}
	t = sqlite3_column_text(st, i);
	n = sqlite3_column_bytes(st, i);
	if (t == NULL)
		return -ENOMEM;
	p = malloc((size_t)n + 1);
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, t, (size_t)n);
	p[n] = '\0';
	*ret = p;
	return 0;
}

/*
 * A scratch buffer that holds the strings of one row, for iterations that hand
 * out borrowed rows without a malloc per string.
 */
struct arena {
	char *buf;
	size_t cap;
	size_t used;
};

static int
arena_reserve(struct arena *a, size_t n)
{
	char *p;

	a->used = 0;
	if (n <= a->cap)
		return 0;
	p = realloc(a->buf, n);
	if (p == NULL)
		return -ENOMEM;
	a->buf = p;
	a->cap = n;
	return 0;
}

static const char *
col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

void
store_case_clear(struct store_case *c)
{
	if (c == NULL)
		return;
	free(c->watch);
	free(c->name);
	free(c->path);
	free(c->fingerprint);
	free(c->error);
	free(c->results);
	free(c->lease_owner);
	memset(c, 0, sizeof(*c));
}

/* The text columns of CASE_COLS, and where each goes in struct store_case. */
/* clang-format off */
static const struct {
	int col;
	size_t off;
} case_text_cols[] = {
	{ 1, offsetof(struct store_case, watch) },
	{ 2, offsetof(struct store_case, name) },
	{ 3, offsetof(struct store_case, path) },
	{ 4, offsetof(struct store_case, fingerprint) },
	{ 10, offsetof(struct store_case, error) },
	{ 13, offsetof(struct store_case, results) },
	{ 16, offsetof(struct store_case, lease_owner) },
};
/* clang-format on */

/*
 * Fill *ret from a row of CASE_COLS. With an arena the strings are borrowed
 * (valid until the arena's next row); without, they are malloc'd. Each column
 * is fetched once (this is the inner loop of `gcdrop status`). On failure *ret
 * is not written.
 */
static int
case_from_row(sqlite3_stmt *st, struct arena *a, struct store_case *ret)
{
	enum { N_TEXT = GC_ARRAY_SIZE(case_text_cols) };
	const unsigned char *text[N_TEXT];
	size_t len[N_TEXT], need = 0;
	struct store_case c = {0};
	int state, resume;

	for (size_t i = 0; i < N_TEXT; i++) {
		/* NULL for SQL NULL; a TEXT value needs no conversion, so no allocation. */
		text[i] = sqlite3_column_text(st, case_text_cols[i].col);
		len[i] = (size_t)sqlite3_column_bytes(st, case_text_cols[i].col);
		need += text[i] != NULL ? len[i] + 1 : 0;
	}
	if (a != NULL && arena_reserve(a, need) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < N_TEXT; i++) {
		char *p;

		if (text[i] == NULL)
			continue;
		if (a != NULL) {
			p = a->buf + a->used;
			a->used += len[i] + 1;
		} else {
			p = malloc(len[i] + 1);
			if (p == NULL) {
				store_case_clear(&c);
				return -ENOMEM;
			}
		}
		memcpy(p, text[i], len[i]);
		p[len[i]] = '\0';
		*(char **)((char *)&c + case_text_cols[i].off) = p;
	}
	c.id = sqlite3_column_int64(st, 0);
	state = store_state_from_name(col_text(st, 5));
	resume = store_state_from_name(col_text(st, 6));
	c.state = state < 0 ? STORE_FAILED : (enum store_state)state;
	c.resume_state = resume < 0 ? STORE_QUEUED : (enum store_state)resume;
	c.held = sqlite3_column_int(st, 7) != 0;
	c.attempts = sqlite3_column_int(st, 8);
	c.next_attempt = sqlite3_column_int64(st, 9);
	c.bytes_done = sqlite3_column_int64(st, 11);
	c.bytes_total = sqlite3_column_int64(st, 12);
	c.created = sqlite3_column_int64(st, 14);
	c.updated = sqlite3_column_int64(st, 15);
	c.lease_until = sqlite3_column_int64(st, 17);
	*ret = c;
	return 0;
}

/* ---- transactions ---- */

static int
stmt_exec(struct store *s, enum stmt_id id)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(s, id, &st);
	if (r < 0)
		return r;
	r = stmt_run(s, st);
	stmt_put(s, id, st);
	return r;
}

/*
 * Begin a transaction, or a savepoint inside one. The outer transaction of a
 * read-write handle takes the write lock (BEGIN IMMEDIATE); that of a
 * read-only handle is a plain BEGIN, which gives its reads one snapshot. The
 * outer BEGIN is put off until the group's first statement runs (just before
 * it, so every statement of the group is inside the transaction as before),
 * and a group that ran none commits or rolls back without touching the file:
 * a loop turn that wrote nothing costs no locks. Returns 0, -EBUSY when the
 * lock stayed taken for the whole busy timeout (for the outer BEGIN: from the
 * first statement), -EROFS, or another negative errno.
 */
int
store_begin(struct store *store)
{
	int r;

	if (store->depth == 0) {
		store->begin_pending = true;
		store->depth = 1;
		return 0;
	}
	r = stmt_exec(store, ST_SAVEPOINT);
	if (r < 0)
		return r;
	store->depth++;
	return 0;
}

/*
 * Commit the innermost store_begin(). The outermost commit makes the work
 * durable; an inner one only folds its savepoint into the outer transaction.
 * When the commit fails the work is rolled back (the whole transaction for the
 * outermost, the savepoint for an inner one) and the error returned.
 */
int
store_commit(struct store *store)
{
	int r;

	if (store->depth <= 0)
		return -EINVAL;
	if (store->begin_pending) {
		/* Nothing ran (depth is 1: a savepoint would have run the BEGIN). */
		store->begin_pending = false;
		store->depth = 0;
		return 0;
	}
	if (store->txn_lost || sqlite3_get_autocommit(store->db)) {
		/* SQLite already rolled the whole transaction back. */
		store->txn_lost = --store->depth > 0;
		snprintf(store->errmsg, sizeof(store->errmsg),
		         "%s: the transaction was rolled back by an earlier error", store->path);
		return -EIO;
	}
	if (store->depth > 1) {
		r = stmt_exec(store, ST_RELEASE);
		if (r < 0) {
			(void)store_rollback(store);
			return r;
		}
		store->depth--;
		return 0;
	}
	r = stmt_exec(store, ST_COMMIT);
	if (r < 0) {
		/* A failed COMMIT may leave the transaction open; end it. */
		if (!sqlite3_get_autocommit(store->db))
			(void)stmt_exec(store, ST_ROLLBACK);
	}
	store->depth = 0;
	store->txn_lost = false;
	return r;
}

/* Undo the innermost store_begin(). */
int
store_rollback(struct store *store)
{
	int r = 0;

	if (store->depth <= 0)
		return -EINVAL;
	if (store->begin_pending) {
		store->begin_pending = false;
		store->depth = 0;
		return 0;
	}
	if (store->txn_lost || sqlite3_get_autocommit(store->db)) {
		store->txn_lost = --store->depth > 0;
		return 0;
	}
	if (store->depth > 1) {
		r = stmt_exec(store, ST_ROLLBACK_TO);
		if (r == 0)
			r = stmt_exec(store, ST_RELEASE);
		store->depth--;
		return r;
	}
	r = stmt_exec(store, ST_ROLLBACK);
	store->depth = 0;
	store->txn_lost = false;
	/* What was rolled back is not in the -wal file: the next commit starts afresh. */
	store->redo_changes = 0;
	store->changes_at_commit = sqlite3_total_changes64(store->db);
	return r;
}

/* Commit when r is 0, else roll back; returns r, or the commit's error. */
static int
txn_end(struct store *s, int r)
{
	if (r < 0) {
		(void)store_rollback(s);
		return r;
	}
	return store_commit(s);
}

/*
 * A re-doable write (see DESIGN) runs between redo_begin() and redo_end(): its
 * own (nested) transaction, whose changed rows are counted as re-doable before
 * it commits.
 */
static int
redo_begin(struct store *s, int64_t *ret_before)
{
	int r = store_begin(s);

	if (r == 0)
		*ret_before = sqlite3_total_changes64(s->db);
	return r;
}

static int
redo_end(struct store *s, int64_t before, int r)
{
	if (r == 0)
		s->redo_changes += sqlite3_total_changes64(s->db) - before;
	return txn_end(s, r);
}

/* fdatasync of the -wal file: what synchronous=FULL does after a commit. */
static int
wal_sync(sqlite3 *db)
{
	sqlite3_file *f = NULL;
	int rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);

	if (rc != SQLITE_OK)
		return rc;
	if (f == NULL || f->pMethods == NULL)
		return SQLITE_IOERR_FSYNC;
	return f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

/*
 * SQLite calls this after every commit in WAL mode, before the COMMIT (or the
 * autocommit statement) returns; an error it returns is that statement's error
 * (the commit itself stands). It syncs the commit unless it was re-doable only,
 * and checkpoints like SQLite's own hook, which it replaces.
 */
static int
wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
	struct store *s = ud;
	int64_t total = sqlite3_total_changes64(db);
	int64_t delta = total - s->changes_at_commit;
	bool relaxed = delta > 0 && delta == s->redo_changes;
	int rc = SQLITE_OK;

	s->changes_at_commit = total;
	s->redo_changes = 0;
	if (relaxed) {
		s->commits_relaxed++;
	} else {
		rc = wal_sync(db);
		s->commits_synced++;
	}
	if (rc == SQLITE_OK && frames >= STORE_WAL_CHECKPOINT_FRAMES)
		(void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return rc;
}

void
store_sync_stats(const struct store *store, uint64_t *ret_synced, uint64_t *ret_relaxed)
{
	*ret_synced = store->commits_synced;
	*ret_relaxed = store->commits_relaxed;
}

/* ---- open and close ---- */

/*
 * Check the first bytes of an existing, non-empty file: anything but the
 * SQLite header means the file is not ours to open (and never to overwrite).
 */
static int
check_header(const char *path, char **reterr_msg)
{
	static const char magic[16] = "SQLite format 3";
	char head[16];
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = -errno;
		*reterr_msg = str_printf("cannot read queue database '%s': %s", path, strerror(-r));
		return r;
	}
	n = read(fd, head, sizeof(head));
	r = n < 0 ? -errno : 0;
	close(fd);
	if (r < 0) {
		*reterr_msg = str_printf("cannot read queue database '%s': %s", path, strerror(-r));
		return r;
	}
	if (n != (ssize_t)sizeof(head) || memcmp(head, magic, sizeof(magic)) != 0) {
		*reterr_msg =
		    str_printf("'%s' is not an SQLite database (the file is left untouched; "
		               "move it aside to start with an empty queue)",
		               path);
		return -EIO;
	}
	return 0;
}

static bool
can_write(const char *path, int *ret_errno)
{
	if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0)
		return true;
	*ret_errno = errno;
	return false;
}

static bool
exists(const char *path)
{
	struct stat stb;

	return lstat(path, &stb) == 0;
}

/*
 * 'path' as an SQLite URI with the query 'query' appended: every byte that is
 * not unreserved or '/' is percent-encoded, so that any path survives.
 */
static char *
uri_from_path(const char *path, const char *query)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(path), o = 0;
	char *uri = malloc(5 + 3 * len + strlen(query) + 2);

	if (uri == NULL)
		return NULL;
	memcpy(uri, "file:", 5);
	o = 5;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)path[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '/' || ch == '-' || ch == '_' || ch == '.' ||
		    ch == '~') {
			uri[o++] = (char)ch;
		} else {
			uri[o++] = '%';
			uri[o++] = hex[ch >> 4];
			uri[o++] = hex[ch & 0xf];
		}
	}
	uri[o++] = '?';
	strcpy(uri + o, query);
	return uri;
}

static int
pragma_int(struct store *s, const char *sql, int *ret)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*ret = sqlite3_column_int(st, 0);
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			rc = SQLITE_ERROR;
		}
	}
	if (rc != SQLITE_OK) {
		rc = sqlite3_extended_errcode(s->db);
		sqlite3_finalize(st);
		return sql_fail(s, rc);
	}
	sqlite3_finalize(st);
	return 0;
}

static int
exec_sql(struct store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return sql_fail(s, sqlite3_extended_errcode(s->db));
	return 0;
}

/* Apply the migrations from the file's version up to ours, in one transaction. */
static int
migrate(struct store *s, char **reterr_msg)
{
	char sql[64];
	int r, v;

	/*
	 * All pending migrations in one IMMEDIATE transaction: a reader sees the
	 * old schema or the new one, never a version in between.
	 */
	r = exec_sql(s, "BEGIN IMMEDIATE");
	if (r < 0)
		goto fail;
	/* Re-read under the write lock: another process may have migrated. */
	r = pragma_int(s, "PRAGMA user_version", &v);
	if (r < 0)
		goto fail_rollback;
	if (v > STORE_SCHEMA_VERSION) {
		(void)exec_sql(s, "COMMIT");
		goto newer;
	}
	for (; v < STORE_SCHEMA_VERSION; v++) {
		r = exec_sql(s, migrations[v]);
		if (r < 0)
			goto fail_rollback;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		r = exec_sql(s, sql);
		if (r < 0)
			goto fail_rollback;
	}
	r = exec_sql(s, "COMMIT");
	if (r < 0)
		goto fail_rollback;
	s->version = v;
	return 0;
fail_rollback:
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
	*reterr_msg = str_printf("cannot migrate queue database '%s' to schema version %d: %s",
	                         s->path, STORE_SCHEMA_VERSION, s->errmsg);
	return r;
newer:
	*reterr_msg = str_printf("queue database '%s' has schema version %d, newer than this "
	                         "gcdrop's %d; refusing to use it",
	                         s->path, v, STORE_SCHEMA_VERSION);
	return -ENOTSUP;
}

/*
 * Open the connection of a read-only handle. SQLite reads a WAL database
 * through its -shm file; it creates that file (and -wal) when the directory is
 * writable, and reads an existing one even without write access. With neither,
 * and no -wal either, nobody is writing and everything is in the main file, so
 * the file is opened as immutable; a -wal without -shm cannot be read safely.
 */
static int
open_readonly(struct store *s, const char *dir, char **reterr_msg)
{
	char *wal = NULL, *shm = NULL, *uri = NULL;
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
	const char *name = s->path;
	int err = 0, rc, r = 0;

	wal = str_printf("%s-wal", s->path);
	shm = str_printf("%s-shm", s->path);
	if (wal == NULL || shm == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (!exists(shm) && !can_write(dir, &err)) {
		if (exists(wal)) {
			*reterr_msg =
			    str_printf("cannot read queue database '%s': '%s' exists but "
			               "'%s' does not, and directory '%s' is not writable",
			               s->path, wal, shm, dir);
			r = -EACCES;
			goto out;
		}
		uri = uri_from_path(s->path, "immutable=1");
		if (uri == NULL) {
			r = -ENOMEM;
			goto out;
		}
		name = uri;
		flags |= SQLITE_OPEN_URI;
	}
	rc = sqlite3_open_v2(name, &s->db, flags, NULL);
	if (rc != SQLITE_OK) {
		r = errno_from_sqlite(rc);
		*reterr_msg =
		    str_printf("cannot open queue database '%s': %s", s->path,
		               s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
	}
out:
	free(uri);
	free(wal);
	free(shm);
	return r;
}

/*
 * Before SQLite touches anything: the read-write handle needs to write the
 * file and, unless its -wal and -shm files exist, to create them beside it.
 */
static int
check_writable(const char *path, const char *dir, bool file_exists, char **reterr_msg)
{
	char *wal = NULL, *shm = NULL;
	int err = 0, r = 0;

	if (file_exists && !can_write(path, &err)) {
		*reterr_msg =
		    str_printf("queue database '%s' is not writable: %s", path, strerror(err));
		return -EROFS;
	}
	wal = str_printf("%s-wal", path);
	shm = str_printf("%s-shm", path);
	if (wal == NULL || shm == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if ((!file_exists || !exists(wal) || !exists(shm)) && !can_write(dir, &err)) {
		if (file_exists)
			*reterr_msg = str_printf("cannot write queue database '%s': directory '%s' "
			                         "is not writable (SQLite keeps '%s' and '%s' "
			                         "there): %s",
			                         path, dir, wal, shm, strerror(err));
		else
			*reterr_msg =
			    str_printf("cannot create queue database '%s': directory '%s' "
			               "is not writable: %s",
			               path, dir, strerror(err));
		r = -EROFS;
	}
out:
	free(wal);
	free(shm);
	return r;
}

int
store_open(const char *state_dir, int flags, struct store **ret_store, char **reterr_msg)
{
	bool readonly = (flags & STORE_OPEN_READONLY) != 0;
	struct store *s = NULL;
	char *msg = NULL;
	struct stat stb;
	bool file_exists;
	int rc, r, v = 0;

	if (state_dir == NULL || ret_store == NULL) {
		r = -EINVAL;
		goto fail;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	s->readonly = readonly;
	s->path = str_printf("%s/%s", state_dir, STORE_DB_NAME);
	if (s->path == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	if (stat(state_dir, &stb) < 0) {
		r = -errno;
		if (r == -ENOENT && readonly)
			msg = str_printf(
			    "the queue '%s' does not exist yet (no state directory '%s')", s->path,
			    state_dir);
		else
			msg = str_printf("state directory '%s': %s", state_dir, strerror(-r));
		goto fail;
	}
	if (!S_ISDIR(stb.st_mode)) {
		r = -ENOTDIR;
		msg = str_printf("state directory '%s' is not a directory", state_dir);
		goto fail;
	}
	file_exists = stat(s->path, &stb) == 0;
	if (!file_exists && errno != ENOENT) {
		r = -errno;
		msg = str_printf("queue database '%s': %s", s->path, strerror(-r));
		goto fail;
	}
	if (file_exists && !S_ISREG(stb.st_mode)) {
		r = -EINVAL;
		msg = str_printf("queue database '%s' is not a regular file", s->path);
		goto fail;
	}
	if (readonly && (!file_exists || stb.st_size == 0)) {
		r = -ENOENT;
		msg = str_printf("the queue '%s' does not exist yet", s->path);
		goto fail;
	}
	if (file_exists && stb.st_size > 0) {
		r = check_header(s->path, &msg);
		if (r < 0)
			goto fail;
	}

	if (readonly) {
		r = open_readonly(s, state_dir, &msg);
		if (r < 0)
			goto fail;
	} else {
		r = check_writable(s->path, state_dir, file_exists, &msg);
		if (r < 0)
			goto fail;
		rc = sqlite3_open_v2(
		    s->path, &s->db,
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
		if (rc != SQLITE_OK) {
			r = errno_from_sqlite(rc);
			msg =
			    str_printf("cannot open queue database '%s': %s", s->path,
			               s->db != NULL ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
			goto fail;
		}
		if (sqlite3_db_readonly(s->db, "main") == 1) {
			r = -EROFS;
			msg = str_printf("queue database '%s' is not writable", s->path);
			goto fail;
		}
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

	/* The first read: it finds out whether SQLite accepts the file at all. */
	r = pragma_int(s, "PRAGMA user_version", &v);
	if (r < 0) {
		msg = str_printf("cannot read queue database '%s': %s", s->path,
		                 sqlite3_errmsg(s->db));
		goto fail;
	}
	s->version = v;
	if (v > STORE_SCHEMA_VERSION) {
		r = -ENOTSUP;
		msg = str_printf("queue database '%s' has schema version %d, newer than this "
		                 "gcdrop's %d; refusing to use it",
		                 s->path, v, STORE_SCHEMA_VERSION);
		goto fail;
	}

	if (readonly) {
		if (v == 0) {
			r = -ENOENT;
			msg = str_printf("the queue '%s' does not exist yet", s->path);
			goto fail;
		}
		if (v < STORE_SCHEMA_VERSION) {
			r = -ENOTSUP;
			msg =
			    str_printf("queue database '%s' has schema version %d, older than this "
			               "gcdrop's %d; start the daemon once to migrate it",
			               s->path, v, STORE_SCHEMA_VERSION);
			goto fail;
		}
		r = exec_sql(s, "PRAGMA query_only = 1");
		/*
		 * Readers walk whole tables (`gcdrop status`): reading pages through
		 * a memory map instead of a read() per page is a third less system
		 * time. The map is only address space; SQLite falls back to read()
		 * where it cannot map.
		 */
		if (r == 0)
			r = exec_sql(s, "PRAGMA mmap_size = 268435456");
	} else {
		int one = 1;
		char sql[64];

		sqlite3_file_control(s->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
		r = exec_sql(s, "PRAGMA journal_mode = WAL");
		/* NORMAL, and the WAL hook syncs every commit that is not re-doable only. */
		if (r == 0)
			r = exec_sql(s, "PRAGMA synchronous = NORMAL");
		if (r == 0) {
			s->changes_at_commit = sqlite3_total_changes64(s->db);
			sqlite3_wal_hook(s->db, wal_hook, s);
		}
		if (r == 0)
			r = exec_sql(s, "PRAGMA foreign_keys = ON");
		if (r == 0) {
			snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %d",
			         STORE_WAL_LIMIT);
			r = exec_sql(s, sql);
		}
		if (r < 0) {
			msg =
			    str_printf("cannot set up queue database '%s': %s", s->path, s->errmsg);
			goto fail;
		}
		r = migrate(s, &msg);
	}
	if (r < 0)
		goto fail;
	s->errmsg[0] = '\0';
	*ret_store = s;
	return 0;

fail:
	if (r == -ENOMEM && msg == NULL)
		msg = str_printf("out of memory opening the queue");
	if (reterr_msg != NULL)
		*reterr_msg = msg;
	else
		free(msg);
	store_close(s);
	return r;
}

/*
 * Close the handle: an open transaction is rolled back, the cached statements
 * are finalized. Accepts NULL; always returns NULL.
 */
struct store *
store_close(struct store *store)
{
	if (store == NULL)
		return NULL;
	for (int i = 0; i < _ST_MAX; i++)
		sqlite3_finalize(store->stmts[i]);
	/* No PRAGMA optimize: without sqlite_stat1 the query plans stay the ones we tested. */
	if (store->db != NULL)
		sqlite3_close_v2(store->db);
	free(store->path);
	free(store);
	return NULL;
}

/* ---- cases ---- */

static int
event_add(struct store *s, int64_t case_id, int64_t now, const char *state, const char *message)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(s, ST_EVENT_ADD, &st);
	if (r < 0)
		return r;
	bind_i64(s, st, 1, case_id);
	bind_i64(s, st, 2, now);
	bind_text(s, st, 3, state);
	bind_text(s, st, 4, message);
	r = stmt_run(s, st);
	stmt_put(s, ST_EVENT_ADD, st);
	return r;
}

int
store_event_add(struct store *store, int64_t case_id, const char *state, const char *message)
{
	return event_add(store, case_id, (int64_t)time(NULL), state, message);
}

/* -ENOENT when case 'id' does not exist, else 'otherwise'. */
static int
case_missing_or(struct store *s, int64_t id, int otherwise)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(s, ST_CASE_EXISTS, &st);
	if (r < 0)
		return r;
	bind_i64(s, st, 1, id);
	r = stmt_step(s, st);
	stmt_put(s, ST_CASE_EXISTS, st);
	if (r < 0)
		return r;
	return r == 1 ? otherwise : -ENOENT;
}

static bool
state_ok(int state)
{
	return state >= 0 && state < _STORE_STATE_MAX;
}

int
store_case_find(struct store *store, const char *watch, const char *name, const char *fingerprint,
                int64_t *ret_id)
{
	sqlite3_stmt *st;
	int r;

	if (watch == NULL || name == NULL || fingerprint == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_CASE_FIND, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, watch);
	bind_text(store, st, 2, name);
	bind_text(store, st, 3, fingerprint);
	r = stmt_step(store, st);
	if (r == 1 && ret_id != NULL)
		*ret_id = sqlite3_column_int64(st, 0);
	stmt_put(store, ST_CASE_FIND, st);
	if (r < 0)
		return r;
	return r == 1 ? 0 : -ENOENT;
}

static int
file_insert(struct store *s, int64_t case_id, const struct store_file *f)
{
	sqlite3_stmt *st;
	int r;

	if (f->relpath == NULL)
		return -EINVAL;
	r = stmt_get(s, ST_FILE_INSERT, &st);
	if (r < 0)
		return r;
	bind_i64(s, st, 1, case_id);
	bind_text(s, st, 2, f->relpath);
	bind_text(s, st, 3, f->upload_name);
	bind_text(s, st, 4, f->socket);
	bind_i64(s, st, 5, f->size);
	bind_i64(s, st, 6, f->mtime_ns);
	r = stmt_run(s, st);
	stmt_put(s, ST_FILE_INSERT, st);
	/* Two files of one case with the same relpath: a caller's bug, not a duplicate case. */
	return r == -EEXIST ? -EINVAL : r;
}

/*
 * Insert a case and its files (relpath, size, mtime_ns, and upload_name and
 * socket when not NULL) with one event, in one transaction. bytes_total starts
 * as the sum of the file sizes. watch, name and fingerprint must not be NULL
 * (-EINVAL). Returns -EEXIST with the existing id in *ret_id for a duplicate.
 */
int
store_case_insert(struct store *store, const struct store_case_new *c, int64_t *ret_id)
{
	sqlite3_stmt *st = NULL;
	int64_t id = 0, total = 0, now = (int64_t)time(NULL);
	int r;

	if (c == NULL || c->watch == NULL || c->name == NULL || c->fingerprint == NULL ||
	    !state_ok((int)c->state) || (c->n_files > 0 && c->files == NULL))
		return -EINVAL;
	for (size_t i = 0; i < c->n_files; i++)
		total += c->files[i].size;
	r = store_begin(store);
	if (r < 0)
		return r;
	r = store_case_find(store, c->watch, c->name, c->fingerprint, &id);
	if (r == 0) {
		(void)store_rollback(store);
		if (ret_id != NULL)
			*ret_id = id;
		return -EEXIST;
	}
	if (r != -ENOENT)
		goto out;
	r = stmt_get(store, ST_CASE_INSERT, &st);
	if (r < 0)
		goto out;
	bind_text(store, st, 1, c->watch);
	bind_text(store, st, 2, c->name);
	bind_text(store, st, 3, c->path);
	bind_text(store, st, 4, c->fingerprint);
	bind_text(store, st, 5, state_names[c->state]);
	bind_text(store, st, 6, c->error);
	bind_i64(store, st, 7, total);
	bind_i64(store, st, 8, now);
	r = stmt_run(store, st);
	stmt_put(store, ST_CASE_INSERT, st);
	if (r < 0)
		goto out;
	id = sqlite3_last_insert_rowid(store->db);
	for (size_t i = 0; i < c->n_files && r == 0; i++)
		r = file_insert(store, id, &c->files[i]);
	if (r == 0)
		r = event_add(store, id, now, state_names[c->state], c->error);
out:
	r = txn_end(store, r);
	if (r == 0 && ret_id != NULL)
		*ret_id = id;
	return r;
}

int
store_case_get(struct store *store, int64_t id, struct store_case *ret_case)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_CASE_GET, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	r = stmt_step(store, st);
	if (r == 1)
		r = case_from_row(st, NULL, ret_case);
	else if (r == 0)
		r = -ENOENT;
	stmt_put(store, ST_CASE_GET, st);
	return r;
}

/*
 * Run an UPDATE on case 'id' that is guarded by a WHERE clause; when it
 * changes no row, tell "no such case" (-ENOENT) from "guard refused" (refused).
 */
static int
case_update(struct store *s, sqlite3_stmt *st, int64_t id, int refused)
{
	int r = stmt_run(s, st);

	if (r < 0)
		return r;
	if (sqlite3_changes(s->db) == 0)
		return case_missing_or(s, id, refused);
	return 0;
}

int
store_case_transition(struct store *store, int64_t id, enum store_state from, enum store_state to,
                      const char *error)
{
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *st = NULL;
	int r;

	if (!state_ok((int)from) || !state_ok((int)to))
		return -EINVAL;
	r = store_begin(store);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_TRANSITION, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, state_names[from]);
	bind_text(store, st, 3, state_names[to]);
	bind_text(store, st, 4, error);
	bind_i64(store, st, 5, now);
	r = case_update(store, st, id, -ESTALE);
	stmt_put(store, ST_CASE_TRANSITION, st);
	if (r == 0)
		r = event_add(store, id, now, state_names[to], error);
out:
	return txn_end(store, r);
}

int
store_case_retry_wait(struct store *store, int64_t id, enum store_state from, int64_t next_attempt,
                      const char *error)
{
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *st = NULL;
	int r;

	if (!state_ok((int)from))
		return -EINVAL;
	r = store_begin(store);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_RETRY_WAIT, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, state_names[from]);
	bind_i64(store, st, 3, next_attempt);
	bind_text(store, st, 4, error);
	bind_i64(store, st, 5, now);
	r = case_update(store, st, id, -ESTALE);
	stmt_put(store, ST_CASE_RETRY_WAIT, st);
	if (r == 0)
		r = event_add(store, id, now, state_names[STORE_RETRY_WAIT], error);
out:
	return txn_end(store, r);
}

/*
 * Leave retry-wait for resume_state (or 'to' when >= 0); next_attempt becomes
 * 0 so the case is claimable at once. -ESTALE when the case is not in
 * retry-wait, -ENOENT when it does not exist, -EINVAL for a bad 'to'.
 */
int
store_case_resume(struct store *store, int64_t id, int to)
{
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *st = NULL;
	char *state = NULL;
	int r;

	if (to >= 0 && !state_ok(to))
		return -EINVAL;
	r = store_begin(store);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_RESUME, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, to >= 0 ? state_names[to] : NULL);
	bind_i64(store, st, 3, now);
	r = stmt_step(store, st);
	if (r == 1) {
		r = col_dup(st, 0, &state);
		if (r == 0)
			r = stmt_run(store, st);
	}
	stmt_put(store, ST_CASE_RESUME, st);
	if (r == 0 && state == NULL)
		r = case_missing_or(store, id, -ESTALE);
	if (r == 0)
		r = event_add(store, id, now, state, NULL);
out:
	free(state);
	return txn_end(store, r);
}

/*
 * Hold or release a case. Setting the value it already has is a no-op; a
 * change records an event "held" / "released" under the case's state.
 */
int
store_case_set_held(struct store *store, int64_t id, bool held)
{
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *st = NULL;
	char *state = NULL;
	int r;

	r = store_begin(store);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_HELD, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_i64(store, st, 2, held ? 1 : 0);
	bind_i64(store, st, 3, now);
	r = stmt_step(store, st);
	if (r == 1) {
		r = col_dup(st, 0, &state);
		if (r == 0)
			r = stmt_run(store, st);
	}
	stmt_put(store, ST_CASE_HELD, st);
	if (r == 0 && state == NULL)
		r = case_missing_or(store, id, 0);
	else if (r == 0)
		r = event_add(store, id, now, state, held ? "held" : "released");
out:
	free(state);
	return txn_end(store, r);
}

/* Record the case's transfer progress; no event (it is written often). Re-doable. -ENOENT. */
int
store_case_set_progress(struct store *store, int64_t id, int64_t bytes_done, int64_t bytes_total)
{
	sqlite3_stmt *st;
	int64_t before;
	int r;

	r = redo_begin(store, &before);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_PROGRESS, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_i64(store, st, 2, bytes_done);
	bind_i64(store, st, 3, bytes_total);
	r = case_update(store, st, id, 0);
	stmt_put(store, ST_CASE_PROGRESS, st);
out:
	return redo_end(store, before, r);
}

/* Record (or with NULL clear) the case's results folder. -ENOENT. */
int
store_case_set_results(struct store *store, int64_t id, const char *results)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_CASE_RESULTS, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, results);
	bind_i64(store, st, 3, (int64_t)time(NULL));
	r = case_update(store, st, id, 0);
	stmt_put(store, ST_CASE_RESULTS, st);
	return r;
}

/*
 * Whatever state the case is in: state = to, attempts 0, no error, next_attempt
 * 0, no resume_state; one event "reset". Its lease is left alone. -ENOENT.
 */
int
store_case_reset(struct store *store, int64_t id, enum store_state to)
{
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *st = NULL;
	int r;

	if (!state_ok((int)to))
		return -EINVAL;
	r = store_begin(store);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_CASE_RESET, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, state_names[to]);
	bind_i64(store, st, 3, now);
	r = case_update(store, st, id, 0);
	stmt_put(store, ST_CASE_RESET, st);
	if (r == 0)
		r = event_add(store, id, now, state_names[to], "reset");
out:
	return txn_end(store, r);
}

/*
 * The claim is one statement: SQLite runs it under the database's write lock,
 * so the row its sub-select picks cannot be taken by another connection in
 * between. The order is next_attempt, then id (oldest first). A case whose
 * lease 'owner' already holds is claimable again (the lease is renewed).
 */
int
store_case_claim(struct store *store, const char *owner, int64_t now, int lease_seconds,
                 struct store_case *ret_case)
{
	struct store_case c;
	sqlite3_stmt *st;
	int r;

	if (owner == NULL || lease_seconds < 0)
		return -EINVAL;
	r = stmt_get(store, ST_CASE_CLAIM, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, owner);
	bind_i64(store, st, 2, now);
	bind_i64(store, st, 3, lease_seconds);
	r = stmt_step(store, st);
	if (r == 1) {
		r = case_from_row(st, NULL, &c);
		/* Run the statement to its end so that the UPDATE is complete. */
		if (r == 0) {
			r = stmt_run(store, st);
			if (r < 0)
				store_case_clear(&c);
		}
	} else if (r == 0) {
		r = -ENOENT;
	}
	stmt_put(store, ST_CASE_CLAIM, st);
	if (r == 0) {
		if (ret_case != NULL)
			*ret_case = c;
		else
			store_case_clear(&c);
	}
	return r;
}

/* Extend the lease of 'owner' on case 'id'; -ESTALE when 'owner' does not hold it. */
int
store_case_renew(struct store *store, int64_t id, const char *owner, int64_t until)
{
	sqlite3_stmt *st;
	int r;

	if (owner == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_CASE_RENEW, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, owner);
	bind_i64(store, st, 3, until);
	r = case_update(store, st, id, -ESTALE);
	stmt_put(store, ST_CASE_RENEW, st);
	return r;
}

/* Drop the lease of 'owner' on case 'id'; -ESTALE when 'owner' does not hold it. */
int
store_case_unclaim(struct store *store, int64_t id, const char *owner)
{
	sqlite3_stmt *st;
	int r;

	if (owner == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_CASE_UNCLAIM, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	bind_text(store, st, 2, owner);
	r = case_update(store, st, id, -ESTALE);
	stmt_put(store, ST_CASE_UNCLAIM, st);
	return r;
}

int
store_release_all_leases(struct store *store)
{
	return stmt_exec(store, ST_LEASES_RELEASE);
}

/*
 * One query. The struct handed to cb and its strings are borrowed: valid only
 * during that call. cb may call other store functions on the same handle,
 * including store_case_foreach(). A negative return of cb stops the walk and
 * is returned.
 */
int
store_case_foreach(struct store *store, const char *watch, store_case_cb cb, void *userdata)
{
	enum stmt_id id = watch != NULL ? ST_CASE_WATCH : ST_CASE_ALL;
	struct arena a = {0};
	struct store_case c;
	sqlite3_stmt *st;
	int r;

	if (cb == NULL)
		return -EINVAL;
	r = stmt_get(store, id, &st);
	if (r < 0)
		return r;
	if (watch != NULL)
		bind_text(store, st, 1, watch);
	while ((r = stmt_step(store, st)) == 1) {
		r = case_from_row(st, &a, &c);
		if (r < 0)
			break;
		r = cb(&c, userdata);
		if (r < 0)
			break;
	}
	stmt_put(store, id, st);
	free(a.buf);
	return r < 0 ? r : 0;
}

/* One query over the (state, held) index; states this program does not know are skipped. */
int
store_count_states(struct store *store, int64_t ret_counts[_STORE_STATE_MAX], int64_t *ret_held)
{
	int64_t counts[_STORE_STATE_MAX] = {0}, held = 0;
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_CASE_COUNT, &st);
	if (r < 0)
		return r;
	while ((r = stmt_step(store, st)) == 1) {
		int s = store_state_from_name(col_text(st, 0));
		int64_t n = sqlite3_column_int64(st, 2);

		if (s < 0)
			continue;
		counts[s] += n;
		if (sqlite3_column_int(st, 1) != 0)
			held += n;
	}
	stmt_put(store, ST_CASE_COUNT, st);
	if (r < 0)
		return r;
	memcpy(ret_counts, counts, sizeof(counts));
	if (ret_held != NULL)
		*ret_held = held;
	return 0;
}

/*
 * The remote URLs of the walk in store_status_foreach(): a second cursor over
 * remotes in (case_id, kind, key) order, advanced up to the current case. The
 * URLs of one case are copied into 'buf' because stepping the cursor past them
 * (to find the end of the case's rows) invalidates SQLite's pointers.
 */
struct status_remotes {
	sqlite3_stmt *st;
	int more;		/* 1: st is on a row not consumed yet; 0: done */
	char *buf;
	size_t cap;
};

static int
status_remotes_fill(struct store *s, struct status_remotes *rm, int64_t case_id,
                    struct store_status_row *row)
{
	size_t off[_STORE_REMOTE_MAX], used = 0;
	bool have[_STORE_REMOTE_MAX] = {false};
	int r = 0;

	while (rm->more == 1) {
		int64_t cid = sqlite3_column_int64(rm->st, 0);
		int kind;

		if (cid > case_id)
			break;
		kind = cid == case_id ? remote_kind_from_name(col_text(rm->st, 1)) : -1;
		if (kind >= 0 && !have[kind]) {
			const char *url = col_text(rm->st, 2);
			size_t n = (size_t)sqlite3_column_bytes(rm->st, 2) + 1;

			if (url == NULL)
				return -ENOMEM;
			if (used + n > rm->cap) {
				size_t ncap = (used + n) * 2;
				char *p = realloc(rm->buf, ncap);

				if (p == NULL)
					return -ENOMEM;
				rm->buf = p;
				rm->cap = ncap;
			}
			memcpy(rm->buf + used, url, n);
			off[kind] = used;
			have[kind] = true;
			used += n;
		}
		r = stmt_step(s, rm->st);
		if (r < 0)
			return r;
		rm->more = r;
	}
	for (int k = 0; k < _STORE_REMOTE_MAX; k++)
		row->remote_url[k] = have[k] ? rm->buf + off[k] : NULL;
	return 0;
}

int
store_status_foreach(struct store *store, const char *watch, int flags, store_status_cb cb,
                     void *userdata)
{
	bool full = (flags & STORE_STATUS_FULL) != 0;
	enum stmt_id id = full ? (watch != NULL ? ST_STATUS_FULL_WATCH : ST_STATUS_FULL_ALL)
	                       : (watch != NULL ? ST_STATUS_WATCH : ST_STATUS_ALL);
	struct status_remotes rm = {0};
	sqlite3_stmt *st = NULL;
	int r;

	if (store == NULL || cb == NULL)
		return -EINVAL;
	if (full) {
		r = stmt_get(store, ST_STATUS_REMOTES, &rm.st);
		if (r < 0)
			return r;
		r = stmt_step(store, rm.st);
		if (r < 0)
			goto out;
		rm.more = r;
	}
	r = stmt_get(store, id, &st);
	if (r < 0)
		goto out;
	if (watch != NULL)
		bind_text(store, st, 1, watch);
	while ((r = stmt_step(store, st)) == 1) {
		struct store_status_row row = {0};
		int state;

		row.id = sqlite3_column_int64(st, 0);
		row.watch = col_text(st, 1);
		row.name = col_text(st, 2);
		row.name_len = (size_t)sqlite3_column_bytes(st, 2);
		state = store_state_from_name(col_text(st, 3));
		row.state = state < 0 ? STORE_FAILED : (enum store_state)state;
		row.held = sqlite3_column_int(st, 4) != 0;
		row.attempts = sqlite3_column_int(st, 5);
		row.bytes_done = sqlite3_column_int64(st, 6);
		row.bytes_total = sqlite3_column_int64(st, 7);
		row.error = col_text(st, 8);
		if (row.watch == NULL || row.name == NULL) {
			r = -ENOMEM;
			break;
		}
		if (full) {
			row.next_attempt = sqlite3_column_int64(st, 9);
			row.results = col_text(st, 10);
			row.created = sqlite3_column_int64(st, 11);
			row.updated = sqlite3_column_int64(st, 12);
			row.fingerprint = col_text(st, 13);
			if (row.fingerprint == NULL)
				row.fingerprint = "";
			r = status_remotes_fill(store, &rm, row.id, &row);
			if (r < 0)
				break;
		}
		r = cb(&row, userdata);
		if (r < 0)
			break;
	}
out:
	if (st != NULL)
		stmt_put(store, id, st);
	if (rm.st != NULL)
		stmt_put(store, ST_STATUS_REMOTES, rm.st);
	free(rm.buf);
	return r < 0 ? r : 0;
}

/* Delete case 'id' with its files, parts, remotes, outputs and events. -ENOENT. */
int
store_case_forget(struct store *store, int64_t id)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_CASE_DELETE, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	r = stmt_run(store, st);
	if (r == 0 && sqlite3_changes(store->db) == 0)
		r = -ENOENT;
	stmt_put(store, ST_CASE_DELETE, st);
	return r;
}

/* ---- files and parts ---- */

void
store_file_clear(struct store_file *f)
{
	if (f == NULL)
		return;
	free(f->relpath);
	free(f->upload_name);
	free(f->socket);
	free(f->upload_pk);
	free(f->upload_url);
	free(f->multipart_id);
	memset(f, 0, sizeof(*f));
}

void
store_file_list_free(struct store_file *files, size_t n)
{
	for (size_t i = 0; files != NULL && i < n; i++)
		store_file_clear(&files[i]);
	free(files);
}

static int
file_from_row(sqlite3_stmt *st, struct store_file *f)
{
	memset(f, 0, sizeof(*f));
	f->id = sqlite3_column_int64(st, 0);
	f->case_id = sqlite3_column_int64(st, 1);
	f->size = sqlite3_column_int64(st, 5);
	f->mtime_ns = sqlite3_column_int64(st, 6);
	f->parts_done = sqlite3_column_int(st, 10);
	f->bytes_done = sqlite3_column_int64(st, 11);
	f->completed = sqlite3_column_int(st, 12) != 0;
	if (col_dup(st, 2, &f->relpath) < 0 || col_dup(st, 3, &f->upload_name) < 0 ||
	    col_dup(st, 4, &f->socket) < 0 || col_dup(st, 7, &f->upload_pk) < 0 ||
	    col_dup(st, 8, &f->upload_url) < 0 || col_dup(st, 9, &f->multipart_id) < 0) {
		store_file_clear(f);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Run a list query (its parameters bound already) and collect its rows into a
 * malloc'd array of 'size'-byte elements with 'from_row'. An empty result is
 * an empty array (*ret NULL, *ret_n 0). On failure the rows collected so far
 * are released with 'clear'.
 */
static int
collect_rows(struct store *s, sqlite3_stmt *st, size_t size,
             int (*from_row)(sqlite3_stmt *st, void *elem), void (*clear)(void *elem), void **ret,
             size_t *ret_n)
{
	char *arr = NULL;
	size_t n = 0, cap = 0;
	int r;

	while ((r = stmt_step(s, st)) == 1) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char *p = realloc(arr, ncap * size);

			if (p == NULL) {
				r = -ENOMEM;
				break;
			}
			arr = p;
			cap = ncap;
		}
		r = from_row(st, arr + n * size);
		if (r < 0)
			break;
		n++;
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			clear(arr + i * size);
		free(arr);
		return r;
	}
	*ret = arr;
	*ret_n = n;
	return 0;
}

static int
file_row_cb(sqlite3_stmt *st, void *elem)
{
	return file_from_row(st, elem);
}

static void
file_clear_cb(void *elem)
{
	store_file_clear(elem);
}

int
store_file_list(struct store *store, int64_t case_id, struct store_file **ret_files, size_t *ret_n)
{
	sqlite3_stmt *st;
	void *arr;
	size_t n;
	int r;

	r = stmt_get(store, ST_FILE_LIST, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	r = collect_rows(store, st, sizeof(struct store_file), file_row_cb, file_clear_cb, &arr,
	                 &n);
	stmt_put(store, ST_FILE_LIST, st);
	if (r < 0)
		return r;
	*ret_files = arr;
	*ret_n = n;
	return 0;
}

int
store_file_get(struct store *store, int64_t file_id, struct store_file *ret_file)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_FILE_GET, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, file_id);
	r = stmt_step(store, st);
	if (r == 1)
		r = file_from_row(st, ret_file);
	else if (r == 0)
		r = -ENOENT;
	stmt_put(store, ST_FILE_GET, st);
	return r;
}

/* Run a prepared UPDATE/DELETE of one row; -ENOENT when it matched none. */
static int
run_one(struct store *s, enum stmt_id id, sqlite3_stmt *st)
{
	int r = stmt_run(s, st);

	if (r == 0 && sqlite3_changes(s->db) == 0)
		r = -ENOENT;
	stmt_put(s, id, st);
	return r;
}

int
store_file_set_upload_name(struct store *store, int64_t file_id, const char *upload_name,
                           const char *socket)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_FILE_NAME, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, file_id);
	bind_text(store, st, 2, upload_name);
	bind_text(store, st, 3, socket);
	return run_one(store, ST_FILE_NAME, st);
}

static int
parts_delete(struct store *s, int64_t file_id)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(s, ST_PARTS_DELETE, &st);
	if (r < 0)
		return r;
	bind_i64(s, st, 1, file_id);
	r = stmt_run(s, st);
	stmt_put(s, ST_PARTS_DELETE, st);
	return r;
}

/*
 * Record a new upload for a file; parts of an earlier upload are dropped and
 * the file's part counters and completed flag reset. -ENOENT.
 */
int
store_file_set_upload(struct store *store, int64_t file_id, const char *upload_pk,
                      const char *upload_url, const char *multipart_id)
{
	sqlite3_stmt *st;
	int r;

	r = store_begin(store);
	if (r < 0)
		return r;
	r = parts_delete(store, file_id);
	if (r < 0)
		goto out;
	r = stmt_get(store, ST_FILE_UPLOAD, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	bind_text(store, st, 2, upload_pk);
	bind_text(store, st, 3, upload_url);
	bind_text(store, st, 4, multipart_id);
	r = run_one(store, ST_FILE_UPLOAD, st);
out:
	return txn_end(store, r);
}

/* Everything about the file's upload is forgotten, its parts too. -ENOENT. */
int
store_file_reset_upload(struct store *store, int64_t file_id)
{
	sqlite3_stmt *st;
	int r;

	r = store_begin(store);
	if (r < 0)
		return r;
	r = parts_delete(store, file_id);
	if (r < 0)
		goto out;
	r = stmt_get(store, ST_FILE_RESET, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	r = run_one(store, ST_FILE_RESET, st);
out:
	return txn_end(store, r);
}

/* Mark the file's upload complete. Re-doable (see DESIGN). -ENOENT. */
int
store_file_set_completed(struct store *store, int64_t file_id)
{
	sqlite3_stmt *st;
	int64_t before;
	int r;

	r = redo_begin(store, &before);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_FILE_COMPLETED, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	r = run_one(store, ST_FILE_COMPLETED, st);
out:
	return redo_end(store, before, r);
}

/*
 * Upsert the part and bring the file's parts_done and bytes_done up to date,
 * in one transaction. The counters move by the difference to an earlier record
 * of the same part, so the cost does not grow with the number of parts.
 * -ENOENT when the file does not exist.
 */
int
store_part_done(struct store *store, int64_t file_id, int number, const char *etag, int64_t size)
{
	int64_t old_size = 0, before;
	bool had = false;
	sqlite3_stmt *st;
	int r;

	if (etag == NULL || number < 1)
		return -EINVAL;
	r = redo_begin(store, &before);
	if (r < 0)
		return r;
	r = stmt_get(store, ST_PART_OLD, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	bind_i64(store, st, 2, number);
	r = stmt_step(store, st);
	if (r == 1) {
		had = true;
		old_size = sqlite3_column_int64(st, 0);
		r = 0;
	}
	stmt_put(store, ST_PART_OLD, st);
	if (r < 0)
		goto out;
	r = stmt_get(store, ST_PART_PUT, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	bind_i64(store, st, 2, number);
	bind_text(store, st, 3, etag);
	bind_i64(store, st, 4, size);
	r = stmt_run(store, st);
	stmt_put(store, ST_PART_PUT, st);
	if (r < 0)
		goto out;
	r = stmt_get(store, ST_PART_ADD, &st);
	if (r < 0)
		goto out;
	bind_i64(store, st, 1, file_id);
	bind_i64(store, st, 2, had ? 0 : 1);
	bind_i64(store, st, 3, size - old_size);
	r = run_one(store, ST_PART_ADD, st);
out:
	return redo_end(store, before, r);
}

static int
part_row_cb(sqlite3_stmt *st, void *elem)
{
	struct store_part *p = elem;

	memset(p, 0, sizeof(*p));
	p->number = sqlite3_column_int(st, 0);
	p->size = sqlite3_column_int64(st, 2);
	return col_dup(st, 1, &p->etag);
}

static void
part_clear_cb(void *elem)
{
	struct store_part *p = elem;

	free(p->etag);
}

/* The parts of a file in number order; a file without parts (or none) gives an empty list. */
int
store_part_list(struct store *store, int64_t file_id, struct store_part **ret_parts, size_t *ret_n)
{
	sqlite3_stmt *st;
	void *arr;
	size_t n;
	int r;

	r = stmt_get(store, ST_PART_LIST, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, file_id);
	r = collect_rows(store, st, sizeof(struct store_part), part_row_cb, part_clear_cb, &arr,
	                 &n);
	stmt_put(store, ST_PART_LIST, st);
	if (r < 0)
		return r;
	*ret_parts = arr;
	*ret_n = n;
	return 0;
}

void
store_part_list_free(struct store_part *parts, size_t n)
{
	for (size_t i = 0; parts != NULL && i < n; i++)
		free(parts[i].etag);
	free(parts);
}

/* ---- remote objects ---- */

void
store_remote_clear(struct store_remote *r)
{
	if (r == NULL)
		return;
	free(r->key);
	free(r->title);
	free(r->pk);
	free(r->url);
	free(r->status);
	free(r->json);
	memset(r, 0, sizeof(*r));
}

void
store_remote_list_free(struct store_remote *r, size_t n)
{
	for (size_t i = 0; r != NULL && i < n; i++)
		store_remote_clear(&r[i]);
	free(r);
}

static int
remote_row_cb(sqlite3_stmt *st, void *elem)
{
	struct store_remote *r = elem;
	int kind;

	memset(r, 0, sizeof(*r));
	r->case_id = sqlite3_column_int64(st, 0);
	kind = remote_kind_from_name(col_text(st, 1));
	r->kind = kind < 0 ? STORE_REMOTE_SESSION : (enum store_remote_kind)kind;
	r->intent_only = sqlite3_column_int(st, 3) != 0;
	r->updated = sqlite3_column_int64(st, 9);
	if (col_dup(st, 2, &r->key) < 0 || col_dup(st, 4, &r->title) < 0 ||
	    col_dup(st, 5, &r->pk) < 0 || col_dup(st, 6, &r->url) < 0 ||
	    col_dup(st, 7, &r->status) < 0 || col_dup(st, 8, &r->json) < 0) {
		store_remote_clear(r);
		return -ENOMEM;
	}
	return 0;
}

static void
remote_clear_cb(void *elem)
{
	store_remote_clear(elem);
}

static bool
remote_kind_ok(enum store_remote_kind kind)
{
	return (int)kind >= 0 && kind < _STORE_REMOTE_MAX;
}

/*
 * Record the intent (intent_only = 1) before the create request. If a record
 * exists already it is kept as it is (an answer recorded stays recorded); only
 * a non-NULL title replaces its title. key NULL means "". -ENOENT when the case
 * does not exist.
 */
int
store_remote_intent(struct store *store, int64_t case_id, enum store_remote_kind kind,
                    const char *key, const char *title)
{
	sqlite3_stmt *st;
	int r;

	if (!remote_kind_ok(kind))
		return -EINVAL;
	r = stmt_get(store, ST_REMOTE_INTENT, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	bind_text(store, st, 2, remote_kind_names[kind]);
	bind_text(store, st, 3, key != NULL ? key : "");
	bind_text(store, st, 4, title);
	bind_i64(store, st, 5, (int64_t)time(NULL));
	r = stmt_run(store, st);
	stmt_put(store, ST_REMOTE_INTENT, st);
	return r;
}

/*
 * Record what the server answered (creating the record if there was no
 * intent). NULL arguments keep what was recorded before, so a poll can update
 * only status and json. -ENOENT when the case does not exist.
 */
int
store_remote_set(struct store *store, int64_t case_id, enum store_remote_kind kind, const char *key,
                 const char *pk, const char *url, const char *status, const char *json)
{
	sqlite3_stmt *st;
	int r;

	if (!remote_kind_ok(kind))
		return -EINVAL;
	r = stmt_get(store, ST_REMOTE_SET, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	bind_text(store, st, 2, remote_kind_names[kind]);
	bind_text(store, st, 3, key != NULL ? key : "");
	bind_text(store, st, 4, pk);
	bind_text(store, st, 5, url);
	bind_text(store, st, 6, status);
	bind_text(store, st, 7, json);
	bind_i64(store, st, 8, (int64_t)time(NULL));
	r = stmt_run(store, st);
	stmt_put(store, ST_REMOTE_SET, st);
	return r;
}

int
store_remote_get(struct store *store, int64_t case_id, enum store_remote_kind kind, const char *key,
                 struct store_remote *ret)
{
	sqlite3_stmt *st;
	int r;

	if (!remote_kind_ok(kind))
		return -EINVAL;
	r = stmt_get(store, ST_REMOTE_GET, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	bind_text(store, st, 2, remote_kind_names[kind]);
	bind_text(store, st, 3, key != NULL ? key : "");
	r = stmt_step(store, st);
	if (r == 1)
		r = remote_row_cb(st, ret);
	else if (r == 0)
		r = -ENOENT;
	stmt_put(store, ST_REMOTE_GET, st);
	return r;
}

/* All remote records of a case, ordered by kind name and key. */
int
store_remote_list(struct store *store, int64_t case_id, struct store_remote **ret, size_t *ret_n)
{
	sqlite3_stmt *st;
	void *arr;
	size_t n;
	int r;

	r = stmt_get(store, ST_REMOTE_LIST, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	r = collect_rows(store, st, sizeof(struct store_remote), remote_row_cb, remote_clear_cb,
	                 &arr, &n);
	stmt_put(store, ST_REMOTE_LIST, st);
	if (r < 0)
		return r;
	*ret = arr;
	*ret_n = n;
	return 0;
}

int
store_remote_delete(struct store *store, int64_t case_id, enum store_remote_kind kind,
                    const char *key)
{
	sqlite3_stmt *st;
	int r;

	if (!remote_kind_ok(kind))
		return -EINVAL;
	r = stmt_get(store, ST_REMOTE_DELETE, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	bind_text(store, st, 2, remote_kind_names[kind]);
	bind_text(store, st, 3, key != NULL ? key : "");
	return run_one(store, ST_REMOTE_DELETE, st);
}

/* ---- job outputs ---- */

void
store_output_clear(struct store_output *o)
{
	if (o == NULL)
		return;
	free(o->socket);
	free(o->super_kind);
	free(o->value_json);
	free(o->url);
	free(o->path);
	memset(o, 0, sizeof(*o));
}

void
store_output_list_free(struct store_output *o, size_t n)
{
	for (size_t i = 0; o != NULL && i < n; i++)
		store_output_clear(&o[i]);
	free(o);
}

/*
 * Insert or replace the output (case_id, socket); a NULL path keeps a path
 * recorded before. socket and super_kind are required. -ENOENT when the case
 * does not exist.
 */
int
store_output_put(struct store *store, const struct store_output *o)
{
	sqlite3_stmt *st;
	int r;

	if (o == NULL || o->socket == NULL || o->super_kind == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_OUTPUT_PUT, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, o->case_id);
	bind_text(store, st, 2, o->socket);
	bind_text(store, st, 3, o->super_kind);
	bind_text(store, st, 4, o->value_json);
	bind_text(store, st, 5, o->url);
	bind_text(store, st, 6, o->path);
	r = stmt_run(store, st);
	stmt_put(store, ST_OUTPUT_PUT, st);
	return r;
}

int
store_output_set_path(struct store *store, int64_t case_id, const char *socket, const char *path)
{
	sqlite3_stmt *st;
	int r;

	if (socket == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_OUTPUT_PATH, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	bind_text(store, st, 2, socket);
	bind_text(store, st, 3, path);
	return run_one(store, ST_OUTPUT_PATH, st);
}

static int
output_row_cb(sqlite3_stmt *st, void *elem)
{
	struct store_output *o = elem;

	memset(o, 0, sizeof(*o));
	o->case_id = sqlite3_column_int64(st, 0);
	if (col_dup(st, 1, &o->socket) < 0 || col_dup(st, 2, &o->super_kind) < 0 ||
	    col_dup(st, 3, &o->value_json) < 0 || col_dup(st, 4, &o->url) < 0 ||
	    col_dup(st, 5, &o->path) < 0) {
		store_output_clear(o);
		return -ENOMEM;
	}
	return 0;
}

static void
output_clear_cb(void *elem)
{
	store_output_clear(elem);
}

/* The outputs of a case in socket order. */
int
store_output_list(struct store *store, int64_t case_id, struct store_output **ret, size_t *ret_n)
{
	sqlite3_stmt *st;
	void *arr;
	size_t n;
	int r;

	r = stmt_get(store, ST_OUTPUT_LIST, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	r = collect_rows(store, st, sizeof(struct store_output), output_row_cb, output_clear_cb,
	                 &arr, &n);
	stmt_put(store, ST_OUTPUT_LIST, st);
	if (r < 0)
		return r;
	*ret = arr;
	*ret_n = n;
	return 0;
}

/* ---- event log ---- */

void
store_event_clear(struct store_event *e)
{
	if (e == NULL)
		return;
	free(e->state);
	free(e->message);
	memset(e, 0, sizeof(*e));
}

void
store_event_list_free(struct store_event *e, size_t n)
{
	for (size_t i = 0; e != NULL && i < n; i++)
		store_event_clear(&e[i]);
	free(e);
}

static int
event_row_cb(sqlite3_stmt *st, void *elem)
{
	struct store_event *e = elem;

	memset(e, 0, sizeof(*e));
	e->id = sqlite3_column_int64(st, 0);
	e->case_id = sqlite3_column_int64(st, 1);
	e->time = sqlite3_column_int64(st, 2);
	if (col_dup(st, 3, &e->state) < 0 || col_dup(st, 4, &e->message) < 0) {
		store_event_clear(e);
		return -ENOMEM;
	}
	return 0;
}

static void
event_clear_cb(void *elem)
{
	store_event_clear(elem);
}

int
store_event_list(struct store *store, int64_t case_id, struct store_event **ret, size_t *ret_n)
{
	sqlite3_stmt *st;
	void *arr;
	size_t n;
	int r;

	r = stmt_get(store, ST_EVENT_LIST, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, case_id);
	r = collect_rows(store, st, sizeof(struct store_event), event_row_cb, event_clear_cb, &arr,
	                 &n);
	stmt_put(store, ST_EVENT_LIST, st);
	if (r < 0)
		return r;
	*ret = arr;
	*ret_n = n;
	return 0;
}

/* ---- operator requests ---- */

void
store_request_clear(struct store_request *r)
{
	if (r == NULL)
		return;
	free(r->watch);
	free(r->path);
	memset(r, 0, sizeof(*r));
}

int
store_request_add(struct store *store, enum store_request_kind kind, int64_t case_id,
                  const char *watch, const char *path)
{
	const char *name = request_kind_name(kind);
	sqlite3_stmt *st;
	int r;

	if (name == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_REQUEST_ADD, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, name);
	bind_i64(store, st, 2, case_id);
	bind_text(store, st, 3, watch);
	bind_text(store, st, 4, path);
	bind_i64(store, st, 5, (int64_t)time(NULL));
	r = stmt_run(store, st);
	stmt_put(store, ST_REQUEST_ADD, st);
	return r;
}

/*
 * The oldest pending request. A request of a kind this program does not know
 * (written by a newer CLI) is returned with kind -1 cast to the enum, so that
 * the caller can log it and mark it done.
 */
int
store_request_next(struct store *store, struct store_request *ret)
{
	struct store_request q = {0};
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_REQUEST_NEXT, &st);
	if (r < 0)
		return r;
	r = stmt_step(store, st);
	if (r == 1) {
		q.id = sqlite3_column_int64(st, 0);
		q.kind = (enum store_request_kind)request_kind_from_name(col_text(st, 1));
		q.case_id = sqlite3_column_int64(st, 2);
		r = col_dup(st, 3, &q.watch);
		if (r == 0)
			r = col_dup(st, 4, &q.path);
		if (r < 0)
			store_request_clear(&q);
	} else if (r == 0) {
		r = -ENOENT;
	}
	stmt_put(store, ST_REQUEST_NEXT, st);
	if (r == 0)
		*ret = q;
	return r;
}

int
store_request_done(struct store *store, int64_t id)
{
	sqlite3_stmt *st;
	int r;

	r = stmt_get(store, ST_REQUEST_DONE, &st);
	if (r < 0)
		return r;
	bind_i64(store, st, 1, id);
	return run_one(store, ST_REQUEST_DONE, st);
}

/* ---- watches ---- */

int
store_watch_sync(struct store *store, const char *name, const char *path, const char *dest,
                 const char *slug)
{
	sqlite3_stmt *st;
	int r;

	if (name == NULL || path == NULL || dest == NULL || slug == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_WATCH_SYNC, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, name);
	bind_text(store, st, 2, path);
	bind_text(store, st, 3, dest);
	bind_text(store, st, 4, slug);
	bind_i64(store, st, 5, (int64_t)time(NULL));
	r = stmt_run(store, st);
	stmt_put(store, ST_WATCH_SYNC, st);
	return r;
}

/* ---- settings ---- */

int
store_setting_get(struct store *store, const char *name, char **ret_value)
{
	sqlite3_stmt *st;
	char *v = NULL;
	int r;

	if (store == NULL || name == NULL || ret_value == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_SETTING_GET, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, name);
	r = stmt_step(store, st);
	if (r == 1)
		r = col_dup(st, 0, &v);
	else if (r == 0)
		r = -ENOENT;
	stmt_put(store, ST_SETTING_GET, st);
	if (r < 0)
		return r;
	*ret_value = v;
	return 0;
}

int
store_setting_set(struct store *store, const char *name, const char *value)
{
	enum stmt_id id = value != NULL ? ST_SETTING_SET : ST_SETTING_DEL;
	sqlite3_stmt *st;
	int r;

	if (store == NULL || name == NULL)
		return -EINVAL;
	r = stmt_get(store, id, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, name);
	if (value != NULL)
		bind_text(store, st, 2, value);
	r = stmt_run(store, st);
	stmt_put(store, id, st);
	return r;
}

int
store_hold_all_get(struct store *store, bool *ret_held)
{
	char *v = NULL;
	int r = store_setting_get(store, STORE_SETTING_HOLD_ALL, &v);

	if (r == -ENOENT) {
		*ret_held = false;
		return 0;
	}
	if (r < 0)
		return r;
	*ret_held = strcmp(v, "1") == 0;
	free(v);
	return 0;
}

int
store_hold_all_set(struct store *store, bool held)
{
	return store_setting_set(store, STORE_SETTING_HOLD_ALL, held ? "1" : NULL);
}

/* ---- settling cases ---- */

int
store_settling_add(struct store *store, const char *watch, const char *name, int64_t since)
{
	sqlite3_stmt *st;
	int r;

	if (store == NULL || watch == NULL || name == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_SETTLING_ADD, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, watch);
	bind_text(store, st, 2, name);
	bind_i64(store, st, 3, since);
	r = stmt_run(store, st);
	stmt_put(store, ST_SETTLING_ADD, st);
	return r;
}

int
store_settling_remove(struct store *store, const char *watch, const char *name)
{
	sqlite3_stmt *st;
	int r;

	if (store == NULL || watch == NULL || name == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_SETTLING_DEL, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, watch);
	bind_text(store, st, 2, name);
	r = stmt_run(store, st);
	stmt_put(store, ST_SETTLING_DEL, st);
	return r;
}

int
store_settling_clear(struct store *store)
{
	if (store == NULL)
		return -EINVAL;
	return stmt_exec(store, ST_SETTLING_CLEAR);
}

int
store_settling_count(struct store *store, int64_t *ret_n)
{
	sqlite3_stmt *st;
	int64_t n = 0;
	int r;

	if (store == NULL || ret_n == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_SETTLING_COUNT, &st);
	if (r < 0)
		return r;
	r = stmt_step(store, st);
	if (r == 1) {
		n = sqlite3_column_int64(st, 0);
		r = 0;
	}
	stmt_put(store, ST_SETTLING_COUNT, st);
	if (r < 0)
		return r;
	*ret_n = n;
	return 0;
}

int
store_settling_foreach(struct store *store, const char *watch, store_settling_cb cb,
		       void *userdata)
{
	enum stmt_id id = watch != NULL ? ST_SETTLING_WATCH : ST_SETTLING_ALL;
	sqlite3_stmt *st;
	int r, cr = 0;

	if (store == NULL || cb == NULL)
		return -EINVAL;
	r = stmt_get(store, id, &st);
	if (r < 0)
		return r;
	if (watch != NULL)
		bind_text(store, st, 1, watch);
	while ((r = stmt_step(store, st)) == 1) {
		struct store_settling row = {
			.watch = col_text(st, 0),
			.name = col_text(st, 1),
			.name_len = (size_t)sqlite3_column_bytes(st, 1),
			.since = sqlite3_column_int64(st, 2),
		};

		if (row.watch == NULL || row.name == NULL) {
			r = -ENOMEM;
			break;
		}
		cr = cb(&row, userdata);
		if (cr < 0)
			break;
	}
	stmt_put(store, id, st);
	if (cr < 0)
		return cr;
	return r;
}

int
store_bytes_left(struct store *store, enum store_state state, int64_t *ret_left,
		 int64_t *ret_unknown)
{
	sqlite3_stmt *st;
	int64_t left = 0, unknown = 0;
	int r;

	if (store == NULL || store_state_name(state) == NULL || ret_left == NULL)
		return -EINVAL;
	r = stmt_get(store, ST_BYTES_LEFT, &st);
	if (r < 0)
		return r;
	bind_text(store, st, 1, store_state_name(state));
	r = stmt_step(store, st);
	if (r == 1) {
		left = sqlite3_column_int64(st, 0);
		unknown = sqlite3_column_int64(st, 1);
		r = 0;
	}
	stmt_put(store, ST_BYTES_LEFT, st);
	if (r < 0)
		return r;
	*ret_left = left;
	if (ret_unknown != NULL)
		*ret_unknown = unknown;
	return 0;
}

/* The first lines SQLite reports go into the message, joined with "; ". */
int
store_integrity_check(struct store *store, char **reterr_msg)
{
	sqlite3_stmt *st = NULL;
	char buf[1024] = "";
	size_t off = 0;
	bool ok = false;
	int rc, rows = 0, r = 0;

	rc = sqlite3_prepare_v2(store->db, "PRAGMA integrity_check(20)", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		r = sql_fail(store, sqlite3_extended_errcode(store->db));
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *line = col_text(st, 0);

		if (line == NULL)
			continue;
		if (rows++ == 0 && strcmp(line, "ok") == 0)
			ok = true;
		if (off < sizeof(buf))
			off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s",
			                        off ? "; " : "", line);
	}
	if (rc != SQLITE_DONE) {
		r = sql_fail(store, sqlite3_extended_errcode(store->db));
		goto out;
	}
	if (!ok)
		r = -EIO;
out:
	sqlite3_finalize(st);
	if (r < 0 && reterr_msg != NULL)
		*reterr_msg = str_printf("integrity check of '%s' failed: %s", store->path,
		                         rows > 0 ? buf : store->errmsg);
	return r;
}
