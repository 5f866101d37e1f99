"""Long-lived workers (each on its own QThread, owned by a controller) and one-shot jobs."""
