//! Delivery agents, counted: per recipient outcome and destination kind, and the time of each
//! attempt (`mailwit_deliveries_total`, `mailwit_delivery_duration_seconds`). Wraps the
//! production agents at the composition root, so neither the queue nor the agents know metrics.

use super::contract::{Agents, Attempt, Destination, Outbound, RecipientOutcome};
use crate::metrics::{DeliveryLabels, KindLabels, Metrics};
use std::sync::Arc;

pub struct Measured<A> {
    pub inner: A,
    pub metrics: Arc<Metrics>,
}

fn kind(destination: &Destination) -> &'static str {
    match destination {
        Destination::Maildir(_) => "maildir",
        Destination::Lmtp(_) => "lmtp",
        Destination::Relay(_) => "relay",
        Destination::Mx(_) => "mx",
    }
}

#[async_trait::async_trait]
impl<A: Agents> Agents for Measured<A> {
    async fn deliver(&self, destination: &Destination, outbound: &Outbound<'_>) -> Attempt {
        let started = std::time::Instant::now();
        let attempt = self.inner.deliver(destination, outbound).await;
        let kind = kind(destination);
        self.metrics
            .delivery_duration
            .get_or_create(&KindLabels { kind })
            .observe(started.elapsed().as_secs_f64());
        for outcome in &attempt.outcomes {
            let outcome = match outcome {
                RecipientOutcome::Delivered(_) => "delivered",
                RecipientOutcome::Deferred(_) => "deferred",
                RecipientOutcome::Failed(_) => "failed",
            };
            self.metrics
                .deliveries
                .get_or_create(&DeliveryLabels { outcome, kind })
                .inc();
        }
        attempt
    }
}
