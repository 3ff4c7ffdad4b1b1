"""Long-running services that are not message handlers: the outbox relay and the expirer."""
