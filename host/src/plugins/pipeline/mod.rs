//! Running a pipeline: the [`SessionHooks`](crate::policy::SessionHooks) the engine calls for
//! each connection ([`session`]) and the [`QueueHooks`](crate::policy::QueueHooks) the queue
//! manager calls ([`queue`]). Plugins run in order; `continue` passes on; the first decisive
//! verdict ends the chain; rcpt rewrites and data modifications accumulate in order.
//! A failing plugin (trap, limit, bad output, open breaker) gets its `on_error` policy
//! ([`call`]); what a plugin answers is made safe to send by [`sanitize`].
//!
//! - [`call`]: calling one plugin, checking its output, counting a failure; the limits and the
//!   hook call/answer types both sides share.
//! - [`sanitize`]: codes, enhanced codes and text of a plugin's verdict.
//! - [`session`]: [`PipelineHookFactory`] and [`PipelineSession`], the SMTP-session hooks.
//! - [`queue`]: [`PipelineQueueHooks`], the route, outbound and delivery hooks.
//!
//! `Plugins::hook_factory` and `Plugins::queue_hooks` are defined in `session` and `queue`, so
//! the runtime does not import the pipeline that imports it.

pub mod call;
pub mod queue;
pub mod sanitize;
pub mod session;

pub use call::{MAX_MODIFICATION_BYTES, MAX_MODIFICATIONS, MAX_REPLY_TEXT, failure_verdict};
pub use queue::{PipelineQueueHooks, QUEUE_INSTANCE_USES};
pub use sanitize::sanitize;
pub use session::{PipelineHookFactory, PipelineSession};
