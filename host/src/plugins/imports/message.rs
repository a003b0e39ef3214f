//! `message`: the data hook's view of the message. The host keeps the bytes; a plugin pulls a
//! header, all headers, or a capped range of raw bytes, so a 50 MB message is never copied into
//! guest memory unless the plugin asks for it.

use wasmtime::component::Resource;

use crate::plugins::bindings::mailwit::plugin::message::{Host, HostMessage};
use crate::plugins::resources::MessageHandle;
use crate::plugins::state::HostState;

/// Most bytes one `read` returns.
pub const MAX_READ: u32 = 1024 * 1024;
/// Most header fields `headers` returns.
pub const MAX_HEADERS: usize = 1000;

impl HostMessage for HostState {
    async fn size(&mut self, this: Resource<MessageHandle>) -> u64 {
        self.table.get(&this).map_or(0, |m| m.bytes.len() as u64)
    }

    async fn header(&mut self, this: Resource<MessageHandle>, name: String) -> Option<String> {
        self.table.get(&this).ok()?.header(&name)
    }

    async fn headers(&mut self, this: Resource<MessageHandle>) -> Vec<(String, String)> {
        match self.table.get(&this) {
            Ok(m) => m.headers().take(MAX_HEADERS).collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn read(&mut self, this: Resource<MessageHandle>, offset: u64, length: u32) -> Vec<u8> {
        let Ok(m) = self.table.get(&this) else {
            return Vec::new();
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(m.bytes.len());
        let end = start
            .saturating_add(length.min(MAX_READ) as usize)
            .min(m.bytes.len());
        m.bytes[start..end].to_vec()
    }

    async fn body_offset(&mut self, this: Resource<MessageHandle>) -> u64 {
        self.table.get(&this).map_or(0, |m| m.body_offset as u64)
    }

    async fn drop(&mut self, this: Resource<MessageHandle>) -> wasmtime::Result<()> {
        // The host owns the handle and removes it after the call; a guest-side drop of a borrow
        // never reaches here, and an unknown handle is harmless.
        let _ = self.table.delete(this);
        Ok(())
    }
}

impl Host for HostState {}
