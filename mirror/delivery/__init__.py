"""The durable delivery queue: enqueue, claim with a lease, send, record the outcome."""
