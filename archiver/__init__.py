"""The archiver: CALLS projected into PostgreSQL as it happens; stereo MP3s, retention, erasure."""
