-- Numbers the resets the service created, for retrieve.sql.
DROP TABLE IF EXISTS bench_ids;
CREATE TABLE bench_ids AS SELECT row_number() OVER () AS n, id FROM password_resets WHERE mode = 'test';
CREATE UNIQUE INDEX ON bench_ids (n);
ANALYZE;
