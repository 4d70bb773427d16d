"""The agent: backups on schedules, hooks and dumps around them, history and status (design 15)."""
