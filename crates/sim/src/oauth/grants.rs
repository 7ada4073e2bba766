//! The access and refresh tokens the sim has issued, and the bound on how many it keeps.
//!
//! The sim never trusts its own tokens by signature: it looks them up in the world's grant
//! tables.

use time::OffsetDateTime;

use crate::state::World;

/// An issued access token.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub tenant: usize,
    pub user: Option<usize>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub expires_at: i64,
    pub app_only: bool,
}

/// An issued refresh token.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub tenant: usize,
    pub user: usize,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub rotated: bool,
}

impl World {
    /// Expires every access token issued for a tenant (or one user of it).
    pub(crate) fn expire_tokens(&mut self, tenant: usize, user: Option<usize>) -> usize {
        let mut expired = 0;
        for grant in self.tokens.values_mut() {
            if grant.tenant == tenant && (user.is_none() || grant.user == user) {
                grant.expires_at = 0;
                expired += 1;
            }
        }
        expired
    }

    /// Records an access token.
    pub(crate) fn issue(&mut self, token: String, grant: Grant) {
        // Bound the table: a long benchmark or demo must not grow memory without limit.
        // The bound grows with the world (a token per scope per user, as a client that
        // caches its tokens holds), so such a client never sees a valid token forgotten:
        // a real provider honours a token until it expires, and forgetting them all at
        // once would turn a large benchmark's cached tokens into a storm of 401s.
        let bound = self.token_bound();
        if self.tokens.len() >= bound {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            self.tokens.retain(|_, g| g.expires_at > now);
            if self.tokens.len() >= bound {
                self.tokens.clear();
            }
        }
        self.tokens.insert(token, grant);
    }

    /// Access tokens held at most: 100,000, or four per user in larger worlds.
    pub(crate) fn token_bound(&self) -> usize {
        let users: usize = self.tenants.iter().map(|tenant| tenant.users.len()).sum();
        users.saturating_mul(TOKENS_PER_USER).max(MIN_TOKEN_BOUND)
    }
}

/// The token table's bound in small worlds.
const MIN_TOKEN_BOUND: usize = 100_000;
/// Tokens a user may hold at once: Gmail, Calendar, Graph and one spare.
const TOKENS_PER_USER: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use std::path::Path;

    /// A world of `users` Google users with no mail (the token table's bound scales).
    fn world_of(users: usize) -> World {
        let mut text = String::from(
            "[[tenant]]\nname = \"big\"\nprovider = \"google\"\ndomain = \"big.example\"\n",
        );
        for index in 0..users {
            text.push_str(&format!(
                "[[tenant.user]]\nemail = \"u{index}@big.example\"\nmessages = 0\nevents = 0\n"
            ));
        }
        let scenario = Scenario::from_toml(&text, "big", Path::new(".")).expect("scenario");
        World::new(scenario)
    }

    fn grant(expires_at: i64) -> Grant {
        Grant {
            tenant: 0,
            user: Some(0),
            scopes: Vec::new(),
            roles: Vec::new(),
            expires_at,
            app_only: false,
        }
    }

    #[test]
    fn a_large_world_keeps_every_valid_token_a_caching_client_holds() {
        // 40,000 users holding a Gmail and a Calendar token each, plus a first batch
        // issued earlier: 120,000 valid tokens, above the small-world bound of 100,000.
        // The old table forgot them all at 100,000 (a storm of 401s at 1M member-channels).
        let mut world = world_of(40_000);
        assert_eq!(world.token_bound(), 160_000);
        let valid = OffsetDateTime::now_utc().unix_timestamp() + 3_600;
        for index in 0..120_000 {
            world.issue(format!("t{index}"), grant(valid));
        }
        assert_eq!(world.tokens.len(), 120_000);
        assert!(world.tokens.contains_key("t0"));
        // Small worlds keep the old bound, and expired tokens go first when it is reached.
        let mut small = world_of(1);
        assert_eq!(small.token_bound(), 100_000);
        for index in 0..100_000 {
            small.issue(format!("old{index}"), grant(0));
        }
        small.issue("new".to_owned(), grant(valid));
        assert_eq!(small.tokens.len(), 1);
    }
}
