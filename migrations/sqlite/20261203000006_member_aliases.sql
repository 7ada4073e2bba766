-- A member's known aliases (issue 17): other addresses of the same mailbox, declared in
-- the tenants file (`aliases = [...]`). The connect flow accepts an account that signs in
-- under one of them as the member's own. Keep in step with
-- ../postgres/20261203000006_member_aliases.sql.
-- The addresses, separated by single spaces (an address holds no white space); '' for
-- none.
ALTER TABLE members ADD COLUMN aliases TEXT NOT NULL DEFAULT '';
