//! The binary's wiring: the provider connectors, the web app and the SMTP relay built from a
//! validated [`crate::config::Config`]. Configuration never depends on this module (the
//! arrow goes one way: `config` knows nothing of what is built from it).

pub(crate) mod connectors;
pub(crate) mod smtp;
pub(crate) mod web;
