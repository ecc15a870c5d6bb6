"""The tmuxish server: holds every session's PTY master and relays it to attached clients."""
