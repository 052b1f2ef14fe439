-- Compress large documents with lz4 instead of PostgreSQL's default pglz.
--
-- Audit entries, decisions and outbox bodies are written once per claim and are mostly over
-- the 2 kB at which PostgreSQL compresses a value. Profiling `claimctl bench` showed pglz
-- compression at about a fifth of the worker's database backends' CPU; lz4 compresses several
-- times faster for a similar ratio on JSON. Values already stored keep their compression
-- (reading either kind is transparent). Needs a server built with lz4 (Debian's and the
-- official Docker images are).
ALTER TABLE audit_log ALTER COLUMN entry SET COMPRESSION lz4;
ALTER TABLE claims ALTER COLUMN input SET COMPRESSION lz4;
ALTER TABLE claims ALTER COLUMN decision SET COMPRESSION lz4;
ALTER TABLE claims ALTER COLUMN moves SET COMPRESSION lz4;
ALTER TABLE claims ALTER COLUMN fingerprints SET COMPRESSION lz4;
ALTER TABLE claims ALTER COLUMN reversal SET COMPRESSION lz4;
ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4;
ALTER TABLE rejected_messages ALTER COLUMN decision SET COMPRESSION lz4;
ALTER TABLE rule_sources ALTER COLUMN sources SET COMPRESSION lz4;
