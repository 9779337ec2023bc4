-- Prototypes of "a writer lock taken at COMMIT" (issue 12), beside the library's own objects for
-- table bench_t (its signing key and lease keys are reused). Each variant has its own tables, so
-- that run.sh can alternate them. Not the library's code: measurements only.
DROP TABLE IF EXISTS cl_raw, cl_d, cl_d_changes, cl_m, cl_m_changes, cl_m_revs, cl_n, cl_n_changes CASCADE;
DROP SEQUENCE IF EXISTS cl_d_seq, cl_m_seq, cl_n_seq;

-- lock_only: the raw upsert, and a deferred constraint trigger that takes the writer lock and
-- notifies at COMMIT (the issue's own measurement, without stamping or logging).
CREATE TABLE cl_raw (key varchar(255) PRIMARY KEY, value jsonb NOT NULL);
INSERT INTO cl_raw SELECT 'k' || g, '{"n": 0}' FROM generate_series(1, 1000) g;
CREATE OR REPLACE FUNCTION cl_raw_commit() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_advisory_xact_lock(1937337955, 1);
  PERFORM pg_notify('cl_ch', NEW.key);
  RETURN NULL;
END $fn$;
CREATE CONSTRAINT TRIGGER cl_raw_at_commit AFTER INSERT OR UPDATE ON cl_raw
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cl_raw_commit();

-- restamp: today's table and log; the function writes the row with revision 0 and no lock; at
-- COMMIT a deferred trigger takes the writer lock, draws the revision, re-stamps the row, inserts
-- the log row, signs and notifies, and leaves "txid:revision" in a session setting for the
-- client's pipelined SELECT.
CREATE TABLE cl_d (key varchar(255) PRIMARY KEY, value jsonb NOT NULL,
                   updated_at timestamp NOT NULL DEFAULT now(), revision bigint NOT NULL DEFAULT 0);
CREATE INDEX ON cl_d (updated_at);
CREATE INDEX ON cl_d (revision);
CREATE SEQUENCE cl_d_seq;
CREATE TABLE cl_d_changes (LIKE bench_t_changes INCLUDING DEFAULTS);
ALTER TABLE cl_d_changes ADD PRIMARY KEY (revision);
CREATE INDEX ON cl_d_changes (key, revision);
INSERT INTO cl_d SELECT 'k' || g, '{"n": 0}', now(), g FROM generate_series(1, 1000) g;
SELECT setval('cl_d_seq', 1000);
CREATE OR REPLACE FUNCTION cl_d_put(k text, v jsonb) RETURNS bigint LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM 1 FROM cl_d t WHERE t.key = k FOR UPDATE;
  IF FOUND THEN
    UPDATE cl_d t SET value = v, revision = 0, updated_at = localtimestamp WHERE t.key = k;
  ELSE
    INSERT INTO cl_d AS t (key, value, revision, updated_at) VALUES (k, v, 0, localtimestamp)
      ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, revision = 0, updated_at = EXCLUDED.updated_at;
  END IF;
  DELETE FROM bench_t_lease_keys lk WHERE lk.key = k;
  RETURN txid_current();
END $fn$;
CREATE OR REPLACE FUNCTION cl_d_commit() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE rev bigint; xid bigint := txid_current(); payload text; sc_ipad bytea; sc_opad bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(1937337955, 2);
  rev := nextval('cl_d_seq');
  UPDATE cl_d t SET revision = rev WHERE t.key = NEW.key;
  INSERT INTO cl_d_changes (revision, key, op, value, prev_value, prev_revision, actor, txid)
    VALUES (rev, NEW.key, 'set', NEW.value, CASE WHEN TG_OP = 'UPDATE' THEN OLD.value END,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.revision END, current_user, xid);
  payload := json_build_object('sc', 1, 'op', 'u', 'r', rev, 'x', xid, 't',
    floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'e', 1, 'k', NEW.key,
    'val', NEW.value::text)::text;
  SELECT sk.ipad, sk.opad INTO sc_ipad, sc_opad FROM bench_t_sc_key sk WHERE sk.id = 1;
  PERFORM pg_notify('cl_ch', CASE WHEN sc_ipad IS NULL THEN payload ELSE left(payload, -1) ||
    ', "m" : "' || left(encode(sha256(sc_opad || sha256(sc_ipad || convert_to(payload, 'UTF8'))),
    'hex'), 32) || '"}' END);
  PERFORM set_config('syncconfig.rev', xid || ':' || rev, false);
  RETURN NULL;
END $fn$;
CREATE CONSTRAINT TRIGGER cl_d_at_commit AFTER INSERT OR UPDATE ON cl_d
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (pg_trigger_depth() < 1)
  EXECUTE FUNCTION cl_d_commit();

-- revmap: rows and log rows carry the transaction id instead of a revision, written without a
-- lock; at COMMIT the trigger takes the lock, draws the revision and records txid -> revision in
-- a small map (what readers would join through), signs and notifies. The least work under the
-- lock that still gives commit-ordered revisions.
CREATE TABLE cl_m (key varchar(255) PRIMARY KEY, value jsonb NOT NULL,
                   updated_at timestamp NOT NULL DEFAULT now(), txid bigint NOT NULL DEFAULT 0);
CREATE TABLE cl_m_changes (txid bigint NOT NULL, ord int NOT NULL, key varchar(255),
  op text NOT NULL, value jsonb, prev_value jsonb, prev_txid bigint,
  changed_at timestamptz NOT NULL DEFAULT now(), actor text NOT NULL DEFAULT '',
  comment text NOT NULL DEFAULT '', PRIMARY KEY (txid, ord));
CREATE INDEX ON cl_m_changes (key, txid);
CREATE TABLE cl_m_revs (txid bigint PRIMARY KEY, revision bigint NOT NULL);
CREATE INDEX ON cl_m_revs (revision);
CREATE SEQUENCE cl_m_seq;
INSERT INTO cl_m SELECT 'k' || g, '{"n": 0}', now(), 0 FROM generate_series(1, 1000) g;
-- nolock: the same as revmap without the lock, the map and the signature: the per-write work
-- of recording a change, with nothing serialized (a floor, not a design: revisions drawn so
-- do not follow commit order).
CREATE TABLE cl_n (LIKE cl_m INCLUDING ALL);
CREATE TABLE cl_n_changes (LIKE cl_m_changes INCLUDING ALL);
CREATE SEQUENCE cl_n_seq;
INSERT INTO cl_n SELECT * FROM cl_m;

-- cl_m_put and cl_n_put are the same function over two tables, written out twice on purpose:
-- one function taking the table as an argument needs dynamic SQL, which measured slower.
CREATE OR REPLACE FUNCTION cl_m_put(k text, v jsonb) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE old_tx bigint; old_val jsonb; xid bigint := txid_current();
BEGIN
  SELECT t.txid, t.value INTO old_tx, old_val FROM cl_m t WHERE t.key = k FOR UPDATE;
  INSERT INTO cl_m AS t (key, value, txid, updated_at) VALUES (k, v, xid, localtimestamp)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, txid = EXCLUDED.txid,
                                    updated_at = EXCLUDED.updated_at;
  DELETE FROM bench_t_lease_keys lk WHERE lk.key = k;
  INSERT INTO cl_m_changes (txid, ord, key, op, value, prev_value, prev_txid, actor)
    VALUES (xid, 1, k, 'set', v, old_val, old_tx, current_user);
  RETURN xid;
END $fn$;
CREATE OR REPLACE FUNCTION cl_n_put(k text, v jsonb) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE old_tx bigint; old_val jsonb; xid bigint := txid_current();
BEGIN
  SELECT t.txid, t.value INTO old_tx, old_val FROM cl_n t WHERE t.key = k FOR UPDATE;
  INSERT INTO cl_n AS t (key, value, txid, updated_at) VALUES (k, v, xid, localtimestamp)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, txid = EXCLUDED.txid,
                                    updated_at = EXCLUDED.updated_at;
  DELETE FROM bench_t_lease_keys lk WHERE lk.key = k;
  INSERT INTO cl_n_changes (txid, ord, key, op, value, prev_value, prev_txid, actor)
    VALUES (xid, 1, k, 'set', v, old_val, old_tx, current_user);
  RETURN xid;
END $fn$;
CREATE OR REPLACE FUNCTION cl_m_commit() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE rev bigint; payload text; sc_ipad bytea; sc_opad bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(1937337955, 3);
  rev := nextval('cl_m_seq');
  INSERT INTO cl_m_revs (txid, revision) VALUES (NEW.txid, rev);
  payload := json_build_object('sc', 1, 'op', 'u', 'r', rev, 'x', NEW.txid, 't',
    floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'e', 1, 'k', NEW.key,
    'val', NEW.value::text)::text;
  SELECT sk.ipad, sk.opad INTO sc_ipad, sc_opad FROM bench_t_sc_key sk WHERE sk.id = 1;
  PERFORM pg_notify('cl_ch', CASE WHEN sc_ipad IS NULL THEN payload ELSE left(payload, -1) ||
    ', "m" : "' || left(encode(sha256(sc_opad || sha256(sc_ipad || convert_to(payload, 'UTF8'))),
    'hex'), 32) || '"}' END);
  PERFORM set_config('syncconfig.rev', NEW.txid || ':' || rev, false);
  RETURN NULL;
END $fn$;
CREATE CONSTRAINT TRIGGER cl_m_at_commit AFTER INSERT ON cl_m_changes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cl_m_commit();
CREATE OR REPLACE FUNCTION cl_n_commit() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE rev bigint := nextval('cl_n_seq');
BEGIN
  PERFORM pg_notify('cl_ch', json_build_object('sc', 1, 'op', 'u', 'r', rev, 'x', NEW.txid, 't',
    floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'e', 1, 'k', NEW.key,
    'val', NEW.value::text)::text);
  PERFORM set_config('syncconfig.rev', NEW.txid || ':' || rev, false);
  RETURN NULL;
END $fn$;
CREATE CONSTRAINT TRIGGER cl_n_at_commit AFTER INSERT ON cl_n_changes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cl_n_commit();
