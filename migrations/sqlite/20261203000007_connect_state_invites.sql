-- The connect link a pending sign-in started from (issue 17): its issue and expiry times
-- (Unix seconds, as signed in the link), so that the callback refuses a sign-in whose link
-- was revoked (`datacap revoke-invites`, or the member connecting meanwhile) or expired
-- between start and callback. NULL for sign-ins started before this migration (any
-- revocation then voids them). Keep in step with
-- ../postgres/20261203000007_connect_state_invites.sql.
ALTER TABLE connect_states ADD COLUMN invite_issued_at BIGINT;
ALTER TABLE connect_states ADD COLUMN invite_expires_at BIGINT;
