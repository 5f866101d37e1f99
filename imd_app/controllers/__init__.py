"""Controllers: own the workers and their threads, write the state objects."""
