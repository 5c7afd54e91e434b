// node-postgres's part of pgcertgate's client matrix
// (integration/clients_test.go). It speaks the matrix's line protocol on
// stdout and waits for "cancel" on stdin before it cancels its pg_sleep.
// Settings come from MATRIX_* environment variables; pg and pg-copy-streams
// are pinned in package-lock.json and installed by make deps.
'use strict'

const fs = require('fs')
const readline = require('readline')
const { pipeline } = require('stream/promises')
const { Readable, Writable } = require('stream')
const pg = require('pg')
const copyStreams = require('pg-copy-streams')

const env = process.env
const say = (line) => process.stdout.write(line + '\n')

async function main() {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  const config = {
    host: env.MATRIX_HOST,
    port: Number(env.MATRIX_PORT),
    user: env.MATRIX_USER,
    database: env.MATRIX_DB,
    application_name: 'matrix-node',
    // verify-full: node's TLS checks the chain against ca and the server
    // name against the certificate (rejectUnauthorized).
    ssl: {
      ca: fs.readFileSync(env.MATRIX_ROOT),
      cert: fs.readFileSync(env.MATRIX_CERT),
      key: fs.readFileSync(env.MATRIX_KEY),
      rejectUnauthorized: true,
    },
    sslnegotiation: env.MATRIX_SSLNEGOTIATION || 'postgres',
  }
  const table = env.MATRIX_TABLE
  const rows = Number(env.MATRIX_ROWS)
  const client = new pg.Client(config)
  await client.connect()
  say(`version pg ${require('pg/package.json').version}, pg-copy-streams ${require('pg-copy-streams/package.json').version}, Node.js ${process.version}`)
  const who = await client.query('select current_user as u, pg_backend_pid() as pid')
  say(`user ${who.rows[0].u}`)
  say(`pid ${who.rows[0].pid}`)

  const chunks = []
  await pipeline(
    client.query(copyStreams.to(`COPY (select i, repeat('x', 1000) from generate_series(1, ${rows}) i) TO STDOUT`)),
    new Writable({ write(chunk, _enc, cb) { chunks.push(chunk); cb() } }),
  )
  const data = Buffer.concat(chunks)
  say(`copy_out ${data.length}`)
  await client.query(`CREATE TABLE ${table} (i int, s text)`)
  const ingest = client.query(copyStreams.from(`COPY ${table} FROM STDIN`))
  await pipeline(Readable.from([data]), ingest)
  say(`copy_in ${ingest.rowCount}`)

  // pg's Client#cancel(client, query) opens a new connection and sends a
  // CancelRequest with the session's pid and key.
  const sleeper = new pg.Query('select pg_sleep(60)')
  const outcome = new Promise((resolve) => {
    sleeper.on('error', (e) => resolve(`${e.code} ${e.message}`))
    sleeper.on('end', () => resolve('completed'))
  })
  client.query(sleeper)
  say('sleeping')
  const { value } = await lines.next()
  if (value !== 'cancel') throw new Error('expected cancel on stdin')
  const canceller = new pg.Client({ host: config.host, port: config.port })
  canceller.connection.on('error', () => {})
  canceller.cancel(client, sleeper)
  say(`cancelled ${await outcome}`)
  const alive = await client.query('select pg_backend_pid() as pid')
  say(`alive ${alive.rows[0].pid}`)
  await client.end()
  say('done')
  process.exit(0)
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`)
  process.exit(1)
})
