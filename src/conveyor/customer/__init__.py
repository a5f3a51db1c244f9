"""Phase 7, customer messages: inbound mail becomes a workflow (classify → draft → a person's
approval bound to the draft's hash → send), with the PII kept in one table only conveyor_pii
reads. ``store`` wraps the SQL functions; ``handlers`` holds the default classify and draft
handlers and the hook to plug in your own. See docs/customer-messages.md."""
