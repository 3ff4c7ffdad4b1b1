-- Audit trail of the DLQ console (`conveyor dlq ...`): every replay, purge and import,
-- who ran it, what it asked for, how it ended, and what happened to each message.
-- A run is recorded *before* it touches the broker (outcome 'running') and closed at the
-- end; a run still 'running' long after it started was interrupted (killed, lost
-- connection), and its message rows say how far it got.

CREATE TABLE dlq_audit_runs (
    run_id       uuid PRIMARY KEY,
    action       text NOT NULL CHECK (action IN ('replay', 'purge', 'import')),
    operator     text NOT NULL CHECK (operator <> '' AND length(operator) <= 128),
    queue        text NOT NULL CHECK (queue <> '' AND length(queue) <= 255),
    selection    jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text NOT NULL DEFAULT 'running'
                 CHECK (outcome IN ('running', 'ok', 'failed', 'stopped')),
    matched      integer NOT NULL DEFAULT 0 CHECK (matched >= 0),
    succeeded    integer NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed       integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    detail       text,
    CONSTRAINT dlq_audit_runs_finished CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX dlq_audit_runs_started_idx ON dlq_audit_runs (started_at DESC);

-- One row per message a run changed, written right after the change was confirmed.
CREATE TABLE dlq_audit_messages (
    run_id       uuid NOT NULL REFERENCES dlq_audit_runs (run_id),
    seq          integer NOT NULL CHECK (seq >= 1),
    message_id   text,           -- NULL: dead letters without a message_id exist too
    outcome      text NOT NULL CHECK (outcome IN ('replayed', 'purged', 'imported', 'skipped')),
    target       text,           -- "exchange -> routing key" or a queue
    fingerprint  text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX dlq_audit_messages_message_idx ON dlq_audit_messages (message_id);
