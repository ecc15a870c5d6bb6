"""The tmuxish client: talks to the server, autostarts it, and attaches a terminal to a session."""
