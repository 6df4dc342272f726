-- The daily instrument dump changes last_price on nearly every row. With half of each page left
-- free, those updates are heap-only (HOT): no new index entries, and the old versions are pruned
-- in place. Applies to pages written from now on.
ALTER TABLE instruments SET (fillfactor = 50);
