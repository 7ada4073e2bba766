//! Mailboxes and calendars, and their deterministic generation: FNV-1a then splitmix64 of
//! the scenario's seed, so the same seed gives the same ids, subjects and times.

use time::OffsetDateTime;

/// One generated mail message (Gmail and Graph views of the same thing).
#[derive(Clone, Debug)]
pub(crate) struct MailMessage {
    pub id: String,
    pub graph_id: String,
    pub thread_id: String,
    pub subject: String,
    pub from_name: String,
    pub from_address: String,
    pub received: OffsetDateTime,
    /// History id of the last change (add or delete); also the Graph delta sequence.
    pub changed: u64,
    pub deleted: bool,
    pub size: u32,
}

/// One Gmail history record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HistoryRecord {
    pub id: u64,
    pub added: bool,
    pub message: usize,
}

/// A mailbox with Gmail history and Graph delta state.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pub messages: Vec<MailMessage>,
    pub history: Vec<HistoryRecord>,
    pub history_id: u64,
    /// `startHistoryId` below this answers 404.
    pub floor: u64,
    /// Bumped to invalidate Graph delta tokens.
    pub epoch: u32,
    pub generated: u64,
}

/// One calendar event.
#[derive(Clone, Debug)]
pub(crate) struct CalEvent {
    pub id: String,
    pub graph_id: String,
    pub summary: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    pub seq: u64,
    pub cancelled: bool,
}

/// A primary calendar with sync-token state.
#[derive(Debug, Default)]
pub(crate) struct Calendar {
    pub events: Vec<CalEvent>,
    pub seq: u64,
    /// Bumped to invalidate sync and delta tokens.
    pub epoch: u32,
    pub generated: u64,
}

// ---- deterministic generation ---------------------------------------------------------

/// FNV-1a then splitmix64: a small, stable hash so generated data never depends on the
/// standard library's hasher.
pub(crate) fn mix(seed: u64, parts: &[&str], index: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let mut z = hash ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], value: u64) -> &'a str {
    let len = u64::try_from(list.len()).unwrap_or(1).max(1);
    list.get(usize::try_from(value % len).unwrap_or(0))
        .copied()
        .unwrap_or("")
}

const SENDERS: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@analytical.example"),
    ("Grace Hopper", "grace@cobol.example"),
    ("Alan Turing", "alan@bletchley.example"),
    ("Katherine Johnson", "katherine@nasa.example"),
    ("Edsger Dijkstra", "edsger@eindhoven.example"),
];
const TOPICS: &[&str] = &[
    "Quarterly report",
    "Invoice",
    "Team offsite",
    "Contract renewal",
    "Release notes",
    "Customer feedback",
    "Hiring plan",
    "Budget review",
    "Security notice",
    "Lunch",
];
const MEETINGS: &[&str] = &[
    "Standup",
    "1:1",
    "Planning",
    "Customer call",
    "Design review",
    "Retro",
    "All hands",
];

/// A Graph-style opaque id (`AAMkAD…`) from a number.
fn graph_id(prefix: &str, value: u64, index: u64) -> String {
    use base64::Engine;
    let mut raw = Vec::with_capacity(24);
    raw.extend_from_slice(&value.to_be_bytes());
    raw.extend_from_slice(&index.to_be_bytes());
    raw.extend_from_slice(&value.rotate_left(17).to_be_bytes());
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

impl Mailbox {
    pub(crate) fn add(&mut self, seed: u64, email: &str, received: OffsetDateTime) -> usize {
        let index = self.generated;
        self.generated += 1;
        let value = mix(seed, &["mail", email], index);
        let (from_name, from_address) = SENDERS
            .get(usize::try_from(value % 5).unwrap_or(0))
            .copied()
            .unwrap_or(("", ""));
        self.history_id += 1 + (value >> 8) % 4;
        let id = format!("{:016x}", value | (1 << 60));
        let thread_id = if index % 3 == 2 {
            self.messages
                .last()
                .map_or_else(|| id.clone(), |m| m.thread_id.clone())
        } else {
            id.clone()
        };
        self.messages.push(MailMessage {
            graph_id: graph_id("AAMkAD", value, index),
            thread_id,
            subject: format!("{} #{}", pick(TOPICS, value >> 16), index + 1),
            from_name: from_name.to_owned(),
            from_address: from_address.to_owned(),
            received,
            changed: self.history_id,
            deleted: false,
            size: 2_000 + u32::try_from((value >> 24) % 40_000).unwrap_or(0),
            id,
        });
        let message = self.messages.len() - 1;
        self.history.push(HistoryRecord {
            id: self.history_id,
            added: true,
            message,
        });
        message
    }

    /// Deletes a message by Gmail or Graph id; false when unknown or already gone.
    pub(crate) fn delete(&mut self, id: &str) -> bool {
        let Some(index) = self
            .messages
            .iter()
            .position(|m| !m.deleted && (m.id == id || m.graph_id == id))
        else {
            return false;
        };
        self.history_id += 1;
        if let Some(message) = self.messages.get_mut(index) {
            message.deleted = true;
            message.changed = self.history_id;
        }
        self.history.push(HistoryRecord {
            id: self.history_id,
            added: false,
            message: index,
        });
        true
    }
}

impl Calendar {
    pub(crate) fn add(
        &mut self,
        seed: u64,
        email: &str,
        epoch: OffsetDateTime,
        now: OffsetDateTime,
    ) -> usize {
        let index = self.generated;
        self.generated += 1;
        let value = mix(seed, &["event", email], index);
        let day = i64::try_from(index % 28).unwrap_or(0) - 7;
        let hour = 8 + i64::try_from((value >> 8) % 9).unwrap_or(0);
        let start = epoch + time::Duration::days(day) + time::Duration::hours(hour);
        let minutes = if value.is_multiple_of(2) { 30 } else { 60 };
        self.seq += 1;
        self.events.push(CalEvent {
            id: format!("{:026x}", u128::from(value) << 40 | u128::from(index)),
            graph_id: graph_id("AAMkAGE", value, index),
            summary: format!("{} ({})", pick(MEETINGS, value >> 20), index + 1),
            start,
            end: start + time::Duration::minutes(minutes),
            created: now,
            updated: now,
            seq: self.seq,
            cancelled: false,
        });
        self.events.len() - 1
    }

    /// Cancels an event by Google or Graph id; false when unknown or already cancelled.
    pub(crate) fn cancel(&mut self, id: &str, now: OffsetDateTime) -> bool {
        let Some(event) = self
            .events
            .iter_mut()
            .find(|e| !e.cancelled && (e.id == id || e.graph_id == id))
        else {
            return false;
        };
        self.seq += 1;
        event.cancelled = true;
        event.seq = self.seq;
        event.updated = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_is_stable_and_spreads() {
        assert_eq!(mix(1, &["a"], 0), mix(1, &["a"], 0));
        assert_ne!(mix(1, &["a"], 0), mix(1, &["a"], 1));
        assert_ne!(mix(1, &["a"], 0), mix(2, &["a"], 0));
    }

    #[test]
    fn deleting_records_history_and_advances() {
        let mut mailbox = Mailbox {
            history_id: 100,
            floor: 1,
            ..Mailbox::default()
        };
        let epoch = OffsetDateTime::UNIX_EPOCH;
        mailbox.add(1, "a@x", epoch);
        let id = mailbox.messages[0].id.clone();
        let before = mailbox.history_id;
        assert!(mailbox.delete(&id));
        assert!(!mailbox.delete(&id));
        assert!(mailbox.history_id > before);
        assert_eq!(mailbox.history.len(), 2);
        assert!(!mailbox.history[1].added);
    }
}
