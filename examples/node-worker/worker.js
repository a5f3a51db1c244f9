#!/usr/bin/env node
'use strict';
// A conveyor worker in Node.js. It speaks to conveyor only through its SQL functions
// (fn_job_claim, fn_job_extend_lease, fn_job_complete, fn_job_fail_transient,
// fn_job_fail_permanent): the database owns claim order, leases, fencing, backoff and the dead
// letter queue, so this file holds no queue rule of its own.
//
//   CONVEYOR_DATABASE_URL=postgresql://… node worker.js --handlers ./handlers.js [--queue q]…
//
// A handlers module exports { 'job.kind': async (job, tx) => result }. Each job runs in one
// transaction on `tx` (a pg client) together with its fn_job_complete, so the handler's own
// writes commit exactly when the job succeeds. Throw an error to fail the attempt (retried with
// the database's backoff until max_attempts); throw `new Fail(msg)` to dead-letter it at once.

const os = require('node:os');
const path = require('node:path');
const { Client } = require('pg');

class Fail extends Error {
  constructor(message) {
    super(message);
    this.name = 'Fail';
  }
}

const CLAIM = `SELECT conveyor.fn_job_claim(worker => $1::text, queues => $2::text[],
                 kinds => $3::text[], batch => 1, lease_seconds => $4::integer) AS answer`;
const EXTEND = `SELECT conveyor.fn_job_extend_lease(job_id => $1::bigint, lease_token => $2::uuid,
                  lease_seconds => $3::integer) AS answer`;
const COMPLETE = `SELECT conveyor.fn_job_complete(job_id => $1::bigint, lease_token => $2::uuid,
                    result => $3::jsonb) AS answer`;
const FAIL_TRANSIENT = `SELECT conveyor.fn_job_fail_transient(job_id => $1::bigint,
                          lease_token => $2::uuid, error => $3::text) AS answer`;
const FAIL_PERMANENT = `SELECT conveyor.fn_job_fail_permanent(job_id => $1::bigint,
                          lease_token => $2::uuid, error => $3::text) AS answer`;

function options(argv) {
  const parsed = { queues: [], handlers: null, leaseSeconds: 30, pollMs: 200 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === '--queue') parsed.queues.push(value);
    else if (flag === '--handlers') parsed.handlers = value;
    else if (flag === '--lease-seconds') parsed.leaseSeconds = Number(value);
    else if (flag === '--poll-ms') parsed.pollMs = Number(value);
    else usage(`unknown option ${flag}`);
  }
  if (!parsed.handlers) usage('--handlers is required');
  if (parsed.queues.length === 0) parsed.queues.push('default');
  return parsed;
}

function usage(problem) {
  console.error(`Error: ${problem}; usage: worker.js --handlers FILE [--queue NAME]… ` +
                '[--lease-seconds N] [--poll-ms N] (database from CONVEYOR_DATABASE_URL)');
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function answer(client, sql, params) {
  return (await client.query(sql, params)).rows[0].answer;
}

async function runJob(job, handler, work, lease, config, log) {
  // The lease is renewed on its own connection (autocommit) while the handler's transaction runs.
  let lost = false;
  const renew = async () => {
    const renewed = await answer(lease, EXTEND, [job.job_id, job.lease_token, config.leaseSeconds]);
    if (renewed.refused) lost = true;
  };
  await renew();
  const timer = setInterval(() => renew().catch(() => { lost = true; }),
                            (config.leaseSeconds * 1000) / 3);
  try {
    await work.query('BEGIN');
    let result;
    try {
      result = await handler(job, work);
      if (lost) throw new Error('lease lost while running');
    } catch (error) {
      await work.query('ROLLBACK');
      const text = `${error.name}: ${error.message}`;
      const failed = await answer(work, error instanceof Fail ? FAIL_PERMANENT : FAIL_TRANSIENT,
                                  [job.job_id, job.lease_token, text]);
      log(`job ${job.job_id} (${job.kind}) failed on attempt ${job.attempts}: ${text}; ` +
          (failed.refused ? failed.reason : failed.status));
      return;
    }
    const value = result === undefined || result === null ? null
      : (typeof result === 'object' && !Array.isArray(result) ? result : { value: result });
    const done = await answer(work, COMPLETE, [job.job_id, job.lease_token, value]);
    if (done.refused) {
      await work.query('ROLLBACK'); // lease_lost: another worker owns the job; drop our effects
      log(`job ${job.job_id}: ${done.reason}; result discarded`);
      return;
    }
    await work.query('COMMIT');
  } finally {
    clearInterval(timer);
  }
}

async function main() {
  const config = options(process.argv.slice(2));
  const handlers = require(path.resolve(config.handlers));
  const url = process.env.CONVEYOR_DATABASE_URL || process.env.DATABASE_URL;
  if (!url) usage('set CONVEYOR_DATABASE_URL to the database conveyor runs in');
  const name = process.env.CONVEYOR_WORKER_NAME || `node:${os.hostname()}:${process.pid}`;
  const log = (line) => console.log(`[${name}] ${line}`);
  const work = new Client({ connectionString: url, application_name: 'conveyor-node-worker' });
  const lease = new Client({ connectionString: url, application_name: 'conveyor-node-lease' });
  await work.connect();
  await lease.connect();

  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { stopping = true; });
  const kinds = Object.keys(handlers);
  log(`started: kinds=${kinds.join(',')} queues=${config.queues.join(',')}`);
  let attempts = 0;
  while (!stopping) {
    const claimed = await answer(work, CLAIM, [name, config.queues, kinds, config.leaseSeconds]);
    if (claimed.refused) {
      log(`claim refused: ${claimed.reason}; retrying`);
      await sleep(config.pollMs * 10);
      continue;
    }
    if (claimed.jobs.length === 0) {
      await sleep(config.pollMs);
      continue;
    }
    for (const job of claimed.jobs) {
      await runJob(job, handlers[job.kind], work, lease, config, log);
      attempts += 1;
    }
  }
  log(`stopped after ${attempts} attempts`);
  await work.end();
  await lease.end();
}

module.exports = { Fail };

if (require.main === module) {
  main().catch((error) => {
    console.error(`Error: ${error.message}`);
    process.exit(1);
  });
}
