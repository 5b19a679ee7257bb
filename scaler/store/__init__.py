"""Persistence for the control loop: a key -> bytes state store (SQLite, DynamoDB) and the leader lease."""
