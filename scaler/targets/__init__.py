"""Scale targets: one small interface (read replicas, write desired) and a flat registry of providers."""
