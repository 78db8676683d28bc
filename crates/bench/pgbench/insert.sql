\set n random(1, 10000)
INSERT INTO commit_probe (email, digest) VALUES ('bench' || :n || '@example.com', sha256(:n::text::bytea));
