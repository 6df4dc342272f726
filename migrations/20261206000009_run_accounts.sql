-- Which accounts answered a backfill's history requests, and a remark about its run (for one, a
-- subscription whose account_id names no configured account, served by the default account).
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS accounts text;
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS note text;
