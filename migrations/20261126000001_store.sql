-- tickfill's store: instruments, subscriptions, bars, runs and coverage.
-- All instants are timestamptz (UTC); IST appears only at the edges. Whether the bar tables become
-- TimescaleDB hypertables is decided after the migrations, by `store::timescale`.

CREATE TABLE IF NOT EXISTS instruments (
    instrument_token  bigint PRIMARY KEY CHECK (instrument_token BETWEEN 1 AND 4294967295),
    exchange_token    bigint,
    tradingsymbol     text NOT NULL,
    name              text,
    last_price        double precision,
    expiry            date,
    strike            double precision,
    tick_size         double precision,
    lot_size          integer,
    instrument_type   text,
    segment           text,
    exchange          text,
    active            boolean NOT NULL DEFAULT true,
    source            text NOT NULL DEFAULT 'dump' CHECK (source IN ('dump', 'event', 'parsed')),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS instruments_tradingsymbol ON instruments (tradingsymbol);

CREATE TABLE IF NOT EXISTS subscriptions (
    instrument_token  bigint PRIMARY KEY,
    tradingsymbol     text,
    segment           text,
    status            text NOT NULL CHECK (status IN ('active', 'inactive')),
    requested_mode    text,
    account_id        text,
    subscribed_at     timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    source            text NOT NULL DEFAULT 'event'
);

CREATE TABLE IF NOT EXISTS minute_bars (
    symbol            text NOT NULL,
    time              timestamptz NOT NULL,
    instrument_token  bigint NOT NULL,
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            bigint NOT NULL,
    PRIMARY KEY (symbol, time)
);
CREATE INDEX IF NOT EXISTS minute_bars_token_time ON minute_bars (instrument_token, time);

CREATE TABLE IF NOT EXISTS futures_bars (
    contract          text NOT NULL,
    time              timestamptz NOT NULL,
    instrument_token  bigint NOT NULL,
    symbol            text NOT NULL,
    expiry            date NOT NULL,
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            bigint NOT NULL,
    oi                bigint,
    PRIMARY KEY (contract, time)
);
CREATE INDEX IF NOT EXISTS futures_bars_token_time ON futures_bars (instrument_token, time);

CREATE TABLE IF NOT EXISTS option_bars (
    contract          text NOT NULL,
    time              timestamptz NOT NULL,
    instrument_token  bigint NOT NULL,
    symbol            text NOT NULL,
    expiry            date NOT NULL,
    strike            double precision NOT NULL,
    option_type       text NOT NULL CHECK (option_type IN ('CE', 'PE')),
    open              double precision NOT NULL,
    high              double precision NOT NULL,
    low               double precision NOT NULL,
    close             double precision NOT NULL,
    volume            bigint NOT NULL,
    oi                bigint,
    iv                double precision,
    delta             double precision,
    gamma             double precision,
    theta             double precision,
    vega              double precision,
    underlying_price  double precision,
    PRIMARY KEY (contract, time)
);
CREATE INDEX IF NOT EXISTS option_bars_token_time ON option_bars (instrument_token, time);
CREATE INDEX IF NOT EXISTS option_bars_chain ON option_bars (symbol, expiry, time);

CREATE TABLE IF NOT EXISTS backfill_runs (
    job_id            text PRIMARY KEY,
    kind              text NOT NULL,
    instrument_token  bigint,
    reason            text,
    window_from       timestamptz,
    window_to         timestamptz,
    requested_at      timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    attempts          integer NOT NULL DEFAULT 0,
    rows              integer NOT NULL DEFAULT 0,
    outcome           text NOT NULL,
    error             text
);
CREATE INDEX IF NOT EXISTS backfill_runs_token ON backfill_runs (instrument_token, finished_at);

CREATE TABLE IF NOT EXISTS coverage (
    instrument_token  bigint NOT NULL,
    window_from       timestamptz NOT NULL,
    window_to         timestamptz NOT NULL CHECK (window_to > window_from),
    fetched_at        timestamptz NOT NULL DEFAULT now(),
    candles           integer NOT NULL,
    PRIMARY KEY (instrument_token, window_from, window_to)
);
