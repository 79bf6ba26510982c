"""What the test modules share: servers started as real subprocesses, crash drivers, factories
of events, and helpers for the CLI and MCP tests."""
