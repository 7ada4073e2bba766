-- datacap schema, PostgreSQL flavour. Keep in step with ../sqlite/20261129000001_initial.sql:
-- same tables, columns, views and meanings; only the column types differ.
-- Timestamps are TIMESTAMPTZ; booleans are BOOLEAN; integers BIGINT.
-- Enum columns hold the snake_case
-- spellings of STATUS_MODEL.md (the same strings datacap-core's `as_str` gives).

CREATE TABLE companies (
    id                            TEXT PRIMARY KEY,
    name                          TEXT NOT NULL,
    provider                      TEXT NOT NULL CHECK (provider IN ('google_workspace', 'microsoft_365', 'none')),
    connection_mode               TEXT NOT NULL CHECK (connection_mode IN ('company_wide', 'user_by_user')),
    permission_given              BOOLEAN NOT NULL,
    email_authorized              BOOLEAN NOT NULL,
    calendar_authorized           BOOLEAN NOT NULL,
    import_email                  BOOLEAN NOT NULL,
    import_calendar               BOOLEAN NOT NULL,
    import_non_recorded_meetings  BOOLEAN NOT NULL,
    -- JSON object of credential references (key file paths, env var names, client ids);
    -- never a secret value.
    credential_refs               TEXT NOT NULL DEFAULT '{}',
    active                        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                    TIMESTAMPTZ NOT NULL,
    updated_at                    TIMESTAMPTZ NOT NULL
);

CREATE TABLE members (
    id                            TEXT PRIMARY KEY,
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    email                         TEXT NOT NULL,
    has_recording_seat            BOOLEAN NOT NULL,
    recording_enabled             BOOLEAN NOT NULL,
    email_import                  BOOLEAN NOT NULL,
    calendar_import               BOOLEAN NOT NULL,
    import_non_recorded_meetings  BOOLEAN NOT NULL,
    active                        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                    TIMESTAMPTZ NOT NULL,
    updated_at                    TIMESTAMPTZ NOT NULL,
    deactivated_at                    TIMESTAMPTZ
);
CREATE INDEX members_company ON members (company_id);

-- A user-by-user member's own grant. The refresh token is XChaCha20-Poly1305 ciphertext
-- (24-byte nonce, then ciphertext and tag) under the key named by key_id, with the
-- company and member ids as associated data.
CREATE TABLE member_grants (
    member_id                     TEXT PRIMARY KEY REFERENCES members (id),
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    state                         TEXT NOT NULL CHECK (state IN ('connected', 'not_connected', 'invalid')),
    scopes                        TEXT NOT NULL DEFAULT '',
    refresh_token_ciphertext      BYTEA,
    key_id                        TEXT,
    updated_at                    TIMESTAMPTZ NOT NULL
);

-- One canary per encryption key id: proves at start-up that the configured key is the
-- one the stored secrets were sealed with.
CREATE TABLE encryption_keys (
    key_id                        TEXT PRIMARY KEY,
    canary                        BYTEA NOT NULL,
    created_at                    TIMESTAMPTZ NOT NULL
);

CREATE TABLE sync_state (
    member_id                     TEXT NOT NULL REFERENCES members (id),
    channel                       TEXT NOT NULL CHECK (channel IN ('email', 'calendar')),
    cursor                        TEXT,
    next_due_at                    TIMESTAMPTZ NOT NULL,
    lease_owner                   TEXT,
    lease_expires_at                    TIMESTAMPTZ,
    consecutive_transient_failures BIGINT NOT NULL DEFAULT 0,
    last_attempt_at                    TIMESTAMPTZ,
    PRIMARY KEY (member_id, channel)
);
CREATE INDEX sync_state_due ON sync_state (next_due_at);

CREATE TABLE import_attempts (
    id                            TEXT PRIMARY KEY,
    member_id                     TEXT NOT NULL REFERENCES members (id),
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    channel                       TEXT NOT NULL CHECK (channel IN ('email', 'calendar')),
    provider                      TEXT NOT NULL,
    started_at                    TIMESTAMPTZ NOT NULL,
    finished_at                    TIMESTAMPTZ NOT NULL,
    outcome                       TEXT NOT NULL CHECK (outcome IN ('success', 'not_authorized', 'grant_invalid', 'access_denied', 'mailbox_unavailable', 'credential_rejected', 'rate_limited', 'provider_error', 'network_error')),
    http_status                   BIGINT,
    provider_error_code           TEXT,
    provider_error_message        TEXT,
    provider_request_id           TEXT,
    items_imported                BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX import_attempts_member_channel ON import_attempts (member_id, channel, finished_at);
CREATE INDEX import_attempts_finished ON import_attempts (finished_at);

-- Imported item metadata; idempotent on (member, provider id). attempt_id is the attempt
-- that last wrote the row (no foreign key: retention may prune that attempt).
CREATE TABLE email_items (
    member_id                     TEXT NOT NULL REFERENCES members (id),
    provider_id                   TEXT NOT NULL,
    thread_id                     TEXT,
    sent_at                    TIMESTAMPTZ,
    sender                        TEXT,
    participants                  TEXT NOT NULL DEFAULT '[]',
    subject                       TEXT,
    attempt_id                    TEXT NOT NULL,
    imported_at                    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (member_id, provider_id)
);

CREATE TABLE calendar_items (
    member_id                     TEXT NOT NULL REFERENCES members (id),
    provider_id                   TEXT NOT NULL,
    starts_at                    TIMESTAMPTZ,
    ends_at                    TIMESTAMPTZ,
    organizer                     TEXT,
    participants                  TEXT NOT NULL DEFAULT '[]',
    subject                       TEXT,
    conference_link               TEXT,
    cancelled                     BOOLEAN NOT NULL DEFAULT FALSE,
    attempt_id                    TEXT NOT NULL,
    imported_at                    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (member_id, provider_id)
);

-- Current status per member and icon. last_attempt_id has no foreign key on purpose:
-- retention prunes attempts, the status stays.
CREATE TABLE member_status (
    member_id                     TEXT NOT NULL REFERENCES members (id),
    icon                          TEXT NOT NULL CHECK (icon IN ('capture', 'email', 'calendar')),
    color                         TEXT NOT NULL CHECK (color IN ('gray', 'green', 'yellow', 'red')),
    reason                        TEXT NOT NULL,
    message                       TEXT NOT NULL,
    resolution                    TEXT NOT NULL,
    since                    TIMESTAMPTZ NOT NULL,
    last_attempt_id               TEXT,
    evaluated_at                    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (member_id, icon)
);

CREATE TABLE status_changes (
    id                            BIGSERIAL PRIMARY KEY,
    member_id                     TEXT NOT NULL REFERENCES members (id),
    icon                          TEXT NOT NULL,
    from_color                    TEXT,
    from_reason                   TEXT,
    to_color                      TEXT NOT NULL,
    to_reason                     TEXT NOT NULL,
    attempt_id                    TEXT,
    changed_at                    TIMESTAMPTZ NOT NULL
);
CREATE INDEX status_changes_member ON status_changes (member_id, changed_at);

CREATE TABLE company_banners (
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    code                          TEXT NOT NULL,
    position                      BIGINT NOT NULL,
    color                         TEXT NOT NULL,
    count                         BIGINT NOT NULL,
    provider                      TEXT NOT NULL,
    message                       TEXT NOT NULL,
    resolution                    TEXT NOT NULL,
    since                    TIMESTAMPTZ NOT NULL,
    evaluated_at                    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, code)
);

CREATE VIEW member_status_view AS
SELECT
    m.company_id            AS company_id,
    m.id                    AS member_id,
    m.email                 AS email,
    m.active                AS active,
    cap.color               AS capture_color,
    cap.reason              AS capture_reason,
    em.color                AS email_color,
    em.reason               AS email_reason,
    cal.color               AS calendar_color,
    cal.reason              AS calendar_reason,
    cap.message             AS capture_message,
    cap.resolution          AS capture_resolution,
    em.last_attempt_id      AS email_last_attempt_id,
    cal.last_attempt_id     AS calendar_last_attempt_id,
    cap.since               AS capture_since,
    cap.evaluated_at        AS evaluated_at
FROM members m
LEFT JOIN member_status cap ON cap.member_id = m.id AND cap.icon = 'capture'
LEFT JOIN member_status em ON em.member_id = m.id AND em.icon = 'email'
LEFT JOIN member_status cal ON cal.member_id = m.id AND cal.icon = 'calendar';

CREATE VIEW company_banner_view AS
SELECT
    b.company_id            AS company_id,
    c.name                  AS company_name,
    b.position              AS position,
    b.code                  AS code,
    b.color                 AS color,
    b.count                 AS count,
    b.provider              AS provider,
    b.message               AS message,
    b.resolution            AS resolution,
    b.since                 AS since,
    b.evaluated_at          AS evaluated_at
FROM company_banners b
JOIN companies c ON c.id = b.company_id;
