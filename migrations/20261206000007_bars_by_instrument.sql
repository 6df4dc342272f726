-- Bars keyed by instrument: (instrument_token, time) instead of (symbol or contract, time), so two
-- instruments that share a tradingsymbol (NSE:INFY and BSE:INFY) never share a row. Every stored
-- row keeps its instrument_token, which is what it is attributed to from now on; the readable
-- names stay as columns, indexed for reads by name.

-- TimescaleDB: a compressed chunk cannot change its key. Its chunks are decompressed and
-- compression is turned off here; `tickfill migrate` turns it on again, segmented by instrument,
-- with the configured policy. Nothing of this runs on plain PostgreSQL.
DO $$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        FOR t IN
            SELECT hypertable_name::text FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema() AND compression_enabled
              AND hypertable_name IN ('minute_bars', 'futures_bars', 'option_bars')
        LOOP
            EXECUTE format('SELECT remove_compression_policy(%L, if_exists => TRUE)', t);
            EXECUTE format('SELECT decompress_chunk(c, if_compressed => TRUE) FROM show_chunks(%L) c', t);
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress = false)', t);
        END LOOP;
    END IF;
END $$;

-- One instrument's minute stored under two names (its tradingsymbol changed between loads of the
-- dump) is one bar: the row written last in the table is kept.
DELETE FROM minute_bars a USING minute_bars b
 WHERE a.instrument_token = b.instrument_token AND a.time = b.time AND a.ctid < b.ctid;
DELETE FROM futures_bars a USING futures_bars b
 WHERE a.instrument_token = b.instrument_token AND a.time = b.time AND a.ctid < b.ctid;
DELETE FROM option_bars a USING option_bars b
 WHERE a.instrument_token = b.instrument_token AND a.time = b.time AND a.ctid < b.ctid;

ALTER TABLE minute_bars DROP CONSTRAINT IF EXISTS minute_bars_pkey;
ALTER TABLE minute_bars ADD PRIMARY KEY (instrument_token, time);
DROP INDEX IF EXISTS minute_bars_token_time;
CREATE INDEX IF NOT EXISTS minute_bars_symbol_time ON minute_bars (symbol, time);

ALTER TABLE futures_bars DROP CONSTRAINT IF EXISTS futures_bars_pkey;
ALTER TABLE futures_bars ADD PRIMARY KEY (instrument_token, time);
DROP INDEX IF EXISTS futures_bars_token_time;
CREATE INDEX IF NOT EXISTS futures_bars_contract_time ON futures_bars (contract, time);

ALTER TABLE option_bars DROP CONSTRAINT IF EXISTS option_bars_pkey;
ALTER TABLE option_bars ADD PRIMARY KEY (instrument_token, time);
DROP INDEX IF EXISTS option_bars_token_time;
CREATE INDEX IF NOT EXISTS option_bars_contract_time ON option_bars (contract, time);
