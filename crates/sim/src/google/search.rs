//! The query languages Google's list endpoints filter by: Gmail's `q` (and its system
//! labels) and the Directory's `query`.
//!
//! A fake that ignores a filter lets a connector that sends the wrong one pass every test
//! (issue 16), so each list endpoint parses what the real one parses and either filters by
//! it or refuses it the way the provider does. Only the subset of each language that a
//! mail and calendar importer plausibly sends is understood; docs/sim.md lists it.

// ---- Gmail `q` --------------------------------------------------------------------------

/// What a Gmail search term is matched against.
pub(crate) struct MailView<'a> {
    pub received: i64,
    pub labels: &'a [&'a str],
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    /// `after:` / `newer:` / `newer_than:`: received at or after (seconds).
    After(i64),
    /// `before:` / `older:` / `older_than:`: received before (seconds).
    Before(i64),
    Label(String),
    From(String),
    To(String),
    Subject(String),
    Text(String),
    Any,
    Not(Box<Term>),
    Or(Box<Term>, Box<Term>),
}

/// A parsed Gmail `q`: every term must hold (Gmail's implicit AND).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GmailQuery(Vec<Term>);

/// Gmail's time operators: `after:1388552400` (epoch seconds) or `after:2014/01/01`
/// (a date; Gmail reads it at midnight Pacific time, the sim at midnight UTC).
fn gmail_time(value: &str) -> Option<i64> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok();
    }
    let parts: Vec<&str> = value.split(['/', '-']).collect();
    let [year, month, day] = parts.as_slice() else {
        return None;
    };
    let month = time::Month::try_from(month.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

/// `newer_than:2d` / `older_than:1m` / `…:1y` relative to `now`.
fn gmail_relative(value: &str, now: i64) -> Option<i64> {
    let unit = value.chars().last()?;
    let count: i64 = value.get(..value.len() - 1)?.parse().ok()?;
    let days = match unit.to_ascii_lowercase() {
        'd' => count,
        'm' => count.checked_mul(30)?,
        'y' => count.checked_mul(365)?,
        _ => return None,
    };
    now.checked_sub(days.checked_mul(86_400)?)
}

fn unquote(value: &str) -> String {
    value.trim_matches('"').to_ascii_lowercase()
}

/// One term; unknown operators are searched as text, as Gmail does.
fn gmail_term(word: &str, now: i64) -> Term {
    if let Some(rest) = word.strip_prefix('-').filter(|r| !r.is_empty()) {
        return Term::Not(Box::new(gmail_term(rest, now)));
    }
    let Some((operator, value)) = word.split_once(':') else {
        return Term::Text(unquote(word));
    };
    let lower = operator.to_ascii_lowercase();
    let timed = match lower.as_str() {
        "after" | "newer" => gmail_time(value).map(Term::After),
        "before" | "older" => gmail_time(value).map(Term::Before),
        "newer_than" => gmail_relative(value, now).map(Term::After),
        "older_than" => gmail_relative(value, now).map(Term::Before),
        _ => None,
    };
    if let Some(term) = timed {
        return term;
    }
    match lower.as_str() {
        "in" if value.eq_ignore_ascii_case("anywhere") => Term::Any,
        "in" | "label" | "is" => match value.to_ascii_lowercase().as_str() {
            "read" => Term::Not(Box::new(Term::Label("UNREAD".to_owned()))),
            "primary" => Term::Label("CATEGORY_PERSONAL".to_owned()),
            other => Term::Label(other.replace('-', "_").to_ascii_uppercase()),
        },
        "category" => Term::Label(format!(
            "CATEGORY_{}",
            match value.to_ascii_lowercase().as_str() {
                "primary" => "PERSONAL".to_owned(),
                other => other.to_ascii_uppercase(),
            }
        )),
        "from" => Term::From(unquote(value)),
        "to" => Term::To(unquote(value)),
        "subject" => Term::Subject(unquote(value)),
        _ => Term::Text(unquote(word)),
    }
}

/// Splits on spaces, keeping `"quoted phrases"` (and `op:"quoted"`) whole.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl GmailQuery {
    /// Parses `q` (Gmail never refuses a query: what it does not understand is text).
    pub(crate) fn parse(q: &str, now: i64) -> GmailQuery {
        let mut terms: Vec<Term> = Vec::new();
        let mut or_next = false;
        for word in words(q) {
            if word == "OR" || word == "|" {
                or_next = !terms.is_empty();
                continue;
            }
            let term = gmail_term(&word, now);
            match (or_next, terms.pop()) {
                (true, Some(left)) => terms.push(Term::Or(Box::new(left), Box::new(term))),
                (_, previous) => {
                    terms.extend(previous);
                    terms.push(term);
                }
            }
            or_next = false;
        }
        GmailQuery(terms)
    }

    /// Whether a message matches every term.
    pub(crate) fn matches(&self, mail: &MailView<'_>) -> bool {
        self.0.iter().all(|t| term_matches(t, mail))
    }
}

fn term_matches(term: &Term, mail: &MailView<'_>) -> bool {
    let contains = |haystack: &str, needle: &str| haystack.to_ascii_lowercase().contains(needle);
    match term {
        Term::After(t) => mail.received >= *t,
        Term::Before(t) => mail.received < *t,
        Term::Label(label) => mail.labels.iter().any(|l| l.eq_ignore_ascii_case(label)),
        Term::From(who) => contains(mail.from, who),
        Term::To(who) => contains(mail.to, who),
        Term::Subject(words) => contains(mail.subject, words),
        Term::Text(text) => {
            contains(mail.subject, text) || contains(mail.from, text) || contains(mail.to, text)
        }
        Term::Any => true,
        Term::Not(inner) => !term_matches(inner, mail),
        Term::Or(left, right) => term_matches(left, mail) || term_matches(right, mail),
    }
}

/// Gmail's system labels: a `labelIds` value outside these (and the mailbox's own labels,
/// of which sim mailboxes have none) answers 400 "Invalid label: …".
pub(crate) const GMAIL_SYSTEM_LABELS: &[&str] = &[
    "INBOX",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "SENT",
    "DRAFT",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
];

// ---- Directory `query` ------------------------------------------------------------------

/// What a Directory search clause is matched against.
pub(crate) struct PersonView<'a> {
    pub email: &'a str,
    pub given_name: &'a str,
    pub family_name: &'a str,
    pub admin: bool,
    pub suspended: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Clause {
    Email(Match),
    GivenName(Match),
    FamilyName(Match),
    Name(Match),
    IsAdmin(bool),
    IsSuspended(bool),
    OrgUnitPath(String),
    /// A documented field the sim keeps no data for (phone, manager, …): matches nobody.
    Unbacked,
    /// A bare word: searched in the names and the address.
    Text(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Match {
    Exact(String),
    Prefix(String),
}

impl Match {
    fn holds(&self, value: &str) -> bool {
        let value = value.to_ascii_lowercase();
        match self {
            Match::Exact(v) => value == *v,
            Match::Prefix(p) => value.starts_with(p.as_str()),
        }
    }
}

/// A parsed Directory `query`: every clause must hold.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DirectoryQuery(Vec<Clause>);

/// Fields of the Directory's user search that the sim has no data for
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/search-users>).
const UNBACKED_FIELDS: &[&str] = &[
    "externalid",
    "manager",
    "directmanager",
    "managerid",
    "directmanagerid",
    "address",
    "addresspobox",
    "addressextended",
    "addressstreet",
    "addresslocality",
    "addressregion",
    "addresspostalcode",
    "addresscountry",
    "orgname",
    "orgtitle",
    "orgdepartment",
    "orgdescription",
    "orgcostcenter",
    "phone",
    "isdelegatedadmin",
    "isenrolledin2sv",
    "isenforcedin2sv",
];

fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

impl DirectoryQuery {
    /// Parses `query`; `Err` is a clause the Directory would refuse (answered 400
    /// "Invalid Input: query").
    pub(crate) fn parse(query: &str) -> Result<DirectoryQuery, ()> {
        let mut clauses = Vec::new();
        for word in words(&query.replace('\'', "\"")) {
            let Some(at) = word.find([':', '=']) else {
                clauses.push(Clause::Text(unquote(&word)));
                continue;
            };
            let (field, rest) = word.split_at(at);
            let value = unquote(rest.get(1..).unwrap_or_default());
            let matcher = || match value.strip_suffix('*') {
                Some(prefix) => Match::Prefix(prefix.to_owned()),
                None => Match::Exact(value.clone()),
            };
            let field = field.to_ascii_lowercase();
            let clause = match field.as_str() {
                "email" => Clause::Email(matcher()),
                "givenname" => Clause::GivenName(matcher()),
                "familyname" => Clause::FamilyName(matcher()),
                "name" => Clause::Name(matcher()),
                "isadmin" => Clause::IsAdmin(boolean(&value).ok_or(())?),
                "issuspended" => Clause::IsSuspended(boolean(&value).ok_or(())?),
                "orgunitpath" => Clause::OrgUnitPath(value.clone()),
                f if UNBACKED_FIELDS.contains(&f) || f.contains('.') => Clause::Unbacked,
                _ => return Err(()),
            };
            clauses.push(clause);
        }
        Ok(DirectoryQuery(clauses))
    }

    /// Whether a user matches every clause.
    pub(crate) fn matches(&self, person: &PersonView<'_>) -> bool {
        self.0.iter().all(|clause| match clause {
            Clause::Email(m) => m.holds(person.email),
            Clause::GivenName(m) => m.holds(person.given_name),
            Clause::FamilyName(m) => m.holds(person.family_name),
            Clause::Name(m) => m.holds(&format!("{} {}", person.given_name, person.family_name)),
            Clause::IsAdmin(b) => person.admin == *b,
            Clause::IsSuspended(b) => person.suspended == *b,
            Clause::OrgUnitPath(path) => path == "/",
            Clause::Unbacked => false,
            Clause::Text(text) => [person.email, person.given_name, person.family_name]
                .iter()
                .any(|v| v.to_ascii_lowercase().contains(text.as_str())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn mail(received: i64) -> MailView<'static> {
        MailView {
            received,
            labels: &["INBOX", "UNREAD"],
            from: "Ada Lovelace <ada@analytical.example>",
            to: "grace@acme.example",
            subject: "Invoice #3",
        }
    }

    fn check_gmail(q: &str, received: i64, expected: bool) {
        assert_eq!(
            GmailQuery::parse(q, NOW).matches(&mail(received)),
            expected,
            "q={q:?} received={received}"
        );
    }

    #[test]
    fn gmail_queries() {
        check_gmail("", NOW, true);
        check_gmail(&format!("after:{}", NOW - 10), NOW, true);
        check_gmail(&format!("after:{}", NOW + 10), NOW, false);
        check_gmail(&format!("before:{}", NOW + 10), NOW, true);
        check_gmail("after:2025/12/31", NOW, true);
        check_gmail("after:2026/01/02", NOW, false);
        check_gmail("newer_than:2d", NOW - 86_400, true);
        check_gmail("older_than:2d", NOW - 86_400, false);
        check_gmail("in:inbox", NOW, true);
        check_gmail("in:sent", NOW, false);
        check_gmail("label:unread is:unread", NOW, true);
        check_gmail("is:read", NOW, false);
        check_gmail("-in:sent", NOW, true);
        check_gmail("in:anywhere", NOW, true);
        check_gmail("from:ada@analytical.example", NOW, true);
        check_gmail("from:grace", NOW, false);
        check_gmail("to:grace@acme.example", NOW, true);
        check_gmail("subject:invoice", NOW, true);
        check_gmail("subject:\"Invoice #3\"", NOW, true);
        check_gmail("lunch", NOW, false);
        check_gmail("lunch OR invoice", NOW, true);
        check_gmail("in:sent OR in:inbox", NOW, true);
        check_gmail("has:attachment", NOW, false);
    }

    fn check_directory(query: &str, expected: Option<bool>) {
        let person = PersonView {
            email: "ada@acme.example",
            given_name: "Ada",
            family_name: "Lovelace",
            admin: false,
            suspended: true,
        };
        let got = DirectoryQuery::parse(query)
            .ok()
            .map(|q| q.matches(&person));
        assert_eq!(got, expected, "query={query:?}");
    }

    #[test]
    fn directory_queries() {
        check_directory("", Some(true));
        check_directory("email:ada@acme.example", Some(true));
        check_directory("email=ADA@acme.example", Some(true));
        check_directory("email:grace@acme.example", Some(false));
        check_directory("email:ad*", Some(true));
        check_directory("isSuspended=false", Some(false));
        check_directory("isSuspended=true isAdmin=false", Some(true));
        check_directory("givenName:'Ada'", Some(true));
        check_directory("name:'Ada Lovelace'", Some(true));
        check_directory("ada", Some(true));
        check_directory("orgUnitPath=/", Some(true));
        check_directory("phone:555", Some(false));
        check_directory("isSuspended=maybe", None);
        check_directory("colour:blue", None);
    }
}
