-- Revoked connect links (issue 17). Keep in step with
-- ../sqlite/20261203000005_invite_revocations.sql.
-- A member's personal connect links issued before `not_before` are void: `datacap
-- revoke-invites` moves it to now, and so does the member connecting (a link connects
-- once). A member without a row has every unexpired link valid.
CREATE TABLE invite_revocations (
    member_id                     TEXT PRIMARY KEY REFERENCES members (id),
    not_before                    TIMESTAMPTZ NOT NULL
);
