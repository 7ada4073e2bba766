//! The page's own tests.

use super::*;
use base64::Engine;
use sha2::Digest;

#[test]
fn the_policy_allows_exactly_the_page_script() {
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(PAGE_SCRIPT.as_bytes()));
    let source = format!("script-src 'sha256-{hash}';");
    assert!(
        crate::CONTENT_SECURITY_POLICY.contains(&source),
        "assets/page.js changed: put {source} in guard.rs's CONTENT_SECURITY_POLICY"
    );
    let page = MessagePage {
        title: "t",
        text: "x",
        detail: None,
        class: "",
    }
    .render()
    .unwrap();
    assert!(
        page.contains(&format!("<script>{PAGE_SCRIPT}</script>")),
        "the script is inlined as is (the hash covers exactly it)"
    );
}

#[test]
fn a_banner_names_three_members_then_counts_the_rest() {
    assert_eq!(named(&["ada"], 1), "ada");
    assert_eq!(named(&["ada", "bob"], 2), "ada and bob");
    assert_eq!(named(&["ada", "bob", "cy"], 3), "ada, bob and cy");
    assert_eq!(
        named(&["ada", "bob", "cy", "dan"], 4),
        "ada, bob, cy and 1 more"
    );
    assert_eq!(named(&["ada", "bob"], 4), "ada, bob and 2 more");
    assert_eq!(named(&[], 4), "");
}

#[test]
fn a_bad_filter_reads_as_a_sentence() {
    let query = |name: &str, value: &str| HashMap::from([(name.to_owned(), value.to_owned())]);
    let Err(reason) = Filter::parse(&query("reason", "bogus")) else {
        panic!("bogus is no reason");
    };
    assert_eq!(
        reason,
        "There is no reason \"bogus\". Choose one in the Reason list, or any reason."
    );
    assert!(!reason.contains("STATUS_MODEL"));
    let Err(color) = Filter::parse(&query("color", "purple")) else {
        panic!("purple is no colour");
    };
    assert!(color.contains("red, yellow, green or gray"), "{color}");
    assert!(Filter::parse(&query("reason", "seat_missing")).is_ok());
}

#[test]
fn times_render_as_iso_with_a_utc_fallback() {
    let at = OffsetDateTime::from_unix_timestamp(1_764_763_260).unwrap();
    let view = time_view(at);
    assert_eq!(view.iso, "2025-12-03T12:01:00Z");
    assert_eq!(view.text, "2025-12-03 12:01 UTC");
}
