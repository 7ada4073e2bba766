-- The connect flow's pending sign-ins. Keep in step with ../postgres/20261129000002_connect.sql.
-- One row per `state` handed to a provider's authorize URL: single use (the callback
-- deletes it), expiring, bound to one member and one provider. The state itself is never
-- stored, only its SHA-256 (hex), so a database reader cannot finish someone's sign-in;
-- the PKCE verifier is sealed like a refresh token (XChaCha20-Poly1305, company and member
-- ids as associated data).
CREATE TABLE connect_states (
    state_hash                    TEXT PRIMARY KEY,
    provider                      TEXT NOT NULL CHECK (provider IN ('google_workspace', 'microsoft_365')),
    company_id                    TEXT NOT NULL REFERENCES companies (id),
    member_id                     TEXT NOT NULL REFERENCES members (id),
    verifier_ciphertext           BLOB NOT NULL,
    key_id                        TEXT NOT NULL,
    created_at                    TEXT NOT NULL,
    expires_at                    TEXT NOT NULL
);
CREATE INDEX connect_states_expires ON connect_states (expires_at);
