// Helpers shared by the MQTT.js scripts: promise wrappers with timeouts and
// a result printer. Each script prints one JSON line and exits 0, or prints
// the error and exits 1; test_node.py checks the JSON.
'use strict'
const fs = require('fs')
const mqtt = require('mqtt')

const args = JSON.parse(process.argv[2] || '{}')
const port = args.port
const uid = (p) => p + '-' + Math.random().toString(16).slice(2, 12)

function withTimeout (promise, ms, what) {
  let timer
  return Promise.race([
    promise,
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error('timeout: ' + what)), ms) })
  ]).finally(() => clearTimeout(timer))
}

// The broker's transport (args.transport: tcp, tls, ws, wss; args.cafile for
// tls and wss; args.path the WebSocket path) as MQTT.js connect options.
function transportOptions () {
  const t = args.transport || 'tcp'
  const o = { protocol: { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }[t] }
  if (t === 'ws' || t === 'wss') o.path = args.path || '/mqtt'
  if (args.cafile) o.ca = fs.readFileSync(args.cafile)
  if (t === 'tls') o.servername = 'localhost'
  return o
}

// The user of the suites' authentication mode (args.auth_user, auth_password;
// tests/integration/authmode.py), unless a script names its own.
function authOptions () {
  return args.auth_user ? { username: args.auth_user, password: args.auth_password } : {}
}

// Connects and resolves with [client, connack] once CONNACK arrived.
function connect (opts) {
  const o = Object.assign({ host: '127.0.0.1', hostname: '127.0.0.1', port, protocolVersion: 4,
    reconnectPeriod: 0, connectTimeout: 5000, clientId: uid('node') }, authOptions(), transportOptions(), opts)
  if (o.protocolVersion === 3) o.protocolId = 'MQIsdp'
  const client = mqtt.connect(o)
  client.received = []
  client.waiters = []
  client.on('message', (topic, payload, packet) => {
    client.received.push({ topic, payload: payload.toString(), packet })
    client.waiters = client.waiters.filter((w) => !w())
  })
  client.on('error', (e) => { client.lastError = e })
  return withTimeout(new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve([client, connack]))
    client.once('error', reject)
  }), 5000, 'connect').catch((e) => { client.end(true); throw e })
}

// Resolves once the client has received n messages (in total).
function messages (client, n, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    const check = () => {
      if (client.received.length >= n) { resolve(client.received.slice(0, n)); return true }
      return false
    }
    if (!check()) client.waiters.push(check)
  }), ms, 'waiting for ' + n + ' messages, have ' + client.received.length)
}

function promisify (client, method, ...a) {
  return withTimeout(new Promise((resolve, reject) => {
    client[method](...a, (err, res) => err ? reject(err) : resolve(res))
  }), 5000, method)
}

const subscribe = (c, topic, opts) => promisify(c, 'subscribe', topic, opts || { qos: 0 })
const unsubscribe = (c, topic, opts) => promisify(c, 'unsubscribe', topic, opts || {})
const publish = (c, topic, payload, opts) => promisify(c, 'publish', topic, payload, opts || {})
const end = (c, force = false) => new Promise((resolve) => c.end(force, {}, resolve))

// Resolves with the messages received from index `from` on, up to the
// first one on the marker topic.
async function beforeMarker (client, marker, from = 0) {
  await withTimeout(new Promise((resolve) => {
    const check = () => {
      if (client.received.slice(from).some((m) => m.topic === marker)) { resolve(); return true }
      return false
    }
    if (!check()) client.waiters.push(check)
  }), 5000, 'marker ' + marker)
  const out = []
  for (const m of client.received.slice(from)) {
    if (m.topic === marker) break
    out.push(m)
  }
  return out
}

// Publishes a marker and resolves with the messages received before it
// (counting from the call).
async function untilMarker (client, publisher, marker) {
  const from = client.received.length
  await publish(publisher, marker, 'marker', { qos: 1 })
  return beforeMarker(client, marker, from)
}

function run (main) {
  main().then((result) => {
    process.stdout.write(JSON.stringify(result) + '\n')
    process.exit(0)
  }, (err) => {
    process.stderr.write((err && err.stack) || String(err))
    process.stderr.write('\n')
    process.exit(1)
  })
}

module.exports = { args, port, uid, connect, messages, subscribe, unsubscribe, publish, end, untilMarker, beforeMarker, run, withTimeout }
