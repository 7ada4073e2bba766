//! Opaque page and sync tokens, and the page cutter every list endpoint shares.
//!
//! Tokens are base64url of a short `|`-separated record, so they look opaque to clients
//! (as the providers' do) but need no server-side storage. A token that does not decode is
//! answered like the provider answers a bad token, never with a panic.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::fault::Quirks;

/// Encodes fields into an opaque token.
pub(crate) fn encode(fields: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(fields.join("|"))
}

/// Decodes a token made by [`encode`] whose first field is `tag`.
pub(crate) fn decode(token: &str, tag: &str) -> Option<Vec<String>> {
    let bytes = crate::oauth::jwt::decode_segment(token)?;
    let text = String::from_utf8(bytes).ok()?;
    let fields: Vec<String> = text.split('|').map(str::to_owned).collect();
    (fields.first().map(String::as_str) == Some(tag)).then_some(fields)
}

/// The token of the page that starts at `at`: `tag`, then `fields` (what a request must
/// still match to go on from it), then where the page starts.
pub(crate) fn page_token(tag: &str, fields: &[&str], at: PageAt) -> String {
    let [offset, empty] = at.fields();
    let mut all = vec![tag];
    all.extend_from_slice(fields);
    all.extend([offset.as_str(), empty.as_str()]);
    encode(&all)
}

/// Where the page a token made by [`page_token`] with `tag` and `fields` starts: no token
/// is the first page; `Err` is a token the sim did not write or one for other `fields`.
pub(crate) fn read_page(token: Option<&str>, tag: &str, fields: &[&str]) -> Result<PageAt, ()> {
    let Some(token) = token else {
        return Ok(PageAt::default());
    };
    let n = fields.len();
    decode(token, tag)
        .filter(|f| {
            f.get(1..1 + n)
                .is_some_and(|got| got.iter().zip(fields).all(|(a, b)| a == b))
        })
        .and_then(|f| PageAt::parse(f.get(1 + n), f.get(2 + n)))
        .ok_or(())
}

/// Where a page starts: the offset into the listing and whether the empty page the
/// `empty_pages` quirk puts before it was already served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PageAt {
    pub offset: usize,
    pub empty_served: bool,
}

impl PageAt {
    pub(crate) fn fields(self) -> [String; 2] {
        [
            self.offset.to_string(),
            u8::from(self.empty_served).to_string(),
        ]
    }

    pub(crate) fn parse(offset: Option<&String>, empty: Option<&String>) -> Option<PageAt> {
        Some(PageAt {
            offset: offset?.parse().ok()?,
            empty_served: empty? == "1",
        })
    }
}

/// Cuts one page of `len` items at `at`: returns the index range and where the next page
/// starts (`None` on the last page). With `empty_pages`, an empty page with a next link
/// comes first; with `duplicate_items`, the next page starts one item early.
pub(crate) fn cut(
    len: usize,
    size: usize,
    at: PageAt,
    quirks: Quirks,
) -> (std::ops::Range<usize>, Option<PageAt>) {
    let size = size.max(1);
    if quirks.empty_pages && !at.empty_served && at.offset < len {
        let next = PageAt {
            offset: at.offset,
            empty_served: true,
        };
        return (at.offset..at.offset, Some(next));
    }
    let start = at.offset.min(len);
    let end = start.saturating_add(size).min(len);
    if end >= len {
        return (start..end, None);
    }
    let mut next_offset = end;
    if quirks.duplicate_items && end - start >= 2 {
        next_offset -= 1;
    }
    (
        start..end,
        Some(PageAt {
            offset: next_offset,
            empty_served: false,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(len: usize, size: usize, quirks: Quirks) -> Vec<Vec<usize>> {
        let mut at = PageAt::default();
        let mut out = Vec::new();
        for _ in 0..100 {
            let (range, next) = cut(len, size, at, quirks);
            out.push(range.collect());
            match next {
                Some(next) => at = next,
                None => return out,
            }
        }
        panic!("paging did not end");
    }

    #[test]
    fn plain_paging() {
        assert_eq!(
            pages(5, 2, Quirks::default()),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(pages(0, 2, Quirks::default()), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn empty_pages_come_first_and_still_end() {
        let quirks = Quirks {
            empty_pages: true,
            ..Quirks::default()
        };
        assert_eq!(
            pages(3, 2, quirks),
            vec![vec![], vec![0, 1], vec![], vec![2]]
        );
    }

    #[test]
    fn duplicates_overlap_by_one() {
        let quirks = Quirks {
            duplicate_items: true,
            ..Quirks::default()
        };
        assert_eq!(
            pages(5, 2, quirks),
            vec![vec![0, 1], vec![1, 2], vec![2, 3], vec![3, 4]]
        );
        assert_eq!(pages(3, 1, quirks), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = encode(&["h", "12", "0"]);
        assert_eq!(decode(&token, "h").unwrap(), vec!["h", "12", "0"]);
        assert!(decode(&token, "x").is_none());
        assert!(decode("%%%", "h").is_none());
    }
}
