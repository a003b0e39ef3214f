//! Running a pipeline: the [`SessionHooks`](crate::policy::SessionHooks) the engine calls for each
//! connection and the [`QueueHooks`](crate::policy::QueueHooks) the queue manager calls. Plugins
//! run in order; `continue` passes on; the first decisive verdict ends the chain; rcpt rewrites and
//! data modifications accumulate in order.
//!
//! - [`call`]: calling one plugin, checking what it returned, and failure (`on_error`, breaker).
//! - [`sanitize`]: a plugin's verdict made safe to send.
//! - [`session`]: the session hooks (connect, ehlo, auth, mail, rcpt, data) on a listener's pipeline.
//! - [`queue`]: the queue hooks (route, delivery) on the "queue" pipeline, with warm instances.

pub mod call;
pub mod queue;
pub mod sanitize;
pub mod session;

pub use call::{MAX_MODIFICATION_BYTES, MAX_MODIFICATIONS, failure_verdict};
pub use queue::{PipelineQueueHooks, QUEUE_INSTANCE_USES};
pub use sanitize::{MAX_REPLY_TEXT, sanitize};
pub use session::{PipelineHookFactory, PipelineSession};
