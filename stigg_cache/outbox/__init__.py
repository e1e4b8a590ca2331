"""The durable usage outbox and its flusher."""
