"""Access: API keys and what each role may do."""
