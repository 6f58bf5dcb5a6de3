// sqlcheck.js: parse SQL statements with node-sql-parser (a third-party
// parser with BigQuery and Snowflake modes) for the sqlviews tests.
// Reads [{"dialect": "...", "sql": "..."}] on stdin; writes [{"ok": bool,
// "error": "..."}] on stdout. NODE_PATH must reach node-sql-parser.
const { Parser } = require('node-sql-parser');

const parser = new Parser();
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(({ dialect, sql }) => {
    try {
      parser.astify(sql, { database: dialect });
      return { ok: true };
    } catch (e) {
      return { ok: false, error: String(e && e.message).slice(0, 300) };
    }
  });
  process.stdout.write(JSON.stringify(out));
});
