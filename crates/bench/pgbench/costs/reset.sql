-- Between write-cost runs: every run starts from no resets and no events.
TRUNCATE password_resets, reset_events;
