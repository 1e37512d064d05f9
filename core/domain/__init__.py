"""Pure rules and result types: no SQL, no Slack, no I/O."""
