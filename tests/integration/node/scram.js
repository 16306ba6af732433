// MQTT 5 enhanced authentication with MQTT.js: SCRAM-SHA-256 (RFC 5802)
// computed here with node's crypto, through MQTT.js's authenticationMethod /
// authenticationData properties and its handleAuth hook; the server's
// signature in the CONNACK is checked, then a publish/subscribe round trip.
// A wrong password must end in CONNACK 0x86.
'use strict'
const crypto = require('crypto')
const mqtt = require('mqtt')
const { args, port, uid, subscribe, publish, messages, end, run, withTimeout } = require('./common')

function scramClient (user, password) {
  const nonce = crypto.randomBytes(18).toString('base64')
  const bare = 'n=' + user + ',r=' + nonce
  const s = { first: Buffer.from('n,,' + bare), serverSig: null }
  s.final = (serverFirst) => {
    const sf = serverFirst.toString()
    const a = Object.fromEntries(sf.split(',').map((kv) => [kv[0], kv.slice(2)]))
    if (!a.r.startsWith(nonce)) throw new Error('server nonce does not extend ours: ' + sf)
    const salted = crypto.pbkdf2Sync(password, Buffer.from(a.s, 'base64'), parseInt(a.i, 10), 32, 'sha256')
    const hmac = (k, d) => crypto.createHmac('sha256', k).update(d).digest()
    const clientKey = hmac(salted, 'Client Key')
    const stored = crypto.createHash('sha256').update(clientKey).digest()
    const withoutProof = 'c=biws,r=' + a.r
    const authMsg = bare + ',' + sf + ',' + withoutProof
    const sig = hmac(stored, authMsg)
    const proof = Buffer.alloc(32)
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ sig[i]
    s.serverSig = 'v=' + hmac(hmac(salted, 'Server Key'), authMsg).toString('base64')
    return Buffer.from(withoutProof + ',p=' + proof.toString('base64'))
  }
  return s
}

// Resolves with [client, connack, scram] or rejects with the refusal.
function scramConnect (user, password) {
  const s = scramClient(user, password)
  const client = mqtt.connect({
    host: '127.0.0.1', port, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clientId: uid('scram'),
    properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: s.first }
  })
  client.received = []
  client.waiters = []
  client.on('message', (topic, payload, packet) => {
    client.received.push({ topic, payload: payload.toString(), packet })
    client.waiters = client.waiters.filter((w) => !w())
  })
  client.handleAuth = (packet, cb) => {
    try {
      cb(null, {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: { authenticationMethod: 'SCRAM-SHA-256', authenticationData: s.final(packet.properties.authenticationData) }
      })
    } catch (e) { cb(e) }
  }
  return withTimeout(new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve([client, connack, s]))
    client.once('error', (e) => { client.end(true); reject(e) })
  }), 5000, 'scram connect')
}

run(async () => {
  const [c, connack, s] = await scramConnect(args.user, args.password)
  const final = connack.properties.authenticationData.toString()
  const topic = 'node/scram/' + uid('t')
  await subscribe(c, topic, { qos: 1 })
  await publish(c, topic, 'hello', { qos: 1 })
  const got = await messages(c, 1)
  await end(c)
  let refused = null
  try {
    const [w] = await scramConnect(args.user, args.password + 'x')
    await end(w)
  } catch (e) {
    refused = e.code === undefined ? String(e) : e.code
  }
  return {
    reason: connack.reasonCode,
    method: connack.properties.authenticationMethod,
    signatureOk: final === s.serverSig,
    payloads: got.map((m) => m.payload),
    refused
  }
})
