"""DR runbooks: YAML procedures run step by step with a journal, retries, rollback and an audit trail."""
