-- Option-chain views rebuilt from option_bars, per underlying, expiry and minute.

CREATE TABLE IF NOT EXISTS fo_strike_distribution (
    symbol       text NOT NULL,
    expiry       date NOT NULL,
    time         timestamptz NOT NULL,
    strike       double precision NOT NULL,
    call_close   double precision,
    put_close    double precision,
    call_volume  bigint,
    put_volume   bigint,
    call_oi      bigint,
    put_oi       bigint,
    call_iv      double precision,
    put_iv       double precision,
    PRIMARY KEY (symbol, expiry, time, strike)
);

CREATE TABLE IF NOT EXISTS fo_expiry_metrics (
    symbol            text NOT NULL,
    expiry            date NOT NULL,
    time              timestamptz NOT NULL,
    underlying_close  double precision,
    call_volume       bigint NOT NULL,
    put_volume        bigint NOT NULL,
    call_oi           bigint NOT NULL,
    put_oi            bigint NOT NULL,
    pcr_oi            double precision,
    pcr_volume        double precision,
    max_pain          double precision,
    strikes           integer NOT NULL,
    PRIMARY KEY (symbol, expiry, time)
);
