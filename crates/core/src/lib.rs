//! datacap's core: the domain vocabulary, the status classifier and its message catalogue.
//!
//! This crate is the product's contract (STATUS_MODEL.md) as pure code. It does no IO,
//! never reads the clock and has no async runtime: `now` and every input are arguments, so
//! every other crate, and every test, can rely on the same answer for the same input.

pub mod catalogue;
pub mod classify;
pub mod derive;
pub mod items;
pub mod model;
pub mod wire;

pub use catalogue::{Text, admin_step, banner_text, reason_text, reason_title};
pub use classify::{Banner, BannerTally, MemberStatus, banner_for, banners, classify_member};
pub use derive::{
    BANNER_COUNT, IconUpdate, MemberUpdate, RecentAttempt, StoredIcon, StoredIcons, banner_delta,
    derive_member, may_import,
};
pub use items::{CalendarItem, EmailItem};
pub use model::{
    AttemptSummary, BannerCode, Channel, Color, CompanySettings, ConnectionMode, Icon,
    MemberConnection, MemberSettings, Outcome, Provider, Reason, Thresholds,
};
pub use wire::{InputError, classify_json};
