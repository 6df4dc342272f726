-- The newest event applied to each subscription, so that one arriving late changes nothing.
-- `event_at` is the event's own timestamp (its receipt when it had none); `event_received_at` is
-- its receipt at the bridge, which orders events stamped in the same second. A reconcile stamps
-- both with the moment it asked the ticker. NULL: no event applied since this column existed.
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS event_at timestamptz;
ALTER TABLE subscriptions ADD COLUMN IF NOT EXISTS event_received_at timestamptz;
