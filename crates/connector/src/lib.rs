//! datacap-connector: the small interface crate between the worker and the providers.
//!
//! Like ripgrep's matcher crate, it holds the trait ([`Connector`]), the job and attempt
//! types, the [`Registry`] the worker picks a connector from by provider, the sink for
//! rotated refresh tokens and the HTTP plumbing that the Google and Microsoft connectors
//! share, so that the worker knows nothing about either provider and neither provider
//! knows the worker.

pub mod code_flow;
pub mod connect;
pub mod gate;
pub mod http;
pub mod job;
pub mod policy;
pub mod registry;
pub mod rotation;

pub use connect::{
    AuthorizeFacts, CodeRedemption, ConnectFailure, ConnectFuture, ConnectedGrant, MemberConnect,
    identity_call,
};
pub use gate::{Gate, GateFuture, RequestGate, ThrottleScope};
pub use http::{
    HttpLimits, build_client, read_body, redacted_body, request_id, retry_after, transport_failure,
};
pub use job::{
    Attempt, Auth, Connector, Failure, GrantType, ImportJob, MicrosoftAppCredential, OAuthClient,
    RefusedCheck, RotatedToken, ServiceAccountKey, TokenRequest,
};
pub use policy::{RenewOnce, ThrottlePolicy, ThrottleWaits, refused_after_renewal};
pub use registry::{DynConnector, ImportFuture, Registry};
pub use rotation::{RefreshTokenSink, SinkError};
