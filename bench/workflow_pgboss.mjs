// pg-boss side of bench/workflow.py: the same 10,001-job fan-out (1 → 10,000) and fan-in
// (10,000 → 1) emitted with boss.flow() (pg-boss >= 12.x, dependsOn), drained by 2 worker
// processes with a no-op handler, on the database given; and, for scale, 10,001 plain jobs
// (boss.insert, no dependencies) through the same workers. Mirrors the shared bench's pgboss
// adapter settings: queue created with { notify: true }, workers with useListenNotify, work()
// with batchSize 50 and burstWhenBatchFull, everything else pg-boss defaults. Prints one JSON line.
//
//   PGBOSS_NODE_MODULES=…/node_modules node bench/workflow_pgboss.mjs --dsn postgresql://… --reps 3
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const MODS = process.env.PGBOSS_NODE_MODULES
if (!MODS) throw new Error('set PGBOSS_NODE_MODULES to a node_modules holding pg-boss and pg')
const { PgBoss } = await import(pathToFileURL(path.join(MODS, 'pg-boss', 'dist', 'index.js')).href)
const pg = (await import(pathToFileURL(path.join(MODS, 'pg', 'lib', 'index.js')).href)).default

const WIDTH = 10000
const now = () => Number(process.hrtime.bigint()) / 1e9
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function parseArgs (argv) {
  const a = { reps: 3, batch: 50, concurrency: 2, child: false, queue: null }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    if (k === '--child') { a.child = true; continue }
    a[k.slice(2)] = argv[++i]
  }
  a.reps = Number(a.reps); a.batch = Number(a.batch); a.concurrency = Number(a.concurrency)
  return a
}

async function unfinished (dsn, queue) {
  const c = new pg.Client({ connectionString: dsn })
  await c.connect()
  try {
    const r = await c.query("SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state < 'completed'", [queue])
    return r.rows[0].n
  } finally { await c.end() }
}

async function childMain (a) {
  const boss = new PgBoss({ connectionString: a.dsn, useListenNotify: true })
  boss.on('error', (e) => console.error('[pg-boss error]', e.message))
  await boss.start()
  await boss.work(a.queue, { batchSize: a.batch, localConcurrency: a.concurrency, burstWhenBatchFull: true }, async () => {})
  process.send('ready')
  await new Promise((resolve) => process.on('message', (m) => { if (m === 'stop') resolve() }))
  await boss.stop({ graceful: true, wait: true })
  process.exit(0)
}

function graph (shape) {
  if (shape === 'fan_out' || shape === 'plain') { // plain: the same 10,001 jobs, no dependencies
    return [{ ref: 'root', name: null }].concat(
      Array.from({ length: WIDTH }, (_, i) => ({ ref: `c${i}`, dependsOn: ['root'] })))
  }
  const parents = Array.from({ length: WIDTH }, (_, i) => ({ ref: `p${i}` }))
  return parents.concat([{ ref: 'join', dependsOn: parents.map((p) => p.ref) }])
}

async function runOnce (a, boss, shape, rep) {
  const queue = `wf_${shape}_${rep}`
  await boss.createQueue(queue, { notify: true })
  const kids = [0, 1].map(() => fork(fileURLToPath(import.meta.url),
    ['--child', '--dsn', a.dsn, '--queue', queue, '--batch', String(a.batch), '--concurrency', String(a.concurrency)],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  await Promise.all(kids.map((k) => new Promise((resolve) => k.on('message', (m) => { if (m === 'ready') resolve() }))))
  const jobs = graph(shape).map((j) => ({ ...j, name: queue, data: {} }))
  const t0 = now()
  if (shape === 'plain') await boss.insert(queue, jobs.map(() => ({ data: {} })))
  else await boss.flow(jobs)
  const emit = now() - t0
  while (await unfinished(a.dsn, queue) > 0) await sleep(10)
  const drain = now() - t0
  kids.forEach((k) => k.send('stop'))
  await Promise.all(kids.map((k) => new Promise((resolve) => k.on('exit', resolve))))
  return { emit, drain }
}

async function main (a) {
  const boss = new PgBoss({ connectionString: a.dsn, supervise: false, schedule: false })
  boss.on('error', (e) => console.error('[pg-boss error]', e.message))
  await boss.start()
  const result = { version: (await import(pathToFileURL(path.join(MODS, 'pg-boss', 'package.json')).href, { with: { type: 'json' } })).default.version }
  try {
    for (const shape of ['plain', 'fan_out', 'fan_in']) {
      const runs = []
      for (let rep = 0; rep < a.reps; rep++) runs.push(await runOnce(a, boss, shape, rep))
      const median = (xs) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)]
      const drain = median(runs.map((r) => r.drain))
      result[shape] = { emit_s: +median(runs.map((r) => r.emit)).toFixed(3), drain_s: +drain.toFixed(3), steps_per_s: Math.round((WIDTH + 1) / drain) }
    }
  } finally { await boss.stop({ graceful: true, wait: true }) }
  console.log(JSON.stringify(result))
}

const args = parseArgs(process.argv.slice(2))
if (args.child) await childMain(args)
else await main(args)
