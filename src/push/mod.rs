//! Inbound message push (placeholder until the push issue lands).
