//! The providers' published error catalogues, each entry a fault the sim can be told to
//! answer by name (issue 21 §4): `aadsts:<code>` (Microsoft's sign-in and token errors),
//! `graph:<code>` (Graph's mail, calendar and users errors) and `google:<reason>` (the
//! Gmail, Calendar and Directory error reasons).
//!
//! The tables are the sim's, one in each provider's folder (`google/catalogue.rs`,
//! `microsoft/catalogue.rs`; this module resolves a name to its row), written from the
//! providers' references and from bodies people pasted into public issue threads; they say
//! what the provider *sends* (status, `error` class, code, text), never what an answer
//! means to datacap. The connectors' mapping tables are the other half, and the connector
//! tests run every entry here through them over HTTP. docs/sim.md lists the three tables.

pub(crate) use crate::google::catalogue::GOOGLE;
pub(crate) use crate::microsoft::catalogue::{ENTRA, GRAPH};

use crate::fault::FaultKind;

/// The fault a catalogue name (`aadsts:50057`, `graph:ErrorServerBusy`,
/// `google:backendError`) stands for, if the sim knows the entry.
pub(crate) fn fault_named(name: &str) -> Option<FaultKind> {
    let index = |i: usize| u16::try_from(i).ok();
    if let Some(code) = name.strip_prefix("aadsts:") {
        let code: u32 = code.parse().ok()?;
        let i = ENTRA.iter().position(|row| row.code == code)?;
        return index(i).map(FaultKind::Entra);
    }
    if let Some(code) = name.strip_prefix("graph:") {
        let i = GRAPH.iter().position(|row| row.code == code)?;
        return index(i).map(FaultKind::Graph);
    }
    if let Some(reason) = name.strip_prefix("google:") {
        let i = GOOGLE.iter().position(|row| row.reason == reason)?;
        return index(i).map(FaultKind::GoogleReason);
    }
    None
}

/// Every catalogue fault's name, for docs/sim.md's check and the connectors' tests.
pub fn names() -> Vec<String> {
    ENTRA
        .iter()
        .map(|row| format!("aadsts:{}", row.code))
        .chain(GRAPH.iter().map(|row| format!("graph:{}", row.code)))
        .chain(GOOGLE.iter().map(|row| format!("google:{}", row.reason)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique_and_resolves() {
        let names = names();
        let mut seen = std::collections::BTreeSet::new();
        for name in &names {
            assert!(seen.insert(name.clone()), "{name} twice");
            assert!(fault_named(name).is_some(), "{name}");
        }
        assert!(fault_named("aadsts:1").is_none());
        assert!(fault_named("graph:NoSuchCode").is_none());
        assert!(fault_named("google:").is_none());
        assert!(fault_named("aadsts:x").is_none());
    }

    #[test]
    fn docs_sim_md_lists_every_entry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sim.md");
        let docs = std::fs::read_to_string(path).expect("docs/sim.md");
        let listed: std::collections::BTreeSet<&str> = docs
            .split('`')
            .filter(|word| {
                ["aadsts:", "graph:", "google:"]
                    .iter()
                    .any(|p| word.starts_with(p))
            })
            .filter(|word| !word.ends_with('>') && !word.contains(' '))
            .collect();
        let names = names();
        let known: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let missing: Vec<_> = known.difference(&listed).collect();
        let stale: Vec<_> = listed
            .difference(&known)
            .filter(|word| fault_named(word).is_none())
            .collect();
        assert!(missing.is_empty(), "docs/sim.md lacks {missing:?}");
        assert!(
            stale.is_empty(),
            "docs/sim.md lists unknown entries {stale:?}"
        );
    }

    #[test]
    fn names_parse_as_faults_and_unknown_entries_are_refused() {
        let parse = |name: &str| serde_json::from_value::<FaultKind>(serde_json::json!(name));
        assert!(matches!(parse("aadsts:50057"), Ok(FaultKind::Entra(_))));
        assert!(matches!(
            parse("graph:ErrorServerBusy"),
            Ok(FaultKind::Graph(_))
        ));
        // 5xx reasons are decided by status, not listed
        assert!(parse("google:backendError").is_err());
        assert!(matches!(
            parse("google:domainPolicy"),
            Ok(FaultKind::GoogleReason(_))
        ));
        assert_eq!(parse("rate_limited").ok(), Some(FaultKind::RateLimited));
        let unknown = parse("aadsts:1").expect_err("not in the catalogue");
        assert!(
            unknown.to_string().contains("`aadsts:1` is no entry"),
            "{unknown}"
        );
        let bogus = parse("bogus").expect_err("no such fault");
        assert!(
            bogus.to_string().contains("unknown variant `bogus`"),
            "{bogus}"
        );
    }

    #[test]
    fn statuses_are_errors() {
        assert!(ENTRA.iter().all(|row| row.status >= 400));
        assert!(GRAPH.iter().all(|row| row.status >= 400));
        assert!(GOOGLE.iter().all(|row| row.status >= 400));
    }
}
