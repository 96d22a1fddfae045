//! The marketplace (placeholder until the market issue lands).
