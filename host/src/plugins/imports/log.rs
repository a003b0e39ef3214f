//! `log`: the plugin's messages go to tracing, tagged with the plugin and the session.

use crate::plugins::bindings::mailwit::plugin::log::{Host, Level};
use crate::plugins::state::HostState;

/// Longest message kept; the rest is cut so a plugin cannot flood the log with one call.
const MAX_MESSAGE: usize = 2048;

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String) {
        let message = truncate(&message, MAX_MESSAGE);
        let plugin = &*self.ctx.plugin;
        let session = &*self.session;
        match level {
            Level::Trace => tracing::trace!(plugin, session, "{message}"),
            Level::Debug => tracing::debug!(plugin, session, "{message}"),
            Level::Info => tracing::info!(plugin, session, "{message}"),
            Level::Warn => tracing::warn!(plugin, session, "{message}"),
            Level::Error => tracing::error!(plugin, session, "{message}"),
        }
    }
}

/// At most `max` bytes, cut on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
