"""Who may call the gateway."""
