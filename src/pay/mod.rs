//! WeChat Pay API v3 (placeholder until the pay issue lands).
