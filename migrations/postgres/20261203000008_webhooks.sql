-- Webhooks (issue 19). Keep in step with ../sqlite/20261203000006_webhooks.sql: same
-- tables, columns and meanings; only the column types differ.

-- A company's webhook endpoints, as the tenants file declares them (`datacap apply`).
-- secret_ref is a JSON object naming where the `whsec_` secret is read from
-- ({"secret_file": "/path"} or {"secret_env": "VAR"}); never the secret itself. An
-- endpoint the file no longer lists is deactivated (active = FALSE), its deliveries kept.
CREATE TABLE webhook_endpoints (
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    id                            TEXT NOT NULL,
    url                           TEXT NOT NULL,
    secret_ref                    TEXT NOT NULL,
    -- JSON list of the event types it receives.
    events                        TEXT NOT NULL,
    active                        BOOLEAN NOT NULL DEFAULT TRUE,
    created_at                    TIMESTAMPTZ NOT NULL,
    updated_at                    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, id)
);

-- The outbox: one row per event, written in the transaction of the status or banner
-- change that caused it. event_id is the `webhook-id` receivers deduplicate on; body is
-- the exact JSON that is signed and sent. seq orders a company's events.
CREATE TABLE webhook_events (
    seq                           BIGSERIAL PRIMARY KEY,
    event_id                      TEXT NOT NULL UNIQUE,
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    type                          TEXT NOT NULL,
    body                          TEXT NOT NULL,
    created_at                    TIMESTAMPTZ NOT NULL
);

-- One row per (event, endpoint subscribed to it when the event was written). An
-- endpoint's deliveries go out one at a time in seq order: only its oldest pending one
-- is ever claimed. state: pending (not yet delivered), delivered, dead (gave up after
-- webhooks.give_up_after; `datacap webhooks redeliver` makes it pending again).
CREATE TABLE webhook_deliveries (
    id                            BIGSERIAL PRIMARY KEY,
    event_seq                     BIGINT NOT NULL REFERENCES webhook_events (seq),
    company_id                    TEXT NOT NULL,
    endpoint_id                   TEXT NOT NULL,
    state                         TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    tries                         BIGINT NOT NULL DEFAULT 0,
    next_try_at                   TIMESTAMPTZ NOT NULL,
    -- When the current run of tries began (the event's time, or its redelivery's): the
    -- give-up clock starts here.
    pending_since                 TIMESTAMPTZ NOT NULL,
    lease_owner                   TEXT,
    lease_expires_at              TIMESTAMPTZ,
    last_try_at                   TIMESTAMPTZ,
    last_http_status              BIGINT,
    last_error                    TEXT,
    delivered_at                  TIMESTAMPTZ,
    dead_at                       TIMESTAMPTZ,
    FOREIGN KEY (company_id, endpoint_id) REFERENCES webhook_endpoints (company_id, id),
    UNIQUE (event_seq, company_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (company_id, endpoint_id, state, event_seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_try_at);

-- Every try of a delivery: when, the HTTP status (none when no answer came) and the
-- error (the transport error or the answer's status line; never a secret).
CREATE TABLE webhook_tries (
    id                            BIGSERIAL PRIMARY KEY,
    delivery_id                   BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    tried_at                      TIMESTAMPTZ NOT NULL,
    http_status                   BIGINT,
    error                         TEXT,
    duration_ms                   BIGINT NOT NULL
);
CREATE INDEX webhook_tries_delivery ON webhook_tries (delivery_id, tried_at);

-- The last successful import of each (member, channel) and how many items it brought
-- (issue 19 §6): kept here, beside the cursor, so retention pruning old attempts never
-- loses it. Written by the attempt that succeeded, in its transaction.
ALTER TABLE sync_state ADD COLUMN last_success_at TIMESTAMPTZ;
ALTER TABLE sync_state ADD COLUMN last_success_items BIGINT;

-- member_status_view gains each channel's last successful import (appended columns, so
-- admins' queries by name keep working).
DROP VIEW member_status_view;
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
    cap.evaluated_at        AS evaluated_at,
    ems.last_success_at     AS email_last_success_at,
    ems.last_success_items  AS email_last_success_items,
    cals.last_success_at    AS calendar_last_success_at,
    cals.last_success_items AS calendar_last_success_items
FROM members m
LEFT JOIN member_status cap ON cap.member_id = m.id AND cap.icon = 'capture'
LEFT JOIN member_status em ON em.member_id = m.id AND em.icon = 'email'
LEFT JOIN member_status cal ON cal.member_id = m.id AND cal.icon = 'calendar'
LEFT JOIN sync_state ems ON ems.member_id = m.id AND ems.channel = 'email'
LEFT JOIN sync_state cals ON cals.member_id = m.id AND cals.channel = 'calendar';
