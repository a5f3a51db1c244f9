'use strict';
// Example handlers for worker.js: job kind → async (job, tx) => result. `tx` is the pg client
// whose transaction also completes the job, so writes made on it commit only with success.
const { Fail } = require('./worker');

module.exports = {
  'demo.echo': async (job) => ({ echoed: job.payload }),

  'demo.record': async (job, tx) => {
    if (!job.payload.table) throw new Fail('payload.table is required');
    await tx.query(`INSERT INTO ${tx.escapeIdentifier(job.payload.table)} (job_id) VALUES ($1)`,
                   [job.job_id]);
    return { recorded: true };
  },
};
