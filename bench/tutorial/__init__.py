"""A tutorial-style Channels peer: group_send on every receive, no auth, no persistence."""
