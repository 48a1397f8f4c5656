// GET /api/v1/users/{id} on Express 4 + pg (node-postgres), under Node's
// cluster module: the stack kiln's users endpoint is compared with. Each
// worker has its own pg.Pool and runs the same query as kiln and
// cmd/bareusers, answering with the same JSON shape ({id, email, name,
// created_at, updated_at}), 404 when no row matches. Express's defaults are
// kept (ETag, X-Powered-By), as an application built on it would have them.
//
//   node server.mjs --port 8082 --workers 2 \
//     --db 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' --schema users_bench
//
// --pool is per worker (default 8: 2 workers x 8 = kiln's 16 connections).
import cluster from 'node:cluster';
import process from 'node:process';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '8082' },
    host: { type: 'string', default: '127.0.0.1' },
    workers: { type: 'string', default: '2' },
    db: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable' },
    schema: { type: 'string', default: '' },
    pool: { type: 'string', default: '8' },
  },
});

const positiveInt = (name) => {
  const n = Number(opts[name]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, got ${JSON.stringify(opts[name])}`);
    process.exit(2);
  }
  return n;
};
const port = positiveInt('port');
const workers = positiveInt('workers');
const poolSize = positiveInt('pool');

if (cluster.isPrimary) {
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++listening === workers) {
      console.log(`express-users listening on http://${opts.host}:${port} (${workers} workers, pool ${poolSize} each)`);
    }
  });
  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    console.error(`worker ${w.process.pid} exited (code ${code}, signal ${signal}); stopping`);
    stopping = true;
    for (const o of Object.values(cluster.workers)) o.kill();
    process.exitCode = 1;
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  const { default: express } = await import('express');
  const { default: pg } = await import('pg');

  // bigint (int8) arrives as a string; ids fit in a JS number far beyond
  // any realistic table, and kiln answers with a JSON number.
  pg.types.setTypeParser(pg.types.builtins.INT8, (v) => {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  });

  const poolConfig = { connectionString: opts.db, max: poolSize };
  if (opts.schema) {
    poolConfig.options = `-c search_path="${opts.schema.replaceAll('"', '""')}"`;
  }
  const pool = new pg.Pool(poolConfig);
  pool.on('error', (err) => console.error('idle client error:', err.message));

  const maxInt8 = 9223372036854775807n;
  const app = express();
  app.get('/api/v1/users/:id', async (req, res, next) => {
    const id = req.params.id;
    if (!/^[1-9][0-9]{0,18}$/.test(id) || BigInt(id) > maxInt8) {
      res.status(400).json({ error: 'id must be a positive integer' });
      return;
    }
    try {
      const { rows } = await pool.query(
        'SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1',
        [id],
      );
      if (rows.length === 0) {
        res.status(404).json({ error: 'no such user' });
        return;
      }
      res.json(rows[0]);
    } catch (err) {
      next(err);
    }
  });

  const server = app.listen(port, opts.host);
  process.on('SIGTERM', () => {
    server.close(() => pool.end().then(() => process.exit(0)));
  });
}
