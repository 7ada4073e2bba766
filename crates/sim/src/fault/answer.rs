//! An answer (status, headers, body), what it needs to know about its request, and the
//! check every handler makes before answering: does a fault fire here?

use super::{Effect, Endpoint, FaultKind, RetryAfter};
use crate::json::J;
use crate::scenario::{FaultSpec, Provider};
use crate::state::World;

/// What an answer needs to know about the request it answers.
#[derive(Clone, Debug, Default)]
pub(crate) struct AnswerCtx {
    /// The endpoint hit (decides Gmail vs Calendar wording).
    pub endpoint: Option<Endpoint>,
    /// The member's address or the id in the path.
    pub user: String,
    /// The OAuth client id of the request.
    pub client_id: String,
    /// The tenant as named in the request path (Microsoft).
    pub tenant: String,
    /// Graph `request-id` of this answer.
    pub request_id: String,
    /// The caller's `client-request-id`, or the request id.
    pub client_request_id: String,
    /// The `Retry-After` value to send, if any.
    pub retry_after: Option<String>,
    /// Scopes the call needed (for `WWW-Authenticate: … scope=`).
    pub needed_scope: String,
}

/// A complete answer: status, extra headers and a JSON body.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: J,
}

impl Answer {
    pub(crate) fn new(status: u16, body: J) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn retry_after(self, ctx: &AnswerCtx) -> Answer {
        match &ctx.retry_after {
            Some(value) => self.header("retry-after", value.clone()),
            None => self,
        }
    }
}

/// The answer `kind` produces for `provider`.
pub(crate) fn answer(kind: FaultKind, provider: Provider, ctx: &AnswerCtx) -> Answer {
    match provider {
        Provider::Google => crate::google::faults::google_answer(kind, ctx),
        Provider::Microsoft => crate::microsoft::faults::microsoft_answer(kind, ctx),
    }
}

/// What a fault check found.
pub(crate) enum Fired {
    Nothing,
    /// An answer fault, with the transport fault (latency, …) to apply to it, if any.
    Answer(Answer, Option<FaultSpec>),
    Transport(FaultSpec),
}

/// Takes the first fault that applies and turns an answer fault into its answer.
pub(crate) fn fire(
    world: &mut World,
    tenant: usize,
    user: Option<usize>,
    endpoint: Endpoint,
    incremental: bool,
    provider: Provider,
    ctx: &mut AnswerCtx,
) -> Fired {
    let transport = world.take_fault(tenant, user, endpoint, incremental, Effect::Transport);
    match world.take_fault(tenant, user, endpoint, incremental, Effect::Answer) {
        Some(spec) => {
            ctx.retry_after = spec.retry_after.as_ref().map(RetryAfter::header_value);
            Fired::Answer(answer(spec.fault, provider, ctx), transport)
        }
        None => transport.map_or(Fired::Nothing, Fired::Transport),
    }
}
