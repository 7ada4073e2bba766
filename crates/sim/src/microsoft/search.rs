//! The query languages Graph filters by: message delta's `$filter` / `$orderby` /
//! `changeType`, and `/users`' `$filter`.
//!
//! A fake that ignores a filter lets a connector that sends the wrong one pass every test
//! (issue 16), so each list endpoint parses what the real one parses and either filters by
//! it or refuses it the way the provider does; docs/sim.md lists the subset understood.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

// ---- Graph message delta --------------------------------------------------------------

/// The only `$filter` message delta takes: `receivedDateTime ge|gt {value}`
/// (learn.microsoft.com/graph/delta-query-messages). `Some((seconds, strict))`.
pub(crate) fn graph_received_filter(filter: &str) -> Option<(i64, bool)> {
    let parts: Vec<&str> = filter.split_whitespace().collect();
    let [property, operator, value] = parts.as_slice() else {
        return None;
    };
    if !property.eq_ignore_ascii_case("receivedDateTime") {
        return None;
    }
    let strict = match operator.to_ascii_lowercase().as_str() {
        "ge" => false,
        "gt" => true,
        _ => return None,
    };
    let value = value.trim_matches('\'');
    let at = OffsetDateTime::parse(value, &Rfc3339)
        .ok()
        .or_else(|| {
            time::Date::parse(value, format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|d| d.midnight().assume_utc())
        })?
        .unix_timestamp();
    Some((at, strict))
}

/// The only `$orderby` message delta takes: `receivedDateTime desc`.
pub(crate) fn graph_orderby_ok(orderby: &str) -> bool {
    let parts: Vec<&str> = orderby.split_whitespace().collect();
    matches!(parts.as_slice(), [p, d] if p.eq_ignore_ascii_case("receivedDateTime") && d.eq_ignore_ascii_case("desc"))
}

/// Message delta's `changeType` (created, updated, deleted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Created,
    Updated,
    Deleted,
}

impl ChangeType {
    pub(crate) fn parse(value: &str) -> Option<ChangeType> {
        match value.to_ascii_lowercase().as_str() {
            "created" => Some(ChangeType::Created),
            "updated" => Some(ChangeType::Updated),
            "deleted" => Some(ChangeType::Deleted),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ChangeType::Created => "created",
            ChangeType::Updated => "updated",
            ChangeType::Deleted => "deleted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    #[test]
    fn graph_filters() {
        assert_eq!(
            graph_received_filter("receivedDateTime ge 2026-01-01T00:00:00Z"),
            Some((NOW, false))
        );
        assert_eq!(
            graph_received_filter("ReceivedDateTime gt 2026-01-01"),
            Some((NOW, true))
        );
        assert_eq!(
            graph_received_filter("receivedDateTime lt 2026-01-01"),
            None
        );
        assert_eq!(graph_received_filter("subject eq 'x'"), None);
        assert!(graph_orderby_ok("receivedDateTime desc"));
        assert!(!graph_orderby_ok("receivedDateTime asc"));
        assert!(!graph_orderby_ok("subject"));
        assert_eq!(ChangeType::parse("Created"), Some(ChangeType::Created));
        assert_eq!(ChangeType::parse("moved"), None);
    }
}

// ---- Graph `/users` `$filter` -----------------------------------------------------------

/// What a `/users` filter clause is matched against.
pub(crate) struct DirectoryUserView<'a> {
    pub id: &'a str,
    pub user_principal_name: &'a str,
    pub mail: Option<&'a str>,
    pub display_name: &'a str,
    pub given_name: &'a str,
    pub surname: &'a str,
    pub account_enabled: bool,
    pub user_type: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
enum UserClause {
    Eq(String, FilterValue, bool),
    StartsWith(String, String),
    EndsWith(String, String),
}

#[derive(Clone, Debug, PartialEq)]
enum FilterValue {
    Text(String),
    Bool(bool),
}

/// A parsed `/users` `$filter`: clauses joined by `and` (binding tighter) and `or`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct UserFilter(Vec<Vec<UserClause>>);

const USER_TEXT_PROPERTIES: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "surname",
    "userType",
];

fn filter_value(text: &str) -> Option<FilterValue> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Some(FilterValue::Text(inner.replace("''", "'")));
    }
    text.to_ascii_lowercase()
        .parse()
        .ok()
        .map(FilterValue::Bool)
}

/// `property` as Graph spells it, if it is one the sim keeps.
fn user_property(name: &str) -> Option<String> {
    USER_TEXT_PROPERTIES
        .iter()
        .chain(std::iter::once(&"accountEnabled"))
        .find(|p| p.eq_ignore_ascii_case(name))
        .map(|p| (*p).to_owned())
}

fn user_clause(text: &str, advanced: bool) -> Result<UserClause, String> {
    let text = text.trim();
    for (function, ends) in [("startswith(", false), ("endswith(", true)] {
        if text.len() > function.len()
            && text[..function.len()].eq_ignore_ascii_case(function)
            && text.ends_with(')')
        {
            let inner = &text[function.len()..text.len() - 1];
            let (property, value) = inner.split_once(',').ok_or_else(|| inner.to_owned())?;
            let name = property.trim();
            let property = user_property(name)
                .filter(|p| p != "accountEnabled")
                .ok_or_else(|| name.to_owned())?;
            let Some(FilterValue::Text(value)) = filter_value(value.trim()) else {
                return Err(property);
            };
            // endsWith is an advanced query (ConsistencyLevel: eventual + $count=true).
            if ends && !advanced {
                return Err(property);
            }
            return Ok(if ends {
                UserClause::EndsWith(property, value)
            } else {
                UserClause::StartsWith(property, value)
            });
        }
    }
    let parts: Vec<&str> = text.splitn(3, ' ').collect();
    let [name, operator, value] = parts.as_slice() else {
        return Err(text.to_owned());
    };
    let property = user_property(name).ok_or_else(|| (*name).to_owned())?;
    let value = filter_value(value.trim()).ok_or_else(|| property.clone())?;
    let negated = match operator.to_ascii_lowercase().as_str() {
        "eq" => false,
        // `ne` needs the advanced query headers (microsoft-graph-docs#13583).
        "ne" if advanced => true,
        _ => return Err(property),
    };
    let typed = matches!(
        (&value, property.as_str()),
        (FilterValue::Bool(_), "accountEnabled") | (FilterValue::Text(_), _)
    ) && !(property == "accountEnabled" && matches!(value, FilterValue::Text(_)));
    if !typed {
        return Err(property);
    }
    Ok(UserClause::Eq(property, value, negated))
}

impl UserFilter {
    /// Parses `$filter`; `advanced` is whether the request has `ConsistencyLevel:
    /// eventual` and `$count=true`. `Err` names the property Graph's 400 names.
    pub(crate) fn parse(filter: &str, advanced: bool) -> Result<UserFilter, String> {
        if filter.contains(['(', ')'])
            && !filter.to_ascii_lowercase().contains("startswith(")
            && !filter.to_ascii_lowercase().contains("endswith(")
        {
            return Err(filter.to_owned());
        }
        let mut any = Vec::new();
        for disjunct in split_words(filter, " or ") {
            let mut all = Vec::new();
            for clause in split_words(&disjunct, " and ") {
                all.push(user_clause(&clause, advanced)?);
            }
            any.push(all);
        }
        Ok(UserFilter(any))
    }

    pub(crate) fn matches(&self, user: &DirectoryUserView<'_>) -> bool {
        let text = |property: &str| -> &str {
            match property {
                "id" => user.id,
                "userPrincipalName" => user.user_principal_name,
                "mail" => user.mail.unwrap_or(""),
                "displayName" => user.display_name,
                "givenName" => user.given_name,
                "surname" => user.surname,
                "userType" => user.user_type,
                _ => "",
            }
        };
        self.0.iter().any(|all| {
            all.iter().all(|clause| match clause {
                UserClause::Eq(property, FilterValue::Bool(b), negated) => {
                    (property == "accountEnabled" && user.account_enabled == *b) != *negated
                }
                UserClause::Eq(property, FilterValue::Text(v), negated) => {
                    text(property).eq_ignore_ascii_case(v) != *negated
                }
                UserClause::StartsWith(property, v) => text(property)
                    .to_ascii_lowercase()
                    .starts_with(&v.to_ascii_lowercase()),
                UserClause::EndsWith(property, v) => text(property)
                    .to_ascii_lowercase()
                    .ends_with(&v.to_ascii_lowercase()),
            })
        })
    }
}

/// Splits on a lower-case keyword surrounded by spaces, outside quotes, any case.
fn split_words(text: &str, keyword: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let lower = text.to_ascii_lowercase();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        if c == '\'' {
            quoted = !quoted;
        }
        if !quoted && lower[i..].starts_with(keyword) {
            out.push(std::mem::take(&mut current));
            i += keyword.len();
            continue;
        }
        current.push(c);
        i += c.len_utf8();
    }
    out.push(current);
    out
}

#[cfg(test)]
mod user_filter_tests {
    use super::*;

    fn check(filter: &str, advanced: bool, expected: Result<bool, &str>) {
        let user = DirectoryUserView {
            id: "1",
            user_principal_name: "alan@contoso.example",
            mail: Some("alan@contoso.example"),
            display_name: "Alan Turing",
            given_name: "Alan",
            surname: "Turing",
            account_enabled: true,
            user_type: "Member",
        };
        let got = UserFilter::parse(filter, advanced).map(|f| f.matches(&user));
        assert_eq!(got, expected.map_err(str::to_owned), "{filter}");
    }

    #[test]
    fn user_filters() {
        check("accountEnabled eq true", false, Ok(true));
        check("accountEnabled eq false", false, Ok(false));
        check("userType eq 'Member'", false, Ok(true));
        check(
            "userType eq 'Guest' or mail eq 'ALAN@contoso.example'",
            false,
            Ok(true),
        );
        check(
            "accountEnabled eq true and userType eq 'Guest'",
            false,
            Ok(false),
        );
        check("startswith(displayName,'al')", false, Ok(true));
        check("startsWith(mail, 'bob')", false, Ok(false));
        check("userType ne 'Guest'", false, Err("userType"));
        check("userType ne 'Guest'", true, Ok(true));
        check("endswith(mail,'@contoso.example')", false, Err("mail"));
        check("endswith(mail,'@contoso.example')", true, Ok(true));
        check(
            "onPremisesSamAccountName eq 'x'",
            false,
            Err("onPremisesSamAccountName"),
        );
        check("accountEnabled eq 'yes'", false, Err("accountEnabled"));
        check("displayName eq 'O''Brien'", false, Ok(false));
    }
}
