//! Graph delta links: the state a `$skiptoken` / `$deltatoken` carries, read back and
//! written into the next page (users, mail and calendar delta share it).
//!
//! Delta links carry their whole state in an opaque token, so a link stays valid until the
//! user's delta epoch is bumped (by `expire` on the control endpoint or a cursor fault), at
//! which point it answers 410 `SyncStateNotFound`, as Graph does.

use super::Call;
use super::mail::MailOptions;
use crate::fault::{Answer, AnswerCtx, FaultKind};
use crate::json::{J, obj};
use crate::paging::{self, PageAt};
use crate::scenario::Provider;
use crate::server::Params;

/// The state a delta link carries.
pub(super) struct DeltaState {
    pub(super) epoch: u32,
    pub(super) since: u64,
    pub(super) snapshot: u64,
    pub(super) at: PageAt,
    pub(super) size: Option<usize>,
    pub(super) window: Option<(i64, i64)>,
    /// The round's query options (message delta's `$filter`, `$orderby`, `changeType`,
    /// `$top`), encoded by [`MailOptions::encode`]: Graph keeps them inside its links,
    /// so a client follows a link without re-adding them.
    pub(super) options: String,
}

/// Reads `$deltatoken` / `$skiptoken`; `Err` is the answer for a stale or broken link.
pub(super) fn read_delta(
    params: &Params,
    tag: &str,
    epoch: u32,
    current: u64,
    ctx: &AnswerCtx,
) -> Result<Option<DeltaState>, Answer> {
    let stale = || crate::fault::answer(FaultKind::SyncStateNotFound, Provider::Microsoft, ctx);
    let (token, is_skip) = match (params.get("$skiptoken"), params.get("$deltatoken")) {
        (Some(token), _) => (token, true),
        (None, Some(token)) => (token, false),
        (None, None) => return Ok(None),
    };
    let Some(fields) = paging::decode(token, tag) else {
        return Err(stale());
    };
    let number = |i: usize| fields.get(i).and_then(|v| v.parse::<i64>().ok());
    let Some(token_epoch) = number(1) else {
        return Err(stale());
    };
    if token_epoch != i64::from(epoch) {
        return Err(stale());
    }
    let window = match (number(2), number(3)) {
        (Some(start), Some(end)) if start < end => Some((start, end)),
        _ => None,
    };
    let since = u64::try_from(number(4).unwrap_or(0)).unwrap_or(0);
    if is_skip {
        let snapshot = u64::try_from(number(5).unwrap_or(0)).unwrap_or(0);
        let at = PageAt::parse(fields.get(6), fields.get(7)).ok_or_else(stale)?;
        let size = number(8)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| *n > 0);
        Ok(Some(DeltaState {
            epoch,
            since,
            snapshot,
            at,
            size,
            window,
            options: fields.get(9).cloned().unwrap_or_default(),
        }))
    } else {
        Ok(Some(DeltaState {
            epoch,
            since,
            snapshot: current,
            at: PageAt::default(),
            size: None,
            window,
            options: fields.get(5).cloned().unwrap_or_default(),
        }))
    }
}

/// Builds one delta page: `items` are (sequence, removed?, body) in sequence order.
pub(super) fn delta_page(
    link_base: &str,
    tag: &str,
    context: &str,
    state: &DeltaState,
    items: Vec<J>,
    call: &Call,
) -> Answer {
    let top = MailOptions::decode(&state.options).top;
    let size = top.or(call.page_size).or(state.size).unwrap_or(10);
    let (range, next) = paging::cut(items.len(), size, state.at, call.quirks);
    let (start, end) = state.window.unwrap_or((0, 0));
    let common = [
        tag.to_owned(),
        state.epoch.to_string(),
        start.to_string(),
        end.to_string(),
    ];
    let value: Vec<J> = items
        .into_iter()
        .skip(range.start)
        .take(range.len())
        .collect();
    let mut body = obj! { "@odata.context" => context };
    match next {
        Some(next) => {
            let [offset, empty] = next.fields();
            let mut fields: Vec<&str> = common.iter().map(String::as_str).collect();
            let since = state.since.to_string();
            let snapshot = state.snapshot.to_string();
            let size = size.to_string();
            fields.extend([
                since.as_str(),
                snapshot.as_str(),
                offset.as_str(),
                empty.as_str(),
                size.as_str(),
                state.options.as_str(),
            ]);
            body.push(
                "@odata.nextLink",
                format!("{link_base}?$skiptoken={}", paging::encode(&fields)),
            );
        }
        None => {
            let mut fields: Vec<&str> = common.iter().map(String::as_str).collect();
            let snapshot = state.snapshot.to_string();
            fields.push(&snapshot);
            fields.push(&state.options);
            body.push(
                "@odata.deltaLink",
                format!("{link_base}?$deltatoken={}", paging::encode(&fields)),
            );
        }
    }
    body.push("value", value);
    Answer::new(200, body)
}

pub(super) fn removed(kind: &str, id: &str) -> J {
    obj! { "@odata.type" => kind, "id" => id, "@removed" => obj! { "reason" => "deleted" } }
}
