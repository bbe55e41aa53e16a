-- sqlite3 workload run under the preloaded allocator; the output is compared
-- with sqlite_workload.expected. run_program.sh runs it against a fresh
-- database file in a temporary directory.
.bail on
.mode list
PRAGMA journal_mode = WAL;

CREATE TABLE items(id INTEGER PRIMARY KEY, category INTEGER, name TEXT, value INTEGER, payload BLOB);
CREATE TABLE categories(id INTEGER PRIMARY KEY, label TEXT);

-- 20000 rows from a recursive CTE, in one transaction.
BEGIN;
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 20000)
INSERT INTO items
  SELECT n, n % 37, 'item-' || n || '-' || substr('abcdefghij', 1 + n % 10),
         (n * 7919) % 10007, zeroblob(n % 500)
  FROM seq;
WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < 36)
INSERT INTO categories SELECT n, printf('cat%02d', n) FROM c;
COMMIT;

CREATE INDEX items_value ON items(value);
CREATE INDEX items_category_value ON items(category, value);

-- Aggregates. sum(id) must be 20000*20001/2 = 200010000.
SELECT count(*), sum(id), sum(value), min(value), max(value), sum(length(payload)) FROM items;

-- A join with grouping and ordering.
SELECT c.label, count(*), sum(i.value)
  FROM items i JOIN categories c ON c.id = i.category
  GROUP BY c.label ORDER BY sum(i.value) DESC, c.label LIMIT 5;

-- Index range scans.
SELECT count(*) FROM items WHERE value BETWEEN 1000 AND 2000;
SELECT group_concat(id, ',') FROM (SELECT id FROM items WHERE value < 8 ORDER BY id);
SELECT count(*), sum(value) FROM items WHERE category = 5 AND value > 5000;

-- A window function over every row.
SELECT max(running), min(running) FROM (
  SELECT sum(value) OVER (PARTITION BY category ORDER BY id ROWS 10 PRECEDING) AS running FROM items);

-- Updates that grow every row, and deletes.
UPDATE items SET name = upper(name) || printf('%.*c', id % 100, 'x') WHERE id % 2 = 0;
DELETE FROM items WHERE id % 3 = 0;
SELECT count(*), sum(value), sum(length(name)) FROM items;

-- Big strings and sorts without an index.
SELECT length(group_concat(name, ',')) FROM items;
SELECT name FROM items ORDER BY name DESC LIMIT 3;
SELECT count(DISTINCT substr(name, -3)) FROM items;

VACUUM;
PRAGMA integrity_check;
